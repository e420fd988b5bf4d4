"""One Options object per run, validated once; the gates and the baseline read once; compare and matrix share it."""

import json

import pytest
from test_cli import run

import repalign
from repalign import checks
from repalign.errors import UsageError
from repalign.options import DEFAULT_K, Options

FAST = ["--resamples", "0", "--permutations", "0", "--seed", "3"]


def test_defaults_and_preset():
    o = Options.build(seed=5)
    assert o.metric_ids == ("mknn", "cka") and o.k == DEFAULT_K and o.distance == "cosine"
    assert o.preprocessing.clip is None and not o.preprocessing.normalize
    assert (o.uncertainty.resamples, o.uncertainty.permutations, o.uncertainty.seed) == (1000, 1000, 5)
    assert not o.uncertainty.permutations_explicit
    prh = Options.build(preset="prh", k=7, seed=5)
    assert (prh.k, prh.preprocessing.clip, prh.preprocessing.normalize) == (7, 0.95, True)


def test_a_missing_seed_is_drawn_once_and_kept():
    o = Options.build()
    assert 0 <= o.uncertainty.seed < 2**63
    assert Options.build(seed=o.uncertainty.seed).uncertainty == o.uncertainty


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, "--k must be at least 1"),
    ({"distance": "manhattan"}, "unknown --distance"),
    ({"resamples": 1}, "--resamples must be 0"),
    ({"confidence": 1.0}, "--confidence must be strictly between 0 and 1"),
    ({"ci_method": "magic"}, "unknown --ci-method"),
    ({"max_rows": 0}, "--max-rows must be at least 1"),
    ({"require_all": True}, r"--require-all needs ids \(--ids, --ids-a or --ids-b\)"),
    ({"require_all": True, "id_options": "--ids"}, r"--require-all needs ids \(--ids\)"),
    ({"metrics": "mknn,nope"}, "unknown metric 'nope'"),
])
def test_bad_options_are_refused_when_built(kwargs, message):
    with pytest.raises(UsageError, match=message):
        Options.build(**kwargs)


def test_options_are_frozen():
    o = Options.build(seed=1)
    with pytest.raises(AttributeError):
        o.k = 3  # type: ignore[misc]


def test_api_with_options_equals_api_with_keywords(pair):
    X, Y = pair
    kw = {"metrics": "mknn,cka", "k": 5, "resamples": 0, "permutations": 50, "seed": 11}
    by_keywords = repalign.compare(X, Y, **kw)
    by_options = repalign.compare(X, Y, options=Options.build(**kw))
    assert by_options.to_dict() | {"timing": None} == by_keywords.to_dict() | {"timing": None}


def test_the_cli_builds_options_and_reads_the_baseline_once(write, golden, monkeypatch, tmp_path):
    X, Y = golden
    a, b = write.npy(X, "x.npy"), write.npy(Y, "y.npy")
    first = run("compare", a, b, *FAST, "-f", "json")
    base = tmp_path / "base.json"
    base.write_text(first.stdout, encoding="utf-8")
    builds, loads = [], []
    real_build, real_load = Options.build.__func__, checks.load_baseline
    monkeypatch.setattr(Options, "build", classmethod(lambda cls, **kw: builds.append(1) or real_build(cls, **kw)))
    monkeypatch.setattr(checks, "load_baseline", lambda path: loads.append(path) or real_load(path))
    again = run("compare", a, b, *FAST, "--baseline", str(base), "--max-drop", "mknn=0.01", "-f", "json")
    assert again.exit_code == 0, again.stderr
    assert len(builds) == 1 and loads == [str(base)]
    assert json.loads(again.stdout)["checks"][0]["passed"] is True


def test_matrix_of_two_is_the_comparison(pair):
    """compare is the two-input case of the one path: a matrix of two gives the same cell."""
    X, Y = pair
    kw = {"metrics": "mknn,cka,cka-unbiased", "k": 5, "resamples": 200, "permutations": 99, "seed": 4}
    pair_result = repalign.compare(X, Y, **kw)
    cell = repalign.matrix([X, Y], **kw).cells[0]
    assert [m.to_dict() for m in cell.metrics] == [m.to_dict() for m in pair_result.metrics]


def test_gates_take_cli_text_or_dicts_alike():
    names = ["mknn", "cka"]
    from_text = checks.Gates.build(names, fail_under=["mknn=0.3,cka=0.5"], on="value")
    from_dicts = checks.Gates.build(names, fail_under={"mknn": 0.3, "cka": 0.5})
    assert from_text == from_dicts and from_text.fail_under == {"mknn": 0.3, "cka": 0.5}
    with pytest.raises(UsageError, match="--max-drop needs --baseline"):
        checks.Gates.build(names, max_drop=["mknn=0.1"])
    with pytest.raises(UsageError, match="that metric was not computed"):
        checks.Gates.build(names, fail_under={"cka-unbiased": 0.1})


def test_seed_makes_runs_repeatable(pair):
    X, Y = pair
    o = Options.build(resamples=200, permutations=99, seed=8)
    first, second = repalign.compare(X, Y, options=o), repalign.compare(X, Y, options=o)
    assert first.to_dict()["metrics"] == second.to_dict()["metrics"]
