"""Weighted bootstrap of linear CKA: replicates against materialised resamples, seeds, threads, the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_pair
from test_cli import run

import repalign
from repalign.metrics import cka_bootstrap
from repalign.stats import resample_weights

# The replicates are ratios of float64 sums of O(n²) products, against a dense reference that forms the
# m×m Grams of the materialised resample: both round differently, at about 1e-15 relative per sum; the
# unbiased terms cancel to a few per cent of their size, so 1e-10 absolute leaves a wide margin and still
# catches any wrong term (a missing copy-pair term moves unbiased CKA by ≥ 1e-3 here).
TOL = 1e-10


def _hsic_biased(K, L):
    """tr(KHLH)/(m−1)², H = I − 11ᵀ/m (docs/formulas.md §3; Gretton et al. 2005)."""
    m = K.shape[0]
    H = np.eye(m) - np.ones((m, m)) / m
    return np.trace(K @ H @ L @ H) / (m - 1) ** 2


def _hsic_unbiased(K, L):
    """Song et al. 2012, eq. 5, with the diagonal of each Gram set to zero (docs/formulas.md §3)."""
    m = K.shape[0]
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(m)
    return (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((m - 1) * (m - 2))
            - 2 * one @ Kt @ Lt @ one / (m - 2)) / (m * (m - 3))


def _dense_cka(X, Y, unbiased):
    K, L = X @ X.T, Y @ Y.T
    h = _hsic_unbiased if unbiased else _hsic_biased
    return h(K, L) / np.sqrt(h(K, K) * h(L, L))


def _tie_free_dense(X, Y, w):
    """The tie-free replicate (docs/formulas.md §6.5) on the materialised resample, with m×m Grams.

    Row i is repeated w_i times and centred by the full data's means. Biased: Σ K_rs L_rs over the pairs of rows
    (r, s) of different items, and over r = s. Unbiased: Song's formula with the Gram entries of r = s and of two
    copies of one item set to zero.
    """
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    item = np.repeat(np.arange(len(w)), w)
    K, L = Xc[item] @ Xc[item].T, Yc[item] @ Yc[item].T
    other = item[:, None] != item[None, :]
    keep = other | np.eye(item.size, dtype=bool)

    def song(A, B):
        m = A.shape[0]
        At, Bt, one = A * other, B * other, np.ones(m)
        return (np.trace(At @ Bt) + (one @ At @ one) * (one @ Bt @ one) / ((m - 1) * (m - 2))
                - 2 * one @ At @ Bt @ one / (m - 2))

    biased = np.sum(K * L * keep) / np.sqrt(np.sum(K * K * keep) * np.sum(L * L * keep))
    return biased, song(K, L) / np.sqrt(song(K, K) * song(L, L))


def _tie_free_real(Xc, Yc, w):
    """The tie-free terms for real weights w (Σ w = n), item by item, as docs/formulas.md §6.5 defines them."""
    n = len(w)
    off = 1.0 - np.eye(n)
    out = []
    for unbiased in (False, True):
        terms = []
        for P, Q in ((Xc, Yc), (Xc, Xc), (Yc, Yc)):
            K, L = P @ P.T, Q @ Q.T
            ww = np.outer(w, w)
            if not unbiased:
                terms.append(np.sum(ww * off * K * L) + np.sum(w * np.diag(K) * np.diag(L)))
                continue
            Kw, Lw = (K * off) @ w, (L * off) @ w
            tr, su, sv = np.sum(ww * off * K * L), np.sum(ww * off * K), np.sum(ww * off * L)
            cross = np.sum(w * Kw * Lw)
            terms.append(tr + su * sv / ((n - 1) * (n - 2)) - 2 * cross / (n - 2))
        out.append(terms[0] / np.sqrt(terms[1] * terms[2]))
    return out


SHAPES = [(12, 3, 5), (40, 7, 2), (25, 60, 45), (30, 1, 80)]


@pytest.mark.parametrize("n, d1, d2", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gram", [True, False], ids=["gram-route", "feature-route"])
def test_replicates_equal_the_materialised_resample(n, d1, d2, seed, gram, monkeypatch):
    rng = np.random.default_rng([seed, n, d1, d2])
    X, Y = make_pair(rng, n, d1, d2, signal=seed * 0.7)
    X += 5.0  # an offset: the full data's centring must be what counts
    # Small row blocks, so that several diagonal and off-diagonal Gram blocks are exercised.
    monkeypatch.setattr(cka_bootstrap, "_GRAM_ROWS", 7)
    monkeypatch.setattr(cka_bootstrap, "use_gram_route", lambda *a: gram)
    blocks = list(resample_weights(np.random.SeedSequence(seed), n, 9, block=4))
    biased, unbiased = cka_bootstrap.bootstrap(X, Y, blocks, batch=5, correct=False)
    W = np.concatenate(blocks)
    assert biased.shape == unbiased.shape == (9,)
    assert (W > 1).any()  # copies present, so the tie-free rule is exercised
    for b, w in enumerate(W):
        ref_biased, ref_unbiased = _tie_free_dense(X, Y, w)
        assert biased[b] == pytest.approx(ref_biased, abs=TOL)
        assert unbiased[b] == pytest.approx(ref_unbiased, abs=TOL)


@pytest.mark.parametrize("n", [50, 2100])  # 2100: above linalg's 2048-row blocks
def test_unit_weights_give_the_estimate(rng, n):
    """w = 1 is the data itself: the replicate is the estimate (a check on the weighting, not only on resamples)."""
    X, Y = make_pair(rng, n, 6, 9)
    for correct in (False, True):
        biased, unbiased = cka_bootstrap.bootstrap(X, Y, [np.ones((1, n), dtype=np.int32)], correct=correct)
        assert biased[0] == pytest.approx(_dense_cka(X, Y, False), abs=TOL)
        assert unbiased[0] == pytest.approx(_dense_cka(X, Y, True), abs=TOL)


@pytest.mark.parametrize("signal", [0.0, 1.0])
def test_linear_part_is_the_gradient_of_the_dense_replicate(signal):
    """The exact linear part against central differences of the item-by-item definition, along e_i − e_j
    (which keeps Σ w = n, as every resample does)."""
    rng = np.random.default_rng([7, int(signal)])
    X, Y = make_pair(rng, 24, 5, 7, signal=signal)
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    parts = cka_bootstrap.linear_parts(Xc, Yc)
    h = 1e-5
    for i, j in ((0, 1), (5, 17), (23, 2)):
        w_up, w_down = np.ones(24), np.ones(24)
        w_up[i] += h
        w_up[j] -= h
        w_down[i] -= h
        w_down[j] += h
        numeric = (np.array(_tie_free_real(Xc, Yc, w_up)) - np.array(_tie_free_real(Xc, Yc, w_down))) / (2 * h)
        for e, part in enumerate(parts):
            assert part.grad[i] - part.grad[j] == pytest.approx(numeric[e], rel=1e-6, abs=1e-9)
    for e, part in enumerate(parts):
        assert part.value == pytest.approx(_tie_free_real(Xc, Yc, np.ones(24))[e], abs=TOL)


def test_corrected_replicates_shrink_only_the_linear_part(rng):
    """value + c·linear + rest, with the linear part from the dense gradient and c² = 1 − 2·Var(rest)/Var(linear)."""
    n = 30
    X, Y = make_pair(rng, n, 4, 6, signal=0.3)
    blocks = list(resample_weights(np.random.SeedSequence(11), n, 300))
    W = np.concatenate(blocks).astype(float)
    raw = cka_bootstrap.bootstrap(X, Y, blocks, correct=False)
    got = cka_bootstrap.bootstrap(X, Y, blocks)
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    value = _tie_free_real(Xc, Yc, np.ones(n))
    h = 1e-5
    grad = np.empty((2, n))
    for i in range(n):  # the gradient along e_i − (1/n)·1, numerically; constants cancel in Σ (w_i − 1)
        step = np.full(n, -h / n)
        step[i] += h
        grad[:, i] = (np.array(_tie_free_real(Xc, Yc, 1 + step)) - np.array(_tie_free_real(Xc, Yc, 1 - step))) / (2 * h)
    for e in range(2):
        linear = (W - 1.0) @ grad[e]
        rest = raw[e] - value[e] - linear
        c2 = max(0.0, 1 - 2 * rest.var() / linear.var())
        assert got[e] == pytest.approx(value[e] + np.sqrt(c2) * linear + rest, abs=1e-8)


def test_replicates_are_centred_and_the_correction_removes_the_degenerate_excess():
    """docs/formulas.md §6.5 on independent sides: the tie-free replicates centre on the estimate (the plug-in's
    copies put them ~15 null SDs above it here), spread about √3 times the sampling SD, and the corrected
    replicates spread about the sampling SD, whose independent reference is the exact permutation null SD."""
    from repalign.metrics import cka as _cka
    from repalign.stats import unbiased_cka_null

    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((300, 20)), rng.standard_normal((300, 20))
    null_sd = unbiased_cka_null(_cka.cross_stats(X, Y))[1]
    est = _dense_cka(X, Y, True)
    raw = cka_bootstrap.bootstrap(X, Y, resample_weights(np.random.SeedSequence(3), 300, 400), correct=False)[1]
    fixed = cka_bootstrap.bootstrap(X, Y, resample_weights(np.random.SeedSequence(3), 300, 400))[1]
    assert abs(raw.mean() - est) < 0.3 * null_sd
    assert 1.4 < raw.std() / null_sd < 2.1
    assert 0.8 < fixed.std() / null_sd < 1.25


def test_a_constant_resample_side_is_nan():
    X = np.zeros((6, 2))
    X[0] = 1.0
    Y = np.arange(12.0).reshape(6, 2) ** 2
    w = np.array([[0, 2, 2, 1, 1, 0]], dtype=np.int32)  # item 0, the only varying row of X, is absent
    biased, unbiased = cka_bootstrap.bootstrap(X, Y, [w])
    assert np.isnan(biased[0]) and np.isnan(unbiased[0])


def test_route_follows_the_flop_counts():
    assert cka_bootstrap.use_gram_route(1024, 768, 768, 1000)  # 3n² ≪ 2(d1d2 + d1² + d2²)·n… per resample
    assert not cka_bootstrap.use_gram_route(10_000, 8, 8, 1000)  # few features: feature space is cheaper


def _interval(X, Y, method, seed, metrics="cka,cka-unbiased"):
    r = repalign.compare(X, Y, metrics=metrics, resamples=200, seed=seed, ci_method=method, permutations=0)
    return [(m.ci_low, m.ci_high, m.ci_method) for m in r.metrics]


@pytest.mark.parametrize("method", ["bootstrap", "percentile", "basic", "bca", "normal"])
def test_reproducible_with_the_seed(rng, method):
    X, Y = make_pair(rng, 80, 10, 12)
    first = _interval(X, Y, method, 4)
    assert first == _interval(X, Y, method, 4)
    assert all(lo is not None and lo < hi for lo, hi, _ in first)
    assert first != _interval(X, Y, method, 5)


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def files(write, rng):
    X, Y = make_pair(rng, 120, 10, 14)
    return write.npy(X, "x.npy"), write.npy(Y, "y.npy")


def _doc(*args):
    r = run("compare", *args, "-f", "json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_cli_bootstrap_names_what_ran(files):
    d = _doc(*files, "-m", "mknn,cka,cka-unbiased", "--ci-method", "bootstrap", "--seed", "3", "--resamples", "200")
    got = {m["name"]: m["ci_method"] for m in d["metrics"]}
    from repalign.metrics import cka_linear

    assert got == {"mknn": "bootstrap-normal", "cka": f"bootstrap-{cka_linear._BOOTSTRAP['cka']}",
                   "cka-unbiased": f"bootstrap-{cka_linear._BOOTSTRAP['cka-unbiased']}"}
    assert d["uncertainty"]["ci_method"] == "bootstrap"
    for m in d["metrics"]:
        assert m["ci_low"] <= m["value"] <= m["ci_high"] or m["name"] != "mknn"


@pytest.mark.parametrize("method", ["percentile", "basic", "bca", "normal"])
def test_cli_bootstrap_flavours_for_cka(files, method):
    d = _doc(*files, "-m", "cka,cka-unbiased", "--ci-method", method, "--seed", "3", "--resamples", "200")
    for m in d["metrics"]:
        assert m["ci_method"] == f"bootstrap-{method}"
        assert m["ci_low"] < m["ci_high"] and m["ci_covers"]


def test_cli_bootstrap_flavours_carry_no_warning(files):
    """Every flavour passed the coverage study with the corrected replicates, so none prints the old warning."""
    r = run("compare", *files, "-m", "cka", "--ci-method", "basic", "--seed", "3", "--resamples", "200", "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert "coverage study" not in r.stdout + r.stderr


def test_cli_refuses_bootstrap_with_too_few_resamples(files):
    r = run("compare", *files, "-m", "cka", "--ci-method", "bootstrap", "--resamples", "50")
    assert r.exit_code == 2 and "--ci-method bootstrap needs at least 100 resamples" in r.stderr


# --------------------------------------------------------------------------- BLAS threads


def _report(argv, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), PYTHONPATH=str(Path(__file__).parent.parent))
    r = subprocess.run([sys.executable, "-m", "repalign", *argv], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    doc.pop("timing")  # wall times, the only field allowed to differ
    return json.dumps(doc)


@pytest.mark.parametrize("shape", [(700, 300, 280), (900, 12, 9)], ids=["gram-route", "feature-route"])
def test_replicates_do_not_depend_on_thread_count(tmp_path, shape):
    """Inner dimensions above linalg.K_BLOCK (n = 700 > 256 in the Gram route, the feature products' n too),
    so that an unblocked GEMM would round differently at 1 and 2 threads."""
    n, d1, d2 = shape
    X, Y = make_pair(np.random.default_rng(9), n, d1, d2, signal=0.5)
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    np.save(tmp_path / "y.npy", Y.astype(np.float32))
    argv = ["compare", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "-m", "cka,cka-unbiased",
            "--ci-method", "percentile", "--resamples", "100", "--permutations", "0", "-f", "json", "--seed", "3"]
    assert _report(argv, 1) == _report(argv, 2)


@pytest.mark.parametrize("n", [2, 3])
def test_cli_bootstrap_of_a_tiny_input_gives_a_reason_not_a_traceback(write, n):
    """Below 4 rows unbiased CKA (and its gradient, which divides by n − 2) does not exist; biased CKA still
    reports its value, and an interval or the reason there is none."""
    rng = np.random.default_rng(n)
    a, b = write.npy(rng.standard_normal((n, 3)), "a.npy"), write.npy(rng.standard_normal((n, 4)), "b.npy")
    d = _doc(a, b, "-m", "cka", "--ci-method", "percentile", "--seed", "3", "--resamples", "200")
    m = d["metrics"][0]
    assert m["value"] is not None
    assert (m["ci_low"] is not None) or m["ci_reason"]
