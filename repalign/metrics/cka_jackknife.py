"""Leave-one-out and delete-two values of linear CKA from its sums, for the jackknife interval and its correction."""

from __future__ import annotations

from typing import Callable

import numpy as np

from repalign.linalg import dot, matmul
from repalign.metrics.cka import CrossStats, cross_stats


def _loo_terms(n: int, F: float, q: np.ndarray, u: np.ndarray, v: np.ndarray, Lu: np.ndarray,
               Kv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out (n(n−3)·HSIC₁ numerator, ‖C‖²_F) for every deleted row, vectorised.

    u, v: centred row norms of the two sides; q_i = Σ_j K_ij L_ij; Lu = L·u,
    Kv = K·v (K, L the centred linear kernels, never formed in feature space).
    Deleting row i: C ← C − n/(n−1)·x_i y_iᵀ, and every other centred row
    moves by x_i/(n−1), which changes the row norms; the sums below are
    those of the shifted rows, expanded so that only these vectors are needed.
    """
    m = n - 1
    c = n / m
    F_loo = F - 2 * c * q + c * c * u * v
    U, V, P = u.sum(), v.sum(), dot(u, v)
    uv = u * v
    s1 = Lu - uv  # Σ_{j≠i} u_j L_ij
    s2 = Kv - uv  # Σ_{j≠i} K_ij v_j
    s3 = q - uv   # Σ_{j≠i} K_ij L_ij
    cross = ((P - uv) + 2 / m * s1 + v / m**2 * (U - u) + 2 / m * s2 + 4 / m**2 * s3
             - 2 * uv / m**3 + u / m**2 * (V - v) - 2 * uv / m**3 + uv / m**3)
    su = U - u * c
    sv = V - v * c
    unb = F_loo - m / (m - 2) * cross + su * sv / ((m - 1) * (m - 2))
    return unb, F_loo


def jackknife(X: np.ndarray, Y: np.ndarray, st: CrossStats | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out values of biased and unbiased linear CKA for every row, O(n·d1·d2) in all.

    Returns
    -------
    (biased, unbiased) : two (n,) arrays; NaN where a leave-one-out value is
    undefined (a side without variance once the row is gone). Unbiased needs n ≥ 5.

    Notes
    -----
    docs/formulas.md §6: deleting row i changes XcᵀYc by a rank-one term and the
    row-norm sums by one term each, so no n×n matrix is needed.
    """
    if st is None or st.per_row is None:
        st = cross_stats(X, Y, per_row=True)
    n, r = st.n, st.rows()
    uxy, fxy = _loo_terms(n, st.sxy, r["qxy"], st.a, st.b, r["La"], r["Kb"])
    uxx, fxx = _loo_terms(n, st.sxx, r["qxx"], st.a, st.a, r["Ka"], r["Ka"])
    uyy, fyy = _loo_terms(n, st.syy, r["qyy"], st.b, st.b, r["Lb"], r["Lb"])
    with np.errstate(invalid="ignore", divide="ignore"):
        biased = np.where((fxx > 0) & (fyy > 0), fxy / np.sqrt(fxx * fyy), np.nan)
        unbiased = np.where((uxx > 0) & (uyy > 0), uxy / np.sqrt(np.abs(uxx * uyy)), np.nan)
    return biased, unbiased


# Rows whose pairs the delete-2 sum covers: all rows up to this many, else a random subset of this size
# (all pairs within it, ~10⁶). Rows per block of that work.
_PAIR_ROWS = 1448
_PAIR_BLOCK = 256


def _delete2_terms(n: int, F: float, S: tuple[float, float], P: float, ai: np.ndarray, aj: np.ndarray,
                   bi: np.ndarray, bj: np.ndarray, qi: np.ndarray, qj: np.ndarray, Mij: np.ndarray, Mji: np.ndarray,
                   Kij: np.ndarray, Lij: np.ndarray, La_i: np.ndarray, La_j: np.ndarray, Kb_i: np.ndarray,
                   Kb_j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m(m−3)·HSIC₁ numerator, ‖C‖²_F) of the data with rows i and j deleted, for arrays of pairs.

    Rows are centred over all n items. With D = {i, j} and m = n − 2 the centred
    cross-product of the rest is C − Σ_{p,q∈D} c_pq x_p y_qᵀ with c = I + 11ᵀ/m, so
    ‖·‖²_F = F − 2⟨c, M_D⟩ + ⟨c K_D c, L_D⟩, where M_pq = x_pᵀ C y_q, K_D and L_D the
    2×2 kernels of the deleted rows. The remaining rows move by (x_i + x_j)/m, which
    changes their squared norms; the unbiased correction sums are expanded in the
    same quantities. a, b: centred squared row norms; S = (Σa, Σb); P = a·b;
    La_p = Σ_r a_r (y_r·y_p) and Kb_p = Σ_r b_r (x_r·x_p), as in the jackknife.
    """
    m = n - 2
    c1, c0 = 1 + 1 / m, 1 / m
    # Biased part.
    k00, k01 = c1 * ai + c0 * Kij, c1 * Kij + c0 * aj
    k10, k11 = c0 * ai + c1 * Kij, c0 * Kij + c1 * aj
    ckc00 = k00 * c1 + k01 * c0
    ckc01 = k00 * c0 + k01 * c1
    ckc10 = k10 * c1 + k11 * c0
    ckc11 = k10 * c0 + k11 * c1
    Fb = F - 2 * (c1 * (qi + qj) + c0 * (Mij + Mji)) + ckc00 * bi + (ckc01 + ckc10) * Lij + ckc11 * bj
    # Unbiased part: norms of the re-centred rows u_r = a_r + 2α_r/m + ε/m² (α_r = x_r·δx, δx = x_i + x_j).
    eps = ai + aj + 2 * Kij
    eta = bi + bj + 2 * Lij
    al_i, al_j = ai + Kij, aj + Kij
    be_i, be_j = bi + Lij, bj + Lij
    A, B = S
    sa, sb = A - ai - aj, B - bi - bj
    s_ab = P - ai * bi - aj * bj
    s_abeta = La_i + La_j - ai * be_i - aj * be_j
    s_balpha = Kb_i + Kb_j - bi * al_i - bj * al_j
    s_alphabeta = qi + qj + Mij + Mji - al_i * be_i - al_j * be_j
    uv = (s_ab + 2 / m * (s_abeta + s_balpha) + 4 / m**2 * s_alphabeta + (eps * sb + eta * sa) / m**2
          - 3 * eps * eta / m**3)
    U = sa - eps / m
    V = sb - eta / m
    unb = Fb - m / (m - 2) * uv + U * V / ((m - 1) * (m - 2))
    return unb, Fb


# For the rows rows_i of R: (K, L, x_iᵀ·C_xy·y_j, y_iᵀ·C_xyᵀ·x_j, x_iᵀ·C_xx·x_j, y_iᵀ·C_yy·y_j), j over R.
_PairBlock = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def _pair_forms(X: np.ndarray, Y: np.ndarray, st: CrossStats, R: np.ndarray) -> _PairBlock:
    """Per-block provider of K, L and the x_pᵀ·C·y_q forms for rows R × R, from feature space or Grams."""
    r = st.rows()
    if "K" in r:  # Gram route: K, L are the centred n×n kernels
        K, L = r["K"], r["L"]
        KR, LR = K[:, R], L[:, R]

        def gram_block(rows_i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                     np.ndarray]:
            Ki, Li = K[R[rows_i]], L[R[rows_i]]
            return Ki[:, R], Li[:, R], matmul(Ki, LR), matmul(Li, KR), matmul(Ki, KR), matmul(Li, LR)

        return gram_block
    x = np.asarray(X[R], dtype=np.float64) - r["mx"]
    y = np.asarray(Y[R], dtype=np.float64) - r["my"]

    def block(rows_i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        xi, yi = x[rows_i], y[rows_i]
        return (matmul(xi, x.T), matmul(yi, y.T), matmul(matmul(xi, r["gxy"]), y.T),
                matmul(matmul(yi, r["gxy"].T), x.T), matmul(matmul(xi, r["gxx"]), x.T),
                matmul(matmul(yi, r["gyy"]), y.T))

    return block


def second_order(X: np.ndarray, Y: np.ndarray, st: CrossStats, values: tuple[float, float],
                 loo: tuple[np.ndarray, np.ndarray], seed: np.random.SeedSequence | int,
                 rows: int = _PAIR_ROWS) -> tuple[float, float, bool]:
    """Σ_{i<j} g_ij² for biased and unbiased linear CKA, g_ij = T − T₍ᵢ₎ − T₍ⱼ₎ + T₍ᵢⱼ₎.

    The jackknife variance overstates a statistic's variance by about its
    second-order (degenerate) part, which is all of it when the two sides are
    unrelated (Efron & Stein 1981). This sum of squared delete-2 interactions
    estimates that part, so jackknife variance − sum is the corrected variance.
    T₍ᵢⱼ₎ comes from :func:`_delete2_terms` in O(d) per pair after O(rows·d²)
    set-up. Every pair is used when n ≤ ``rows``; otherwise all pairs among
    ``rows`` rows drawn at random with ``seed`` (every pair equally likely), the
    mean scaled to all n(n−1)/2 pairs.

    Returns (biased sum, unbiased sum, exact); a sum is NaN when some delete-2
    value is undefined (a side without variance once two rows are gone).
    """
    n, r = st.n, st.rows()
    a, b = st.a, st.b
    exact = n <= rows
    R = np.arange(n) if exact else np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))
    s = R.size
    S_ab = (float(a.sum()), float(b.sum()))
    P_ab, P_aa, P_bb = dot(a, b), dot(a, a), dot(b, b)
    block = _pair_forms(X, Y, st, R)

    def pair(v: np.ndarray, rows_i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return v[R[rows_i]][:, None], v[R][None, :]

    sums = np.zeros(2)
    for start in range(0, s, _PAIR_BLOCK):
        rows_i = np.arange(start, min(start + _PAIR_BLOCK, s))
        K, L, Mxy, Myx, Mxx, Myy = block(rows_i)
        ai, aj = pair(a, rows_i)
        bi, bj = pair(b, rows_i)
        uxy, fxy = _delete2_terms(n, st.sxy, S_ab, P_ab, ai, aj, bi, bj, *pair(r["qxy"], rows_i), Mxy, Myx, K, L,
                                  *pair(r["La"], rows_i), *pair(r["Kb"], rows_i))
        # C_xx and C_yy are symmetric, so x_jᵀ·C·x_i = x_iᵀ·C·x_j.
        uxx, fxx = _delete2_terms(n, st.sxx, (S_ab[0],) * 2, P_aa, ai, aj, ai, aj, *pair(r["qxx"], rows_i), Mxx, Mxx,
                                  K, K, *pair(r["Ka"], rows_i), *pair(r["Ka"], rows_i))
        uyy, fyy = _delete2_terms(n, st.syy, (S_ab[1],) * 2, P_bb, bi, bj, bi, bj, *pair(r["qyy"], rows_i), Myy, Myy,
                                  L, L, *pair(r["Lb"], rows_i), *pair(r["Lb"], rows_i))
        upper = np.arange(s)[None, :] > rows_i[:, None]  # each unordered pair once, never i = j
        with np.errstate(invalid="ignore", divide="ignore"):
            for t, (value, jack), out in ((fxy / np.sqrt(fxx * fyy), (values[0], loo[0]), 0),
                                          (uxy / np.sqrt(uxx * uyy), (values[1], loo[1]), 1)):
                ji, jj = pair(jack, rows_i)
                g = value - ji - jj + t
                sums[out] += np.sum(g[upper] ** 2)
    return float(sums[0] * n * (n - 1) / (s * (s - 1))), float(sums[1] * n * (n - 1) / (s * (s - 1))), exact
