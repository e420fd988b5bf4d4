"""cycle-knn against formulas.md §2: a set-based oracle, PRH's golden value, exact chance by enumeration, null."""

import itertools

import numpy as np
import pytest
import reference as ref
from conftest import make_pair

from repalign.errors import InputError, UsageError
from repalign.metrics import PairData, parse_metrics
from repalign.metrics.cycle_knn import SPEC, cycle_chance
from repalign.results import UncertaintySettings

pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def pair(X, Y, k=10, distance="cosine", permutations=0, explicit=False):
    u = UncertaintySettings(resamples=0, permutations=permutations, permutations_explicit=explicit)
    return PairData(X, Y, k=k, distance=distance, labels=("a", "b"), uncertainty=u)


def compute(X, Y, **kw):
    (choice,) = parse_metrics("cycle-knn")
    return choice.spec.compute(pair(X, Y, **kw), choice.values)


def oracle(A, B):
    """(1/n) Σ_i 1[∃ j ∈ N^B(i) with i ∈ N^A(j)], straight from the sets."""
    return float(np.mean([any(i in set(A[j]) for j in B[i]) for i in range(len(A))]))


def permuted_lists(B, perm):
    """B's lists after B's rows are permuted (row i ← row perm[i]), written out item by item."""
    where = {int(r): i for i, r in enumerate(perm)}
    return [[where[int(x)] for x in B[perm[i]]] for i in range(len(B))]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape,k,distance", [((60, 5, 7), 3, "cosine"), ((90, 12, 4), 10, "l2"),
                                              ((40, 30, 50), 1, "ip")])
def test_against_dense_oracle(seed, shape, k, distance):
    n, d1, d2 = shape
    X, Y = make_pair(np.random.default_rng(seed), n=n, d1=d1, d2=d2)
    got = compute(X, Y, k=k, distance=distance)
    A, B = ref.dense_knn(X, k, distance), ref.dense_knn(Y, k, distance)
    assert got.value == pytest.approx(oracle(A, B), abs=1e-12)
    # The other direction is a different number in general: the spec says it is asymmetric.
    assert compute(Y, X, k=k, distance=distance).value == pytest.approx(oracle(B, A), abs=1e-12)


def test_golden_value_of_prh(golden):
    # PRH cycle_knn on L2-normalised rows, k=10 (formulas.md 2b and §5); cosine lists are the same lists.
    X, Y = golden
    res = compute(X, Y, k=10)
    assert res.value == pytest.approx(0.95, abs=1e-12)
    assert res.params == {"k": 10, "distance": "cosine"}
    assert not SPEC.symmetric and "N_b(i)" in SPEC.asymmetry


def test_rotation_invariant_and_identical_inputs(rng):
    X, Y = make_pair(rng, n=120, d1=10, d2=10)
    Q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    assert compute(X, Y @ Q).value == pytest.approx(compute(X, Y).value, abs=1e-12)
    A = ref.dense_knn(X, 10)
    assert compute(X, X).value == pytest.approx(oracle(A, A), abs=1e-12)


def test_random_pairing_is_near_chance(rng):
    X, Y = make_pair(rng, n=600, d1=16, d2=16, signal=3.0)
    res = compute(X, Y[rng.permutation(600)], k=10)
    # Each row is a Bernoulli with p ≈ 0.15; 600 rows: SD ≈ 0.015 (rows nearly independent); 5 SD.
    assert abs(res.value - res.chance) < 0.075
    assert compute(X, Y, k=10).value > res.chance + 0.3


@pytest.mark.parametrize("n,k", [(6, 1), (6, 2), (7, 3)])
def test_exact_chance_by_enumerating_permutations(n, k):
    # Arbitrary lists (not from a search), so the in-degrees vary; every permutation of B's rows, averaged.
    rng = np.random.default_rng(n * 10 + k)
    A = np.array([rng.choice([j for j in range(n) if j != i], k, replace=False) for i in range(n)])
    B = np.array([rng.choice([j for j in range(n) if j != i], k, replace=False) for i in range(n)])
    mean = np.mean([oracle(A, permuted_lists(B, perm)) for perm in itertools.permutations(range(n))])
    assert cycle_chance(A) == pytest.approx(mean, abs=1e-12)


def test_permutation_null_equals_recomputing_on_permuted_rows(rng):
    X, Y = make_pair(rng, n=150, d1=8, d2=12)
    p = pair(X, Y, k=7)
    perms = [rng.permutation(150) for _ in range(4)]
    null = SPEC.permutation_null(p, {}, perms)
    assert null.dtype == np.float64
    assert null.tolist() == [compute(X, Y[perm], k=7).value for perm in perms]


def test_cheap_null_runs_by_default_and_gives_a_p_value(rng):
    X, Y = make_pair(rng, n=200, d1=8, d2=8, signal=3.0)
    res = compute(X, Y, permutations=99)
    assert SPEC.cheap_null and res.permutations == 99 and res.p_value == pytest.approx(0.01)


def test_bad_parameters_and_shapes():
    with pytest.raises(UsageError, match="no parameter 'k'"):
        parse_metrics("cycle-knn:k=5")
    with pytest.raises(InputError, match=r"a and b hold 8 items, but cycle-knn with k=7 needs at least k\+2 = 9"):
        SPEC.check({}, 8, 3, 3, 7, ("a", "b"))
    with pytest.raises(UsageError, match="at least 1"):
        SPEC.check({}, 8, 3, 3, 0, ("a", "b"))
    X, Y = make_pair(np.random.default_rng(0), n=8, d1=3, d2=3)
    with pytest.raises(InputError, match="cycle-knn with k=7"):
        compute(X, Y, k=7)
