"""Intervals, nulls and p-values as the user sees them: options, reproducibility, refusals."""

import json

import pytest
from test_cli import expect_input_error, run

import repalign


@pytest.fixture
def files(write, golden):
    X, Y = golden
    return write.npy(X, "x.npy"), write.npy(Y, "y.npy")


def doc(*args):
    r = run("compare", *args, "-f", "json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    d.pop("timing")
    return d


def test_same_seed_same_numbers(files):
    a = doc(*files, "-m", "mknn,cka,cka-unbiased", "--seed", "11")
    b = doc(*files, "-m", "mknn,cka,cka-unbiased", "--seed", "11")
    assert a == b
    c = doc(*files, "-m", "mknn", "--seed", "12")
    assert c["metrics"][0]["ci_low"] != a["metrics"][0]["ci_low"] or c["metrics"][0]["ci_high"] != a["metrics"][0][
        "ci_high"]
    assert a["uncertainty"] == {"resamples": 1000, "confidence": 0.95, "seed": 11, "ci_method": "auto",
                                "permutations": 1000}


def test_seed_is_drawn_and_reported_when_absent(files):
    d = doc(*files, "-m", "mknn")
    again = doc(*files, "-m", "mknn", "--seed", str(d["uncertainty"]["seed"]))
    assert d == again


def test_interval_fields(files, golden):
    d = doc(*files, "-m", "mknn,cka,cka-unbiased", "--seed", "1")
    m = {x["name"]: x for x in d["metrics"]}
    for name in m:
        x = m[name]
        assert x["ci_low"] <= x["value"] <= x["ci_high"], name
        assert x["ci_covers"] and x["ci_method"] and x["null_sd"] > 0 and x["z"] > 0
    assert m["mknn"]["ci_method"] == "ij-calibrated-normal" and m["cka"]["ci_method"] == "jackknife-corrected-normal"
    assert m["mknn"]["p_value"] == pytest.approx(1 / 1001) and m["mknn"]["permutations"] == 1000
    assert 0 < m["mknn"]["calibrated"] <= 1
    # CKA permutations only when asked for explicitly.
    assert m["cka"]["p_value"] is None and m["cka"]["permutations"] == 0
    assert m["mknn"]["z"] == pytest.approx((m["mknn"]["value"] - 10 / 99) / m["mknn"]["null_sd"])


def test_confidence_changes_width(files):
    wide = doc(*files, "-m", "mknn,cka", "--seed", "2", "--confidence", "0.99")["metrics"]
    narrow = doc(*files, "-m", "mknn,cka", "--seed", "2", "--confidence", "0.8")["metrics"]
    for w, n in zip(wide, narrow):
        assert w["ci_high"] - w["ci_low"] > n["ci_high"] - n["ci_low"]


def test_resamples_zero_and_permutations_zero(files):
    d = doc(*files, "--resamples", "0", "--permutations", "0")
    for m in d["metrics"]:
        assert m["ci_low"] is None and m["ci_reason"] == "intervals off (--resamples 0)"
        assert m["p_value"] is None and m["null_sd"] is not None


def test_explicit_permutations_cover_cka(files, golden):
    d = doc(*files, "-m", "cka,cka-unbiased", "--permutations", "99", "--seed", "4")
    for m in d["metrics"]:
        # The golden pair is far above chance: Cantelli's bound from the exact moments is already below
        # 1/(P + 1), the least 99 permutations could show, so none run (tests/test_pvalues.py covers the rest).
        assert m["p_method"] == "exact-moment bound (Cantelli)" and m["permutations"] == 0
        assert 0 < m["p_value"] < 1 / 100 and m["calibrated"] is not None


def test_ci_method_override(files):
    d = doc(*files, "-m", "mknn,cka", "--ci-method", "basic", "--seed", "5")
    # CKA has its own weighted bootstrap now (metrics/cka_bootstrap.py), so basic applies to both.
    assert [m["ci_method"] for m in d["metrics"]] == ["bootstrap-basic", "bootstrap-basic"]


def test_plain_methods_on_request(files):
    """--ci-method normal: the bootstrap SD (mknn and CKA); --ci-method jackknife: CKA's uncorrected jackknife,
    which is never narrower than the corrected one (the correction subtracts a sum of squares)."""
    auto = {m["name"]: m for m in doc(*files, "-m", "mknn,cka,cka-unbiased", "--seed", "6")["metrics"]}
    normal = {m["name"]: m for m in doc(*files, "-m", "mknn,cka,cka-unbiased", "--seed", "6", "--ci-method",
                                        "normal")["metrics"]}
    jack = {m["name"]: m for m in doc(*files, "-m", "mknn,cka,cka-unbiased", "--seed", "6", "--ci-method",
                                      "jackknife")["metrics"]}
    assert auto["mknn"]["ci_method"] == jack["mknn"]["ci_method"] == "ij-calibrated-normal"
    assert normal["mknn"]["ci_method"] == "bootstrap-normal"
    assert jack["mknn"]["ci_low"] == auto["mknn"]["ci_low"]  # mknn cannot use it and keeps its default
    for name in ("cka", "cka-unbiased"):
        assert auto[name]["ci_method"] == "jackknife-corrected-normal"
        assert normal[name]["ci_method"] == "bootstrap-normal"
        assert jack[name]["ci_method"] == "jackknife-normal"
        assert jack[name]["value"] == auto[name]["value"]
        assert jack[name]["ci_high"] - jack[name]["ci_low"] >= auto[name]["ci_high"] - auto[name]["ci_low"]


def test_too_few_rows_for_an_interval_says_why(write, rng):
    a = write.npy(rng.standard_normal((4, 3)), "a.npy")
    b = write.npy(rng.standard_normal((4, 3)), "b.npy")
    d = doc(a, b, "-m", "cka,cka-unbiased", "--seed", "1")
    for m in d["metrics"]:
        assert m["value"] is not None and m["ci_low"] is None
        assert m["ci_reason"] == "the jackknife needs at least 5 items (n = 4)"


@pytest.mark.parametrize("args,needle", [
    (["--resamples", "-1"], "--resamples"),
    (["--permutations", "-5"], "--permutations"),
    (["--confidence", "1.5"], "--confidence"),
    (["--confidence", "0"], "--confidence"),
    (["--ci-method", "magic"], "unknown --ci-method"),
    (["--ci-method", "bca", "--resamples", "20"], "at least 100 resamples"),
    (["--seed", "-3"], "--seed"),
])
def test_bad_uncertainty_options(files, args, needle):
    expect_input_error(["compare", *files, *args], needle)


def test_explain(files):
    r = run("compare", *files, "--explain", "--seed", "1", env={"NO_COLOR": "1"})
    assert r.exit_code == 0
    assert "mknn = 0.2790, 2.8× its chance level 0.1010" in r.stdout
    assert "excludes chance" in r.stdout
    j = run("compare", *files, "--explain", "--seed", "1", "-f", "json")
    json.loads(j.stdout)  # stdout stays pure JSON; the explanation goes to stderr
    assert "mknn = 0.2790" in j.stderr


def test_independent_data_interval_contains_chance(rng):
    X = rng.standard_normal((300, 8))
    Y = rng.standard_normal((300, 8))
    r = repalign.compare(X, Y, metrics="mknn,cka-unbiased", seed=3)
    for m in r.metrics:
        assert m.ci_low <= m.chance <= m.ci_high or abs(m.z) < 3


def test_cka_below_eight_items_uses_the_plain_jackknife(write, rng):
    """The delete-2 correction needs n − 2 ≥ 4 for unbiased CKA; 5–7 items get the uncorrected jackknife."""
    import numpy as np
    import reference as ref

    X, Y = rng.standard_normal((7, 3)), rng.standard_normal((7, 4))
    d = doc(write.npy(X, "a.npy"), write.npy(Y, "b.npy"), "-m", "cka,cka-unbiased", "--seed", "1",
            "--permutations", "0")
    loo = [np.array([ref.cka(np.delete(X, i, 0), np.delete(Y, i, 0), unbiased=unb) for i in range(7)])
           for unb in (False, True)]
    for e, m in enumerate(d["metrics"]):
        assert m["ci_method"] == "jackknife-normal"
        v = ref.cka(X, Y, unbiased=e == 1)
        se = np.sqrt(6 / 7 * np.sum((loo[e] - loo[e].mean()) ** 2))
        lo, hi = (0.0, 1.0) if e == 0 else (-1.0, 1.0)
        assert m["ci_low"] == pytest.approx(max(v - 1.959963984540 * se, lo), abs=1e-12)
        assert m["ci_high"] == pytest.approx(min(v + 1.959963984540 * se, hi), abs=1e-12)
