"""edit-knn against formulas.md 2b: a Levenshtein oracle, PRH's golden value, invariances, null."""

import numpy as np
import pytest
import reference as ref
from conftest import make_pair

from repalign.errors import InputError, UsageError
from repalign.metrics import PairData, parse_metrics
from repalign.metrics.edit_knn import SPEC, edit_knn
from repalign.results import UncertaintySettings

pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def pair(X, Y, k=10, distance="cosine", permutations=0, explicit=False):
    u = UncertaintySettings(resamples=0, permutations=permutations, permutations_explicit=explicit)
    return PairData(X, Y, k=k, distance=distance, labels=("a", "b"), uncertainty=u, ordered=True)


def compute(X, Y, **kw):
    (choice,) = parse_metrics("edit-knn")
    return choice.spec.compute(pair(X, Y, **kw), choice.values)


def levenshtein(x, y):
    """Classic edit-distance table: insert, delete and substitute cost 1."""
    t = [[i + j if i * j == 0 else 0 for j in range(len(y) + 1)] for i in range(len(x) + 1)]
    for i, a in enumerate(x, 1):
        for j, b in enumerate(y, 1):
            t[i][j] = min(t[i - 1][j] + 1, t[i][j - 1] + 1, t[i - 1][j - 1] + (a != b))
    return t[-1][-1]


def oracle(A, B):
    """1 − (1/n) Σ_i Lev(A_i, B_i) / k."""
    return 1.0 - float(np.mean([levenshtein(list(a), list(b)) for a, b in zip(A, B)])) / len(A[0])


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
    # Shifts, reversals, partial overlaps and disjoint lists: every kind of edit.
    rng = np.random.default_rng(4)
    for k in (1, 2, 5, 16, 33):
        A = np.array([rng.choice(50, k, replace=False) for _ in range(300)])
        B = np.array([rng.permutation(np.concatenate([a[: rng.integers(k + 1)], 100 + np.arange(k)]))[:k]
                      for a in A])
        B[::7] = A[::7, ::-1]
        B[1::7] = np.roll(A[1::7], 1, axis=1)
        assert edit_knn(A, B) == pytest.approx(oracle(A, B), abs=1e-12)


def test_golden_value_of_prh(golden):
    # PRH edit_distance_knn on L2-normalised rows, k=10: 1 − mean Lev / k = 0.0320.
    X, Y = golden
    res = compute(X, Y, k=10)
    assert res.value == pytest.approx(0.0320, abs=1e-12)
    assert res.params == {"k": 10, "distance": "cosine"}
    assert res.chance is None and res.z is None


def test_rotation_invariant_identical_inputs_and_random_pairing(rng):
    X, Y = make_pair(rng, n=400, d1=10, d2=10, signal=3.0)
    Q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    assert compute(X, Y @ Q).value == pytest.approx(compute(X, Y).value, abs=1e-12)
    assert compute(X, X).value == 1.0
    # No closed-form chance: compare a random pairing with the permutation null of the true pairing.
    perm = rng.permutation(400)
    null = SPEC.permutation_null(pair(X, Y), {}, [rng.permutation(400) for _ in range(200)])
    shuffled = compute(X, Y[perm]).value
    assert abs(shuffled - null.mean()) < 5 * null.std() + 1e-12
    assert compute(X, Y).value > null.max() + 0.05


def test_permutation_null_equals_recomputing_on_permuted_rows(rng):
    X, Y = make_pair(rng, n=150, d1=8, d2=12)
    perms = [rng.permutation(150) for _ in range(4)]
    null = SPEC.permutation_null(pair(X, Y, k=7), {}, perms)
    assert null.tolist() == [compute(X, Y[perm], k=7).value for perm in perms]


def test_costly_null_runs_only_when_asked(rng):
    X, Y = make_pair(rng, n=150, d1=8, d2=8, signal=3.0)
    assert not SPEC.cheap_null and SPEC.work.ordered
    assert compute(X, Y, permutations=40).p_value is None
    asked = compute(X, Y, permutations=40, explicit=True)
    assert asked.permutations == 40 and asked.p_value == pytest.approx(1 / 41)


def test_bad_parameters_and_shapes():
    with pytest.raises(UsageError, match="no parameter 'k'"):
        parse_metrics("edit-knn:k=3")
    with pytest.raises(InputError, match=r"a and b hold 10 items, but edit-knn with k=9 needs at least k\+2 = 11"):
        SPEC.check({}, 10, 3, 3, 9, ("a", "b"))
