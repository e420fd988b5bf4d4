"""jaccard against formulas.md §2: a set-based oracle, PU's golden value, exact chance by enumeration, null."""

import itertools

import numpy as np
import pytest
import reference as ref
from conftest import make_pair

from repalign.errors import InputError, UsageError
from repalign.metrics import PairData, parse_metrics
from repalign.metrics.jaccard import SPEC, jaccard_chance
from repalign.metrics.knn import relabel
from repalign.results import UncertaintySettings

pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def pair(X, Y, k=10, distance="cosine", permutations=0):
    u = UncertaintySettings(resamples=0, permutations=permutations)
    return PairData(X, Y, k=k, distance=distance, labels=("a", "b"), uncertainty=u)


def compute(X, Y, **kw):
    (choice,) = parse_metrics("jaccard")
    return choice.spec.compute(pair(X, Y, **kw), choice.values)


def oracle(A, B):
    """(1/n) Σ_i |A_i ∩ B_i| / |A_i ∪ B_i| with Python sets."""
    return float(np.mean([len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(A, B)]))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape,k,distance", [((60, 5, 7), 3, "cosine"), ((90, 12, 4), 10, "l2"),
                                              ((40, 30, 50), 1, "ip")])
def test_against_dense_oracle(seed, shape, k, distance):
    n, d1, d2 = shape
    X, Y = make_pair(np.random.default_rng(seed), n=n, d1=d1, d2=d2)
    A, B = ref.dense_knn(X, k, distance), ref.dense_knn(Y, k, distance)
    assert compute(X, Y, k=k, distance=distance).value == pytest.approx(oracle(A, B), abs=1e-12)
    assert compute(Y, X, k=k, distance=distance).value == pytest.approx(oracle(A, B), abs=1e-12)


def test_golden_value_of_pu(golden):
    # PU jaccard on raw rows with cosine neighbours, k=10 (formulas.md 2b), given to six decimals.
    X, Y = golden
    res = compute(X, Y, k=10)
    assert round(res.value, 6) == 0.170125
    assert res.params == {"k": 10, "distance": "cosine"}


def test_rotation_invariant_identical_inputs_and_random_pairing(rng):
    X, Y = make_pair(rng, n=600, d1=10, d2=10, signal=3.0)
    Q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    assert compute(X, Y @ Q).value == pytest.approx(compute(X, Y).value, abs=1e-12)
    assert compute(X, X).value == 1.0
    res = compute(X, Y[rng.permutation(600)])
    # Chance ≈ 0.0086; a row's ratio has SD ≈ 0.05, so the mean over 600 rows has SD ≈ 0.002; 5 SD.
    assert abs(res.value - res.chance) < 0.01
    assert compute(X, Y).value > res.chance + 0.1


@pytest.mark.parametrize("n,k", [(6, 2), (7, 3), (7, 5)])
def test_exact_chance_by_enumerating_permutations(n, k):
    rng = np.random.default_rng(n * 10 + k)
    A = np.array([rng.choice([j for j in range(n) if j != i], k, replace=False) for i in range(n)])
    B = np.array([rng.choice([j for j in range(n) if j != i], k, replace=False) for i in range(n)])
    mean = np.mean([oracle(A, relabel(B, np.array(perm))) for perm in itertools.permutations(range(n))])
    assert jaccard_chance(n, k) == pytest.approx(mean, abs=1e-12)


def test_chance_at_large_n_by_hypergeometric_sum():
    # Independent route: exact binomials with Python integers.
    from math import comb
    n, k = 100_000, 50
    want = sum(comb(k, o) * comb(n - 1 - k, k - o) * o / (2 * k - o) for o in range(k + 1)) / comb(n - 1, k)
    assert jaccard_chance(n, k) == pytest.approx(want, rel=1e-12)


def test_relabel_is_the_search_on_permuted_rows(rng):
    X, Y = make_pair(rng, n=80, d1=6, d2=6)
    perm = rng.permutation(80)
    assert np.array_equal(relabel(ref.dense_knn(Y, 5), perm), ref.dense_knn(Y[perm], 5))


def test_permutation_null_equals_recomputing_on_permuted_rows(rng):
    X, Y = make_pair(rng, n=150, d1=8, d2=12)
    perms = [rng.permutation(150) for _ in range(4)]
    null = SPEC.permutation_null(pair(X, Y, k=7), {}, perms)
    assert null.tolist() == [compute(X, Y[perm], k=7).value for perm in perms]
    res = compute(X, Y, permutations=50)
    assert SPEC.cheap_null and res.permutations == 50 and 0 < res.p_value <= 1


def test_bad_parameters_and_shapes():
    with pytest.raises(UsageError, match="no parameter 'k'"):
        parse_metrics("jaccard:k=5")
    with pytest.raises(InputError, match=r"x and y hold 5 items, but jaccard with k=4 needs at least k\+2 = 6"):
        SPEC.check({}, 5, 3, 3, 4, ("x", "y"))
