"""rsa: a dense pair-loop oracle, scipy, the golden value, invariances, the permutation null and bad input."""

import itertools

import numpy as np
import pytest
from conftest import golden_pair, make_pair

from repalign.errors import InputError, UsageError
from repalign.metrics import PairData, parse_metrics
from repalign.metrics import rsa as rsa_mod
from repalign.results import UncertaintySettings

# Sums over up to ~10^4 pairs in float64, in a different order from the module: agreement to 1e-12.
TOL = 1e-12


def _pair(X, Y, permutations=0):
    u = UncertaintySettings(resamples=0, permutations=permutations, permutations_explicit=permutations > 0)
    return PairData(X, Y, k=10, distance="cosine", labels=("a", "b"), uncertainty=u)


def _run(X, Y, text="rsa", permutations=0):
    (choice,) = parse_metrics(text)
    return choice.spec.compute(_pair(X, Y, permutations), choice.values)


def _oracle_dissim(x, kind):
    """The n×n dissimilarity matrix, straight from the definition."""
    n = x.shape[0]
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if kind == "cosine":
                D[i, j] = 1 - x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
            else:
                D[i, j] = np.linalg.norm(x[i] - x[j])
    return D


def _oracle_ranks(v):
    """Average ranks by counting: rank = #smaller + (#equal + 1)/2 (1-based)."""
    return np.array([(v < t).sum() + ((v == t).sum() + 1) / 2 for t in v])


def _oracle(X, Y, method="spearman", kind="cosine"):
    DA, DB = _oracle_dissim(X, kind), _oracle_dissim(Y, kind)
    n = X.shape[0]
    u = np.array([DA[i, j] for i in range(n) for j in range(i + 1, n)])
    v = np.array([DB[i, j] for i in range(n) for j in range(i + 1, n)])
    if method == "spearman":
        u, v = _oracle_ranks(u), _oracle_ranks(v)
    return float(np.corrcoef(u, v)[0, 1])


@pytest.mark.parametrize("method", ["spearman", "pearson"])
@pytest.mark.parametrize("kind", ["cosine", "l2"])
@pytest.mark.parametrize("shape", [(30, 5, 7), (41, 12, 3)])
def test_matches_dense_oracle(rng, method, kind, shape):
    n, d1, d2 = shape
    X, Y = make_pair(rng, n, d1, d2)
    res = _run(X, Y, f"rsa:method={method},dissimilarity={kind}")
    assert res.value == pytest.approx(_oracle(X, Y, method, kind), abs=TOL)
    assert res.params == {"method": method, "dissimilarity": kind, "pairs": n * (n - 1) // 2}


def test_ties_get_average_ranks(rng):
    # Integer coordinates on 32 rows: the column means are multiples of 1/32, so centring, the Gram product
    # and the squared distances are exact and equal distances stay exactly equal (many ties, and duplicate
    # rows give zero distances). With general data, distances equal in exact arithmetic can differ in their
    # last bit after the Gram product; ties are those of the float64 dissimilarities.
    X = rng.integers(1, 4, size=(32, 3)).astype(float)
    Y = rng.integers(1, 4, size=(32, 2)).astype(float)
    for method in ("spearman", "pearson"):
        value = rsa_mod.rsa(X, Y, method, "l2")
        assert value == pytest.approx(_oracle(X, Y, method, "l2"), abs=TOL)


def test_average_ranks_with_ties(rng):
    from repalign.metrics.condensed import centred_average_ranks

    few = rng.permutation(np.r_[rng.standard_normal(300), [0.5] * 3, [0.7] * 2, [9.0] * 2, [-9.0] * 2])
    for v in (rng.integers(0, 6, size=500).astype(float), rng.standard_normal(300), np.full(4, 2.0), few):
        expected = _oracle_ranks(v) - (v.size + 1) / 2
        assert np.array_equal(centred_average_ranks(v.copy()), expected)


def test_matches_scipy(rng):
    spatial = pytest.importorskip("scipy.spatial.distance")
    scipy_stats = pytest.importorskip("scipy.stats")
    X, Y = make_pair(rng, 120, 9, 14)
    for kind, metric in (("cosine", "cosine"), ("l2", "euclidean")):
        dA, dB = spatial.pdist(X, metric), spatial.pdist(Y, metric)
        assert rsa_mod.rsa(X, Y, "spearman", kind) == pytest.approx(scipy_stats.spearmanr(dA, dB)[0], abs=TOL)
        assert rsa_mod.rsa(X, Y, "pearson", kind) == pytest.approx(scipy_stats.pearsonr(dA, dB)[0], abs=TOL)


def test_golden_pu_rsa():
    # docs/formulas.md: PU rsa (Spearman, cosine distance, raw rows) 0.481735.
    X, Y = golden_pair()
    assert _run(X, Y).value == pytest.approx(0.481735, abs=5e-7)


@pytest.mark.parametrize("method", ["spearman", "pearson"])
@pytest.mark.parametrize("kind", ["cosine", "l2"])
def test_block_size_does_not_matter(rng, method, kind):
    X, Y = make_pair(rng, 57, 6, 8)
    whole = rsa_mod.rsa(X, Y, method, kind, block=57)
    for block in (1, 5, 16):
        assert rsa_mod.rsa(X, Y, method, kind, block=block) == pytest.approx(whole, abs=TOL)


@pytest.mark.parametrize("kind", ["cosine", "l2"])
def test_rotation_invariant_and_identity(rng, kind):
    X, Y = make_pair(rng, 80, 10, 10)
    Q = np.linalg.qr(rng.standard_normal((10, 10)))[0]
    base = rsa_mod.rsa(X, Y, "spearman", kind)
    assert rsa_mod.rsa(X @ Q, Y, "spearman", kind) == pytest.approx(base, abs=1e-10)
    assert rsa_mod.rsa(X, X, "spearman", kind) == pytest.approx(1.0, abs=TOL)
    assert rsa_mod.rsa(X, X @ Q, "pearson", kind) == pytest.approx(1.0, abs=1e-10)


def test_permuted_rows_near_chance(rng):
    X, Y = make_pair(rng, 300, 10, 12, signal=2.0)
    aligned = _run(X, Y)
    shuffled = _run(X, Y[rng.permutation(300)])
    assert aligned.value > 0.3
    assert shuffled.chance == 0.0
    assert abs(shuffled.value) < 0.05


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_null_equals_recomputation(rng, method):
    X, Y = make_pair(rng, 40, 6, 5)
    X[3] = X[9]  # ties in A's dissimilarities
    params = {"method": method, "dissimilarity": "cosine"}
    perms = [rng.permutation(40) for _ in range(4)]
    null = rsa_mod.SPEC.permutation_null(_pair(X, Y), params, perms)
    for value, perm in zip(null, perms):
        assert value == pytest.approx(rsa_mod.rsa(X, Y[perm], method, "cosine"), abs=TOL)


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_exact_chance_by_enumeration(rng, method):
    X, Y = make_pair(rng, 6, 3, 4)
    params = {"method": method, "dissimilarity": "l2"}
    perms = [np.array(p) for p in itertools.permutations(range(6))]
    null = rsa_mod.SPEC.permutation_null(_pair(X, Y), params, perms)
    assert null.mean() == pytest.approx(_run(X, Y, f"rsa:method={method},dissimilarity=l2").chance, abs=TOL)


def test_finish_runs_the_null_when_asked(rng):
    X, Y = make_pair(rng, 50, 5, 5)
    res = _run(X, Y, permutations=30)
    assert res.permutations == 30 and 0 < res.p_value <= 1


def test_constant_dissimilarities_have_no_value():
    X = np.eye(4)  # every cosine distance is 1
    res = _run(X, np.random.default_rng(0).standard_normal((4, 3)))
    assert res.value is None and "all equal" in res.reason


def test_bad_parameters_and_shapes():
    with pytest.raises(UsageError, match="method"):
        parse_metrics("rsa:method=kendall")
    with pytest.raises(UsageError, match="dissimilarity"):
        parse_metrics("rsa:dissimilarity=ip")
    with pytest.raises(InputError, match="at least 3"):
        rsa_mod.SPEC.check(rsa_mod.SPEC.defaults(), 2, 4, 4, 1, ("x.npy", "y.npy"))
    X = np.ones((5, 3))
    X[2] = 0
    with pytest.raises(InputError, match="all-zero row 2"):
        _run(X, np.ones((5, 2)) + np.arange(5)[:, None])


def test_memory_estimate_grows_with_pairs():
    spec = rsa_mod.SPEC
    small, big = (spec.memory(n, 8, 8, spec.defaults()) for n in (1000, 2000))
    assert big > 3.5 * small
    assert spec.memory(10_000, 768, 768, spec.defaults()) > 80 * 10_000 * 9_999 // 2


@pytest.mark.parametrize("case", ["smooth", "ties", "few ties", "outlier", "zeros"])
def test_bucketed_sort_and_ranks_on_long_vectors(rng, case):
    # Long enough for the bucketed sort (≥ 8 buckets of 4096); an outlier piles all else into one bucket (the
    # plain argsort fallback). Reference ranks from np.unique: below-count + (count + 1)/2.
    from repalign.metrics.condensed import centred_average_ranks, sort_order

    v = {"smooth": lambda: rng.standard_normal(60_000),
         "ties": lambda: rng.integers(0, 40, 60_000).astype(float),
         "few ties": lambda: rng.permutation(np.r_[rng.standard_normal(60_000), [0.25] * 5, [-3.0] * 2]),
         "outlier": lambda: np.r_[rng.standard_normal(60_000), 1e12],
         "zeros": lambda: np.r_[np.zeros(20_000), rng.random(50_000)]}[case]()
    order, s = sort_order(v)
    assert np.array_equal(s, np.sort(v)) and np.array_equal(v[order], s)
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    below = np.cumsum(counts) - counts
    expected = (below + (counts + 1) / 2)[inverse] - (v.size + 1) / 2
    assert np.array_equal(centred_average_ranks(v.copy()), expected)
