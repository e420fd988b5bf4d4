"""Exact permutation-null moments (repalign.stats.nulls) against all n! pairings and against Monte Carlo.

The references never use the closed forms: every permuted score is computed
from its definition (dense adjacency / dense kernels, the formulas of
tests/reference.py applied to a batch of permuted kernels), and a few of them
are checked against reference.py called on the permuted data itself.

Negative controls, checked by hand while developing (each made the named
tests fail, then was reverted):
- mknn: dropping the reversed-pair term M_A·M_B/(n)_2 → every exhaustive mknn
  case with mutual pairs fails (kept as a permanent check in
  test_dropping_mutual_pair_term_is_detected); dropping one of the two
  "path" terms C_A·C_B/(n)_3 also fails.
- biased CKA: dropping the diagonal term Q_X·Q_Y/(...) (Q carries Σ a_i²,
  the only trace of Kc's diagonal beyond tr Kc) fails every exhaustive biased
  case. The Monte Carlo test cannot see it: at n = 200 that term is < 1% of
  the variance (O(1/n) relative), well inside the MC tolerance. 2 → 1 in
  the first term fails both.
- unbiased CKA: replacing 2/(n(n−3)) by 2/(n(n−1)) (the pair term alone) fails.
"""

import functools
import itertools
import math

import numpy as np
import pytest
import reference as ref
from conftest import make_pair

from repalign.metrics import cka as cka_mod
from repalign.metrics import knn as knn_mod
from repalign.stats import nulls

# Enumeration and the closed forms differ only by float rounding (~1e-15).
REL = 1e-10


# ---------------------------------------------------------------- references


@functools.lru_cache(maxsize=None)
def all_perms(n):
    """All n! permutations as rows of an (n!, n) array."""
    return np.array(list(itertools.permutations(range(n))), dtype=np.intp)


def adjacency(knn):
    """Dense 0/1 matrix, M[i, j] = 1 iff j ∈ N(i)."""
    n, k = knn.shape
    M = np.zeros((n, n), dtype=bool)
    M[np.repeat(np.arange(n), k), knn.ravel()] = True
    return M


def permuted(M, P):
    """[m, i, j] = M[P[m, i], P[m, j]]: the kernel / k-NN graph of Y[P[m]] from that of Y."""
    return M[P[:, :, None], P[:, None, :]]


def mknn_all(knn_a, knn_b, P):
    """Mutual k-NN of (X, Y[p]) for every row p of P: (1/(n·k)) Σ_i |N_A(i) ∩ N_B^p(i)|."""
    n, k = knn_a.shape
    return (adjacency(knn_a)[None] & permuted(adjacency(knn_b), P)).sum(axis=(1, 2)) / (n * k)


def _tr_prod(A, B):
    """tr(A B) over a batch."""
    return np.einsum("...ij,...ji->...", A, B)


def hsic_biased_batch(K, L):
    """reference.hsic_biased, batched: tr(KHLH)/(n−1)²."""
    n = K.shape[-1]
    H = np.eye(n) - np.ones((n, n)) / n
    return _tr_prod(K @ H, L @ H) / (n - 1) ** 2


def hsic_unbiased_batch(K, L):
    """reference.hsic_unbiased (Song et al. 2012, eq. 5), batched."""
    n = K.shape[-1]
    off = 1.0 - np.eye(n)
    Kt, Lt = K * off, L * off
    cross = np.einsum("...i,...i->...", Kt.sum(axis=-2), Lt.sum(axis=-1))  # 1ᵀ Kt Lt 1
    term = _tr_prod(Kt, Lt) + Kt.sum(axis=(-2, -1)) * Lt.sum(axis=(-2, -1)) / ((n - 1) * (n - 2)) \
        - 2 * cross / (n - 2)
    return term / (n * (n - 3))


def cka_all(X, Y, P, unbiased):
    """Linear CKA of (X, Y[p]) for every row p of P, from the dense kernels."""
    K = X @ X.T
    Lp = permuted(Y @ Y.T, P)
    h = hsic_unbiased_batch if unbiased else hsic_biased_batch
    return h(K, Lp) / np.sqrt(h(K, K) * h(Lp, Lp))


def u_centre(K):
    """Székely & Rizzo (2014) U-centring of K with its diagonal removed; zero diagonal."""
    n = K.shape[0]
    Kt = K - np.diag(np.diag(K))
    U = Kt - Kt.sum(1)[:, None] / (n - 2) - Kt.sum(0)[None, :] / (n - 2) + Kt.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(U, 0.0)
    return U


def random_graph(rng, n, k):
    """k distinct random neighbours j ≠ i per row: uneven in-degrees, a few mutual pairs."""
    return np.array([rng.choice(np.delete(np.arange(n), i), size=k, replace=False) for i in range(n)])


def hub_graph(n, k, hubs):
    """Every item points to the hubs first, then to the next items in cyclic order (self skipped)."""
    rows = []
    for i in range(n):
        cand = [h for h in hubs if h != i] + [(i + s) % n for s in range(1, n)]
        row = []
        for j in cand:
            if j != i and j not in row:
                row.append(j)
        rows.append(row[:k])
    return np.array(rows)


def pairing_graph(n):
    """k = 1, i ↔ i xor 1: every edge is mutual (n even)."""
    return np.arange(n) ^ 1


def assert_matches_enumeration(vals, mean, sd):
    assert mean == pytest.approx(vals.mean(), rel=REL, abs=1e-13)
    assert sd == pytest.approx(vals.std(), rel=REL, abs=1e-13)  # population sd over all n! pairings


# ---------------------------------------------------------------- mutual k-NN, exhaustive


def _points(rng, n, distance, k):
    X = rng.standard_normal((n, 3))
    Y = rng.standard_normal((n, 4)) + 0.5
    return ref.dense_knn(X, k, distance), ref.dense_knn(Y, k, distance)


@pytest.mark.parametrize(("n", "k", "distance"), [(8, 1, "cosine"), (8, 2, "l2"), (8, 3, "ip"), (8, 6, "cosine"),
                                                  (7, 4, "l2"), (4, 2, "cosine"), (3, 1, "l2")])
def test_mknn_real_point_sets_exhaustive(rng, n, k, distance):
    knn_a, knn_b = _points(rng, n, distance, k)
    P = all_perms(n)
    vals = mknn_all(knn_a, knn_b, P)
    mean, sd = nulls.mknn_null(knn_a, knn_b)
    assert mean == knn_mod.chance(n, k)  # k/(n−1) exactly
    assert_matches_enumeration(vals, mean, sd)


def test_mknn_relabelling_equals_search_from_scratch(rng):
    # Guards the batched reference: permuting the stored graph gives the same
    # score as searching neighbours again in the permuted data (no ties here).
    n, k = 8, 3
    X, Y = rng.standard_normal((n, 3)), rng.standard_normal((n, 5))
    knn_a, knn_b = ref.dense_knn(X, k), ref.dense_knn(Y, k)
    P = all_perms(n)
    idx = rng.choice(len(P), size=25, replace=False)
    batched = mknn_all(knn_a, knn_b, P[idx])
    direct = [ref.mutual_knn(X, Y[p], k) for p in P[idx]]
    np.testing.assert_allclose(batched, direct, rtol=0, atol=1e-15)


HAND_GRAPHS = {
    "hub_vs_cycle": lambda rng: (hub_graph(8, 2, [0]), hub_graph(8, 2, [])),
    "two_hubs_vs_hub": lambda rng: (hub_graph(8, 3, [0, 5]), hub_graph(8, 3, [7])),
    "hub_vs_itself": lambda rng: (hub_graph(8, 3, [2]), hub_graph(8, 3, [2])),
    "all_mutual_vs_cycle": lambda rng: (pairing_graph(8)[:, None], hub_graph(8, 1, [])),
    "all_mutual_vs_itself": lambda rng: (pairing_graph(8)[:, None], pairing_graph(8)[:, None]),
    "random_vs_hub": lambda rng: (random_graph(rng, 8, 3), hub_graph(8, 3, [1, 4])),
    "random_vs_random_k5": lambda rng: (random_graph(rng, 8, 5), random_graph(rng, 8, 5)),
    "k_n_minus_2": lambda rng: (random_graph(rng, 7, 5), hub_graph(7, 5, [3])),
}


@pytest.mark.parametrize("case", list(HAND_GRAPHS))
def test_mknn_hand_made_graphs_exhaustive(rng, case):
    knn_a, knn_b = HAND_GRAPHS[case](rng)
    n, k = knn_a.shape
    vals = mknn_all(knn_a, knn_b, all_perms(n))
    mean, sd = nulls.mknn_null(knn_a, knn_b)
    assert mean == pytest.approx(k / (n - 1), rel=1e-15)
    assert sd > 0
    assert_matches_enumeration(vals, mean, sd)


def test_mknn_complete_graph_has_no_spread():
    # k = n−1: every pairing scores 1, so sd = 0 and there is no z-score.
    n = 5
    full = np.array([[j for j in range(n) if j != i] for i in range(n)])
    mean, sd = nulls.mknn_null(full, full)
    assert (mean, sd) == (1.0, 0.0)
    assert nulls.mknn_z(1.0, mean, sd) is None


def test_dropping_mutual_pair_term_is_detected(rng, monkeypatch):
    # Negative control kept in the suite: without the reversed-pair pattern
    # (i=m, j=l, weight M_A·M_B/(n)_2) the sd no longer matches enumeration.
    knn_a, knn_b = HAND_GRAPHS["hub_vs_itself"](rng)
    vals = mknn_all(knn_a, knn_b, all_perms(8))
    original = nulls._graph_counts

    def without_mutual(knn):
        c = dict(original(knn))
        c["reversed"] = 0
        return c

    monkeypatch.setattr(nulls, "_graph_counts", without_mutual)
    _, sd_bad = nulls.mknn_null(knn_a, knn_b)
    assert abs(sd_bad / vals.std() - 1) > 1e-3


def test_z_score():
    assert nulls.mknn_z(0.3, 0.1, 0.05) == pytest.approx(4.0)
    assert nulls.z_score(0.3, 0.1, 0.0) is None
    assert nulls.z_score(0.3, None, None) is None
    assert nulls.z_score(None, 0.1, 0.05) is None


@pytest.mark.parametrize("bad", ["self", "duplicate", "range", "shape", "k"])
def test_mknn_rejects_invalid_lists(bad):
    good = hub_graph(6, 2, [])
    a, b = good.copy(), good.copy()
    if bad == "self":
        a[2, 0] = 2
    elif bad == "duplicate":
        a[2, 1] = a[2, 0]
    elif bad == "range":
        a[0, 0] = 6
    elif bad == "shape":
        b = hub_graph(6, 3, [])
    else:
        a = b = np.zeros((6, 0), dtype=np.int64)
    with pytest.raises(ValueError):
        nulls.mknn_null(a, b)


# ---------------------------------------------------------------- CKA, exhaustive


def _cka_data(rng, n, d1, d2):
    # Anisotropic columns, an offset, and rows of very different norms, so the
    # diagonal of Kc (Σ a_i²) is far from uniform and every term matters.
    X = rng.standard_normal((n, d1)) * rng.uniform(0.2, 3.0, d1) + 2.0
    Y = rng.standard_t(3, (n, d2)) * rng.uniform(0.5, 4.0, (n, 1)) - 1.0
    return X, Y


CKA_SHAPES = [(8, 2, 3), (8, 12, 20), (8, 1, 1), (7, 3, 30), (7, 15, 2), (5, 2, 6), (4, 2, 3)]


@pytest.mark.parametrize(("n", "d1", "d2"), CKA_SHAPES)
def test_biased_cka_exhaustive(rng, n, d1, d2):
    X, Y = _cka_data(rng, n, d1, d2)
    vals = cka_all(X, Y, all_perms(n), unbiased=False)
    st = cka_mod.cross_stats(X, Y)
    mean, sd = nulls.biased_cka_null(st)
    assert mean == pytest.approx(cka_mod.permutation_mean(st), rel=1e-13)
    assert_matches_enumeration(vals, mean, sd)


@pytest.mark.parametrize(("n", "d1", "d2"), CKA_SHAPES)
def test_unbiased_cka_exhaustive(rng, n, d1, d2):
    X, Y = _cka_data(rng, n, d1, d2)
    vals = cka_all(X, Y, all_perms(n), unbiased=True)
    mean, sd = nulls.unbiased_cka_null(cka_mod.cross_stats(X, Y))
    assert mean == 0.0
    assert abs(vals.mean()) < 1e-13
    assert sd == pytest.approx(math.sqrt(2 / (n * (n - 3))), rel=1e-15)
    assert sd == pytest.approx(vals.std(), rel=REL)


def test_batched_cka_reference_equals_reference_py(rng):
    # Guards the batched reference against tests/reference.py on the permuted data itself.
    n = 7
    X, Y = _cka_data(rng, n, 3, 9)
    P = all_perms(n)[rng.choice(5040, size=20, replace=False)]
    for unbiased in (False, True):
        batched = cka_all(X, Y, P, unbiased)
        direct = [ref.cka(X, Y[p], unbiased=unbiased) for p in P]
        np.testing.assert_allclose(batched, direct, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("n", "d1", "d2"), [(12, 3, 5), (9, 20, 4)])
def test_unbiased_terms_are_u_centred_sums(rng, n, d1, d2):
    # The step the unbiased sd rests on: S_XX of cka.unbiased_terms equals
    # Σ_{i≠j} Â_ij² and S_XY equals Σ_{i≠j} Â_ij B̂_ij = n(n−3)·HSIC₁.
    X, Y = _cka_data(rng, n, d1, d2)
    A, B = u_centre(X @ X.T), u_centre(Y @ Y.T)
    np.testing.assert_allclose(A.sum(axis=1), 0, atol=1e-9 * np.abs(A).max())
    s_xy, s_xx, s_yy = cka_mod.unbiased_terms(cka_mod.cross_stats(X, Y))
    assert s_xx == pytest.approx((A * A).sum(), rel=1e-10)
    assert s_yy == pytest.approx((B * B).sum(), rel=1e-10)
    assert s_xy == pytest.approx((A * B).sum(), rel=1e-9, abs=1e-9 * math.sqrt(s_xx * s_yy))
    assert s_xy == pytest.approx(n * (n - 3) * ref.hsic_unbiased(X @ X.T, Y @ Y.T), rel=1e-9,
                                 abs=1e-9 * math.sqrt(s_xx * s_yy))


def test_cka_null_undefined_and_small_n(rng):
    X = rng.standard_normal((10, 3))
    st = cka_mod.cross_stats(np.ones((10, 3)), X)  # one side constant: CKA undefined
    assert nulls.biased_cka_null(st) == (None, None)
    assert nulls.unbiased_cka_null(st) == (None, None)
    small = cka_mod.cross_stats(X[:3], X[:3])
    with pytest.raises(ValueError):
        nulls.biased_cka_null(small)
    with pytest.raises(ValueError):
        nulls.unbiased_cka_null(small)


# ---------------------------------------------------------------- Monte Carlo at n = 200

B_MC = 3000
Z_MC = 4.5


def assert_mc_agrees(vals, mean, sd):
    """Closed-form moments vs B Monte Carlo draws, within Z_MC Monte Carlo standard errors.

    SE of the sample mean = sd/√B; SE of the sample variance ≈ √((μ₄ − σ⁴)/B)
    (delta method, μ₄ estimated from the draws). With B = 3000 the mean is
    pinned to ±4.5/√3000 ≈ ±0.08 sd and the variance to about ±12%
    (±6% on the sd) for a near-normal null (kurtosis ≈ 3). A false alarm
    needs a 4.5-SE deviation (p ≈ 7e-6 per check), and the seed fixes the
    draws anyway. The exhaustive tests above are the tight ones; these check
    the closed forms at a realistic n where enumeration is impossible.
    """
    m, v = vals.mean(), vals.var()
    m4 = ((vals - m) ** 4).mean()
    assert abs(m - mean) <= Z_MC * sd / math.sqrt(len(vals))
    assert abs(v - sd**2) <= Z_MC * math.sqrt((m4 - v * v) / len(vals))


def test_mknn_monte_carlo(rng):
    X, Y = make_pair(rng, n=200, d1=16, d2=24)
    k = 10
    knn_a, knn_b = ref.dense_knn(X, k), ref.dense_knn(Y, k)
    mean, sd = nulls.mknn_null(knn_a, knn_b)
    vals = np.empty(B_MC)
    for t in range(B_MC):
        p = rng.permutation(200)
        inv = np.argsort(p)
        # docs/formulas.md §6: the k-NN lists of Y[p] are inv[knn_b[p]], no new search.
        vals[t] = knn_mod.mutual_knn(knn_a, inv[knn_b[p]])
    assert vals[-1] == pytest.approx(ref.mutual_knn(X, Y[p], k), abs=1e-15)
    assert mean == k / 199
    assert_mc_agrees(vals, mean, sd)


@pytest.mark.parametrize("d2", [24, 300])
def test_cka_monte_carlo(rng, d2):
    X, Y = make_pair(rng, n=200, d1=16, d2=d2)
    Y[:20] *= 3.0  # uneven row norms (Σ b_i² far from uniform); at this n the diagonal term is still small
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Kc, Lc = Xc @ Xc.T, Yc @ Yc.T
    A, B = u_centre(X @ X.T), u_centre(Y @ Y.T)
    den_b = math.sqrt((Kc * Kc).sum() * (Lc * Lc).sum())
    den_u = math.sqrt((A * A).sum() * (B * B).sum())
    biased, unbiased = np.empty(B_MC), np.empty(B_MC)
    for t in range(B_MC):
        ix = np.ix_(*(2 * (rng.permutation(200),)))
        biased[t] = (Kc * Lc[ix]).sum() / den_b
        unbiased[t] = (A * B[ix]).sum() / den_u
    st = cka_mod.cross_stats(X, Y)
    assert_mc_agrees(biased, *nulls.biased_cka_null(st))
    assert_mc_agrees(unbiased, *nulls.unbiased_cka_null(st))
