"""lcs-knn against formulas.md 2b: a k×k DP oracle, PRH's golden value, exact chance by enumeration, null."""

import itertools

import numpy as np
import pytest
import reference as ref
from conftest import make_pair

from repalign.errors import InputError, UsageError
from repalign.metrics import PairData, parse_metrics
from repalign.metrics.lcs_knn import SPEC, lcs_chance, lcs_knn, mean_lis
from repalign.results import UncertaintySettings

pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def pair(X, Y, k=10, distance="cosine", permutations=0):
    u = UncertaintySettings(resamples=0, permutations=permutations)
    return PairData(X, Y, k=k, distance=distance, labels=("a", "b"), uncertainty=u, ordered=True)


def compute(X, Y, **kw):
    (choice,) = parse_metrics("lcs-knn")
    return choice.spec.compute(pair(X, Y, **kw), choice.values)


def lcs(x, y):
    """Classic longest-common-subsequence table."""
    t = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i, a in enumerate(x):
        for j, b in enumerate(y):
            t[i + 1][j + 1] = t[i][j] + 1 if a == b else max(t[i][j + 1], t[i + 1][j])
    return t[-1][-1]


def oracle(A, B):
    """(1/n) Σ_i LCS(A_i, B_i) / k."""
    return float(np.mean([lcs(list(a), list(b)) for a, b in zip(A, B)]) / len(A[0]))


def permuted_lists(B, perm):
    where = {int(r): i for i, r in enumerate(perm)}
    return [[where[int(x)] for x in B[perm[i]]] for i in range(len(B))]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape,k,distance", [((60, 5, 7), 3, "cosine"), ((90, 12, 4), 10, "l2"),
                                              ((40, 30, 50), 1, "ip"), ((120, 3, 3), 17, "cosine")])
def test_against_dense_oracle(seed, shape, k, distance):
    n, d1, d2 = shape
    X, Y = make_pair(np.random.default_rng(seed), n=n, d1=d1, d2=d2)
    A, B = ref.dense_knn(X, k, distance), ref.dense_knn(Y, k, distance)
    assert compute(X, Y, k=k, distance=distance).value == pytest.approx(oracle(A, B), abs=1e-12)
    assert compute(Y, X, k=k, distance=distance).value == pytest.approx(oracle(A, B), abs=1e-12)


def test_on_hand_made_lists():
    # Lists with every overlap and order pattern, including none in common and reversed order.
    rng = np.random.default_rng(3)
    for k in (1, 2, 5, 16, 33):
        A = np.array([rng.choice(50, k, replace=False) for _ in range(300)])
        B = np.array([rng.permutation(np.concatenate([a[: rng.integers(k + 1)], 100 + np.arange(k)]))[:k]
                      for a in A])
        B[::7] = A[::7, ::-1]
        assert lcs_knn(A, B) == pytest.approx(oracle(A, B), abs=1e-12)


def test_golden_value_of_prh(golden):
    # PRH lcs_knn on L2-normalised rows, k=10: mean length 1.84, so 0.184 on our [0, 1] scale.
    X, Y = golden
    res = compute(X, Y, k=10)
    assert res.value * 10 == pytest.approx(1.84, abs=1e-12)
    assert res.params == {"k": 10, "distance": "cosine", "scale": "length/k"}


def test_rotation_invariant_identical_inputs_and_random_pairing(rng):
    X, Y = make_pair(rng, n=600, d1=10, d2=10, signal=3.0)
    Q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    assert compute(X, Y @ Q).value == pytest.approx(compute(X, Y).value, abs=1e-12)
    assert compute(X, X).value == 1.0
    res = compute(X, Y[rng.permutation(600)])
    # Chance ≈ 0.0159; a row's LCS/k has SD ≈ 0.04, the mean over 600 rows SD ≈ 0.0017; 6 SD.
    assert abs(res.value - res.chance) < 0.01
    assert compute(X, Y).value > res.chance + 0.1


def test_mean_lis_by_enumerating_permutations():
    def lis(seq):
        best = [1] * len(seq)
        for i in range(len(seq)):
            for j in range(i):
                if seq[j] < seq[i]:
                    best[i] = max(best[i], best[j] + 1)
        return max(best, default=0)
    for o in range(8):
        want = np.mean([lis(s) for s in itertools.permutations(range(o))])
        assert mean_lis(o) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("n,k", [(6, 2), (7, 3), (7, 4)])
def test_exact_chance_by_enumerating_permutations(n, k):
    rng = np.random.default_rng(n * 10 + k)
    A = np.array([rng.choice([j for j in range(n) if j != i], k, replace=False) for i in range(n)])
    B = np.array([rng.choice([j for j in range(n) if j != i], k, replace=False) for i in range(n)])
    mean = np.mean([oracle(A, permuted_lists(B, perm)) for perm in itertools.permutations(range(n))])
    assert lcs_chance(n, k) == pytest.approx(mean, abs=1e-12)


def test_chance_is_withheld_when_large_overlaps_are_likely(rng):
    assert lcs_chance(60, 50) is None
    X, Y = make_pair(rng, n=60, d1=4, d2=4)
    res = compute(X, Y, k=50)
    assert res.chance is None and res.value is not None and res.z is None


def test_permutation_null_equals_recomputing_on_permuted_rows(rng):
    X, Y = make_pair(rng, n=150, d1=8, d2=12)
    perms = [rng.permutation(150) for _ in range(4)]
    null = SPEC.permutation_null(pair(X, Y, k=7), {}, perms)
    assert null.tolist() == [compute(X, Y[perm], k=7).value for perm in perms]
    res = compute(X, Y, permutations=50)
    assert SPEC.cheap_null and SPEC.work.ordered and res.permutations == 50


def test_bad_parameters_and_shapes():
    with pytest.raises(UsageError, match="no parameter 'scale'"):
        parse_metrics("lcs-knn:scale=length")
    with pytest.raises(InputError, match=r"a and b hold 3 items, but lcs-knn with k=2 needs at least k\+2 = 4"):
        SPEC.check({}, 3, 3, 3, 2, ("a", "b"))
