"""cknna against a dense n×n oracle written from docs/formulas.md §2, PRH's golden value, invariances, null."""

import math

import numpy as np
import pytest
from conftest import golden_pair, make_pair

from repalign.errors import InputError, UsageError
from repalign.metrics import REGISTRY, PairData, parse_metrics
from repalign.metrics.knn import relabel
from repalign.results import UncertaintySettings

# The sparse sums and the dense ones add the same float64 products in different orders: a few ulps of
# quantities of order 1, far below 1e-10.
TOL = 1e-10
SPEC = REGISTRY["cknna"]


def pair_data(X, Y, k=10, distance="cosine", permutations=0, explicit=False):
    u = UncertaintySettings(resamples=0, permutations=permutations, permutations_explicit=explicit)
    return PairData(X, Y, k=k, distance=distance, labels=("a", "b"), uncertainty=u, ordered=True)


def score(X, Y, k=10, distance="cosine", **kw):
    (choice,) = parse_metrics("cknna")
    return choice.spec.compute(pair_data(X, Y, k, distance, **kw), choice.values)


# --- the dense oracle: K, L, masks and HSIC₁ as n×n matrices, as formulas.md §2 and platonic-rep define them

def dense_kernel(X, distance):
    X = np.asarray(X, dtype=np.float64)
    if distance == "cosine":
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return X @ X.T


def dense_mask(X, k, distance):
    """Row-wise top-k mask, self excluded, ties by the smaller index (a stable sort)."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if distance == "l2":
        sq = (X * X).sum(axis=1)
        key = sq[:, None] + sq[None, :] - 2 * X @ X.T  # smaller is nearer
    else:
        key = -dense_kernel(X, distance)
    np.fill_diagonal(key, np.inf)
    idx = np.argsort(key, axis=1, kind="stable")[:, :k]
    M = np.zeros((n, n))
    M[np.arange(n)[:, None], idx] = 1.0
    return M


def dense_hsic1(K, L):
    n = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    ones = np.ones(n)
    return ((Kt * Lt.T).sum() + Kt.sum() * Lt.sum() / ((n - 1) * (n - 2))
            - 2 * ones @ Kt @ Lt @ ones / (n - 2)) / (n * (n - 3))


def dense_cknna(X, Y, k, distance="cosine", eps=0.0):
    K, L = dense_kernel(X, distance), dense_kernel(Y, distance)
    MK, ML = dense_mask(X, k, distance), dense_mask(Y, k, distance)
    m = MK * ML
    return dense_hsic1(m * K, m * L) / (math.sqrt(dense_hsic1(MK * K, MK * K) * dense_hsic1(ML * L, ML * L)) + eps)


# --- 1. the oracle

@pytest.mark.parametrize("seed, n, d1, d2, k, distance", [
    (0, 50, 5, 7, 2, "cosine"), (1, 120, 16, 8, 10, "cosine"), (2, 200, 12, 20, 7, "cosine"),
    (3, 80, 6, 6, 5, "ip"), (4, 150, 10, 4, 12, "ip"), (5, 90, 8, 9, 6, "l2"), (6, 60, 3, 5, 40, "cosine")])
def test_matches_dense_oracle(seed, n, d1, d2, k, distance):
    X, Y = make_pair(np.random.default_rng(seed), n=n, d1=d1, d2=d2, signal=1.5, rank=3)
    res = score(X, Y, k, distance)
    assert res.value == pytest.approx(dense_cknna(X, Y, k, distance), abs=TOL)
    kernel = "cosine" if distance == "cosine" else "inner-product"
    assert res.params == {"k": k, "distance": distance, "kernel": kernel}


def test_float32_inputs_are_summed_in_float64():
    X, Y = make_pair(np.random.default_rng(7), n=100, d1=30, d2=20, dtype=np.float32)
    # The oracle works on the same float32 values promoted to float64.
    assert score(X, Y, 8).value == pytest.approx(dense_cknna(X, Y, 8), abs=TOL)


# --- 2. golden values (PRH's cknna on L2-normalised rows, k = 10)

def test_golden_value():
    X, Y = golden_pair()
    nx = X / np.linalg.norm(X, axis=1, keepdims=True)
    ny = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    assert round(score(nx, ny, 10).value, 6) == 0.311153
    # the cosine kernel normalises the rows itself, so raw rows give the same value
    assert round(score(X, Y, 10).value, 6) == 0.311153
    # the oracle with PRH's 1e-6 in the denominator reproduces their printed value
    assert round(dense_cknna(nx, ny, 10, eps=1e-6), 6) == 0.311141


# --- 3. invariances and controls

def test_rotation_invariant_with_cosine_kernel():
    rng = np.random.default_rng(8)
    X, Y = make_pair(rng, n=150, d1=12, d2=12)
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    assert score(X, Y @ Q).value == pytest.approx(score(X, Y).value, abs=TOL)
    assert score(X @ Q, Y).value == pytest.approx(score(X, Y).value, abs=TOL)


@pytest.mark.parametrize("distance", ["cosine", "ip", "l2"])
def test_identical_inputs_give_one(distance):
    X, _ = make_pair(np.random.default_rng(9), n=120, d1=10)
    assert score(X, X.copy(), 10, distance).value == pytest.approx(1.0, abs=TOL)


def test_permuted_rows_are_near_chance():
    rng = np.random.default_rng(10)
    X, Y = make_pair(rng, n=600, d1=16, d2=24, signal=2.0)
    assert score(X, Y).value > 0.3
    res = score(X, Y[rng.permutation(600)], permutations=199)
    # the null sits slightly above 0 (about k/n here) with SD about 0.003
    assert abs(res.value) < 0.05
    assert res.p_value > 0.01
    assert res.chance is None


# --- 4. the permutation null

def test_relabel():
    lists = np.array([[1, 2], [2, 0], [0, 1]])
    perm = np.array([2, 0, 1])
    # row i of the permuted side is old row perm[i]; old item j is now at inv[j]
    inv = np.argsort(perm)
    assert relabel(lists, perm).tolist() == [[inv[0], inv[1]], [inv[1], inv[2]], [inv[2], inv[0]]]


@pytest.mark.parametrize("distance", ["cosine", "ip"])
def test_null_equals_recomputation(distance):
    rng = np.random.default_rng(11)
    X, Y = make_pair(rng, n=150, d1=10, d2=14)
    perms = [rng.permutation(150) for _ in range(4)]
    (choice,) = parse_metrics("cknna")
    null = SPEC.permutation_null(pair_data(X, Y, 6, distance), choice.values, perms)
    fresh = [score(X, Y[p], 6, distance).value for p in perms]
    np.testing.assert_allclose(null, fresh, rtol=0, atol=TOL)
    assert null == pytest.approx([dense_cknna(X, Y[p], 6, distance) for p in perms], abs=TOL)


def test_null_runs_by_default_when_permutations_are_asked():
    X, Y = make_pair(np.random.default_rng(12), n=100, signal=2.0)
    assert SPEC.cheap_null
    res = score(X, Y, permutations=49)
    assert res.permutations == 49
    assert res.p_value == pytest.approx(1 / 50)


# --- 5. bad parameters, shapes and undefined values

def test_refuses_k_below_two():
    with pytest.raises(InputError, match=r"a and b: cknna needs k ≥ 2 \(got k=1\)"):
        SPEC.check({}, 50, 4, 4, 1, ("a", "b"))
    X, Y = make_pair(np.random.default_rng(13), n=30)
    with pytest.raises(InputError, match="k=1"):
        score(X, Y, k=1)


def test_refuses_k_too_large():
    with pytest.raises(InputError, match="x and y hold 12 items, but cknna with k=11"):
        SPEC.check({}, 12, 4, 4, 11, ("x", "y"))


def test_has_no_parameters():
    with pytest.raises(UsageError, match="metric 'cknna' has no parameter 'topk'"):
        parse_metrics("cknna:topk=5")


def test_zero_row_with_cosine_is_an_input_error():
    X, Y = make_pair(np.random.default_rng(14), n=30)
    X[3] = 0.0
    with pytest.raises(InputError, match="a: all-zero"):
        score(X, Y, 5)


def test_undefined_when_a_self_term_is_not_positive():
    # Inner-product kernel, n = 4, k = 2: HSIC₁(M∘K, M∘K) = −0.125 for this side (the oracle agrees).
    X = np.array([[4.0, 1.0], [0.0, -1.0], [1.0, -1.0], [-1.0, 4.0]])
    K, M = dense_kernel(X, "ip"), dense_mask(X, 2, "ip")
    assert dense_hsic1(M * K, M * K) == pytest.approx(-0.125)
    Y = np.random.default_rng(15).standard_normal((4, 3))
    res = score(X, Y, 2, "ip")
    assert res.value is None
    assert "a: the unbiased HSIC of the k-NN-masked kernel with itself is not positive" in res.reason
    assert res.params["kernel"] == "inner-product"
