"""cka-rbf: a dense n×n oracle, the golden values, invariances, the exact null by enumeration and bad input."""

import itertools
import math

import numpy as np
import pytest
from conftest import golden_pair, make_pair

from repalign.errors import InputError, UsageError
from repalign.metrics import PairData, parse_metrics
from repalign.metrics import cka_rbf as mod
from repalign.results import UncertaintySettings

# Sums of ~10^4 kernel products in float64, in a different order from the module: agreement to 1e-12.
TOL = 1e-12


def _pair(X, Y, permutations=0):
    u = UncertaintySettings(resamples=0, permutations=permutations, permutations_explicit=permutations > 0)
    return PairData(X, Y, k=10, distance="cosine", labels=("a", "b"), uncertainty=u)


def _run(X, Y, text="cka-rbf", permutations=0):
    (choice,) = parse_metrics(text)
    return choice.spec.compute(_pair(X, Y, permutations), choice.values)


def _sq_dist(x):
    """n×n squared distances from differences, exact zero diagonal."""
    diff = x[:, None, :] - x[None, :, :]
    return np.einsum("ijk,ijk->ij", diff, diff)


def _kernel(x, sigma="median", factor=1.0):
    D = _sq_dist(x)
    s = factor * math.sqrt(np.median(D)) if sigma == "median" else sigma
    return np.exp(-D / (2 * s * s)), s


def _hsic(K, L):
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H)


def _oracle(X, Y, sigma="median", factor=1.0, eps=0.0):
    K, _ = _kernel(X, sigma, factor)
    L, _ = _kernel(Y, sigma, factor)
    return _hsic(K, L) / (math.sqrt(_hsic(K, K) * _hsic(L, L)) + eps)


@pytest.mark.parametrize("shape", [(30, 5, 7), (41, 12, 3), (8, 20, 2)])
@pytest.mark.parametrize("text,sigma,factor", [("cka-rbf", "median", 1.0), ("cka-rbf:factor=0.3", "median", 0.3),
                                               ("cka-rbf:sigma=2.5", 2.5, 1.0)])
def test_matches_dense_oracle(rng, shape, text, sigma, factor):
    n, d1, d2 = shape
    X, Y = make_pair(rng, n, d1, d2)
    res = _run(X, Y, text)
    assert res.value == pytest.approx(_oracle(X, Y, sigma, factor), abs=TOL)
    # The resolved σ of each side (median rule: relative agreement of two medians of the same numbers).
    assert res.params["sigma_a"] == pytest.approx(_kernel(X, sigma, factor)[1], rel=1e-12)
    assert res.params["sigma_b"] == pytest.approx(_kernel(Y, sigma, factor)[1], rel=1e-12)
    assert res.params["sigma_rule"] == ("fixed" if sigma != "median" else
                                        "median squared distance, zero diagonal included")
    assert res.params["factor"] == factor and res.params["sigma"] == sigma


@pytest.mark.parametrize("n", [5, 6, 9, 10])
def test_median_includes_the_zero_diagonal(rng, n):
    from repalign.metrics.condensed import condensed

    X = rng.standard_normal((n, 3))
    X[1] = X[0]  # a duplicate: a zero off the diagonal too
    c = condensed(X, "sqeuclidean")
    assert mod.median_with_diagonal(c, n) == pytest.approx(np.median(_sq_dist(X)), rel=1e-12)


def test_golden_kornblith():
    # docs/formulas.md §5: RBF CKA with θ = 0.5, Kornblith median (diagonal included), raw rows: 0.65483.
    X, Y = golden_pair()
    assert _run(X, Y, "cka-rbf:factor=0.5").value == pytest.approx(0.65483, abs=5e-6)


def test_golden_prh_sigma_one():
    # PRH: σ = 1 on L2-normalised rows, tr(KHLH)/(sqrt(tr(KHKH)·tr(LHLH)) + 1e-6): 0.582910. We do not add
    # the 1e-6; the dense oracle with it reproduces the golden, and our exact value differs from the golden
    # by no more than the 1e-6 accounts for (plus the golden's rounding).
    X, Y = golden_pair()
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    Y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    with_eps = _oracle(X, Y, 1.0, eps=1e-6)
    assert with_eps == pytest.approx(0.582910, abs=5e-7)
    exact = _run(X, Y, "cka-rbf:sigma=1").value
    assert exact == pytest.approx(_oracle(X, Y, 1.0), abs=TOL)
    assert abs(exact - 0.582910) <= abs(exact - with_eps) + 5e-7


def test_block_size_does_not_matter(rng):
    X, Y = make_pair(rng, 57, 6, 8)
    for sigma in ("median", 1.7):
        whole = mod.cka_rbf(X, Y, sigma, 0.8 if sigma == "median" else 1.0, block=57)
        for block in (1, 5, 16):
            assert mod.cka_rbf(X, Y, sigma, 0.8 if sigma == "median" else 1.0, block=block) == \
                pytest.approx(whole, abs=TOL)


def test_rotation_invariant_and_identity(rng):
    X, Y = make_pair(rng, 80, 10, 10)
    Q = np.linalg.qr(rng.standard_normal((10, 10)))[0]
    base = _run(X, Y).value
    assert _run(X @ Q, Y).value == pytest.approx(base, abs=1e-10)
    assert _run(X, X).value == pytest.approx(1.0, abs=TOL)
    assert _run(X, X @ Q).value == pytest.approx(1.0, abs=1e-10)


def test_permuted_rows_near_chance(rng):
    X, Y = make_pair(rng, 300, 10, 12, signal=2.0)
    aligned = _run(X, Y)
    shuffled = _run(X, Y[rng.permutation(300)])
    assert aligned.value > 0.3
    assert shuffled.null_sd > 0
    assert abs(shuffled.value - shuffled.chance) < 5 * shuffled.null_sd


@pytest.mark.parametrize("n", [5, 6, 7])
def test_exact_null_by_enumeration(rng, n):
    # Permuting B's rows leaves its squared distances' multiset, hence its median σ, unchanged: the
    # kernels are fixed and only the pairing varies.
    X, Y = make_pair(rng, n, 3, 4)
    res = _run(X, Y, "cka-rbf:factor=0.7")
    K, _ = _kernel(X, "median", 0.7)
    L, _ = _kernel(Y, "median", 0.7)
    denom = math.sqrt(_hsic(K, K) * _hsic(L, L))
    values = np.array([_hsic(K, L[np.ix_(p, p)]) / denom for p in map(list, itertools.permutations(range(n)))])
    assert res.chance == pytest.approx(values.mean(), abs=TOL)
    assert res.null_sd == pytest.approx(values.std(), abs=1e-10)


def test_null_equals_recomputation(rng):
    X, Y = make_pair(rng, 40, 6, 5)
    perms = [rng.permutation(40) for _ in range(4)]
    for text in ("cka-rbf", "cka-rbf:sigma=3"):
        (choice,) = parse_metrics(text)
        null = mod.SPEC.permutation_null(_pair(X, Y), choice.values, perms)
        for value, perm in zip(null, perms):
            assert value == pytest.approx(_run(X, Y[perm], text).value, abs=TOL)


def test_finish_runs_the_null_when_asked(rng):
    X, Y = make_pair(rng, 50, 5, 5)
    res = _run(X, Y, permutations=30)
    assert res.permutations == 30 and 0 < res.p_value <= 1


def test_undefined_values():
    X = np.ones((6, 3))
    X[0] = 2.0  # five identical rows of six: the median squared distance is 0
    res = _run(X, np.random.default_rng(1).standard_normal((6, 2)))
    assert res.value is None and "σ = 0" in res.reason
    res = _run(np.ones((6, 3)), np.random.default_rng(1).standard_normal((6, 2)), "cka-rbf:sigma=1")
    assert res.value is None and "centred kernel is zero" in res.reason


def test_bad_parameters_and_shapes():
    for text in ("cka-rbf:sigma=-1", "cka-rbf:sigma=0", "cka-rbf:sigma=wide", "cka-rbf:factor=0",
                 "cka-rbf:factor=-2"):
        with pytest.raises(UsageError):
            parse_metrics(text)
    (choice,) = parse_metrics("cka-rbf:sigma=2,factor=0.5")
    with pytest.raises(UsageError, match="factor applies to sigma=median only"):
        mod.SPEC.check(choice.values, 10, 3, 3, 1, ("x.npy", "y.npy"))
    with pytest.raises(InputError, match="at least 2"):
        mod.SPEC.check(mod.SPEC.defaults(), 1, 3, 3, 1, ("x.npy", "y.npy"))


def test_memory_estimate_counts_the_kernels():
    spec = mod.SPEC
    pairs = 10_000 * 9_999 // 2
    assert spec.memory(10_000, 768, 768, spec.defaults()) >= 3 * 8 * pairs
    assert spec.memory(10_000, 768, 768, {"sigma": 1.0, "factor": 1.0}) >= 2 * 8 * pairs


def test_tiny_fixed_sigma_is_noted(rng):
    X, Y = make_pair(rng, 30, 5, 5)
    pd = _pair(100 * X, Y)
    (choice,) = parse_metrics("cka-rbf:sigma=0.01")
    choice.spec.compute(pd, choice.values)
    assert any("numerically the identity" in note for note in pd.notes)
