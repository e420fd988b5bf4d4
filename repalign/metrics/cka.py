"""Linear CKA, biased (Kornblith et al. 2019) and unbiased (Song et al. 2012 HSIC), in feature space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from repalign.metrics.linalg import dot, matmul, matvec, vecmat

# Rows per pass: a block of both inputs in float64 stays small while the
# matrix products remain large enough to run at BLAS speed.
_BLOCK_ROWS = 8192


@dataclass
class CrossStats:
    """Sums that both linear CKA estimators are built from; O(d1·d2) memory.

    ``sxy`` = ‖XcᵀYc‖²_F, ``sxx`` = ‖XcᵀXc‖²_F, ``syy`` = ‖YcᵀYc‖²_F, and
    ``a``, ``b`` the squared row norms of the column-centred inputs.
    """

    n: int
    sxy: float
    sxx: float
    syy: float
    a: np.ndarray
    b: np.ndarray
    per_row: dict | None = None
    """Row-wise quantities for the jackknife (see :func:`jackknife`), filled on request."""


def _means(X: np.ndarray) -> np.ndarray:
    total = np.zeros(X.shape[1])
    for s in range(0, X.shape[0], _BLOCK_ROWS):
        total += np.asarray(X[s : s + _BLOCK_ROWS], dtype=np.float64).sum(axis=0)
    return total / X.shape[0]


def _residue(n: int, means: np.ndarray) -> float:
    """Largest Σ‖xc_i‖² that rounding alone can leave after subtracting these column means."""
    return n * float(np.sum((64 * np.finfo(np.float64).eps * np.abs(means)) ** 2))


def cross_stats(X: np.ndarray, Y: np.ndarray, per_row: bool = False) -> CrossStats:
    """Accumulate the CKA sums of column-centred X (n×d1) and Y (n×d2) in float64.

    Centring first is allowed (both estimators are translation invariant) and
    avoids cancellation; float64 because the unbiased terms nearly cancel.
    When both d1 and d2 exceed n, the n×n Grams are smaller than the d×d
    cross-products and ‖XcᵀYc‖_F = ⟨XcXcᵀ, YcYcᵀ⟩^½ is used instead.
    """
    n, d1 = X.shape
    d2 = Y.shape[1]
    mx, my = _means(X), _means(Y)
    if d1 > n and d2 > n:
        Xc = np.asarray(X, dtype=np.float64) - mx
        Yc = np.asarray(Y, dtype=np.float64) - my
        if float(np.einsum("ij,ij->", Xc, Xc)) <= _residue(n, mx):
            Xc[:] = 0.0
        if float(np.einsum("ij,ij->", Yc, Yc)) <= _residue(n, my):
            Yc[:] = 0.0
        K = matmul(Xc, Xc.T)
        L = matmul(Yc, Yc.T)
        a, b = np.diag(K).copy(), np.diag(L).copy()
        rows = None
        if per_row:
            rows = {"qxy": np.einsum("ij,ij->i", K, L), "qxx": np.einsum("ij,ij->i", K, K),
                    "qyy": np.einsum("ij,ij->i", L, L), "Ka": matvec(K, a), "Kb": matvec(K, b),
                    "La": matvec(L, a), "Lb": matvec(L, b),
                    "K": K, "L": L}
        return CrossStats(n, dot(K, L), dot(K, K), dot(L, L), a, b, rows)
    # One pass over both inputs. Each sum takes the same block products in the same order as
    # layer_stats() and cross_product(), which a layer sweep uses, so both give identical numbers.
    gxx, gyy, gxy = np.zeros((d1, d1)), np.zeros((d2, d2)), np.zeros((d1, d2))
    a, b = np.empty(n), np.empty(n)
    for s in range(0, n, _BLOCK_ROWS):
        xc = np.asarray(X[s : s + _BLOCK_ROWS], dtype=np.float64) - mx
        yc = np.asarray(Y[s : s + _BLOCK_ROWS], dtype=np.float64) - my
        gxx += matmul(xc.T, xc)
        gyy += matmul(yc.T, yc)
        gxy += matmul(xc.T, yc)
        a[s : s + xc.shape[0]] = np.einsum("ij,ij->i", xc, xc)
        b[s : s + yc.shape[0]] = np.einsum("ij,ij->i", yc, yc)
    # Centring identical rows leaves rounding residue, not variance: below this much, a side is constant.
    for g, norms, mean in ((gxx, a, mx), (gyy, b, my)):
        if norms.sum() <= _residue(n, mean):
            norms[:] = 0.0
            g[:] = 0.0
            gxy[:] = 0.0
    st = CrossStats(n, dot(gxy, gxy), dot(gxx, gxx), dot(gyy, gyy), a, b)
    if per_row:
        st.per_row = _per_row_feature(X, Y, mx, my, gxx, gyy, gxy, a, b)
        st.per_row.update(gxy=gxy, gxx=gxx, gyy=gyy, mx=mx, my=my)
    return st


@dataclass
class LayerStats:
    """What linear CKA needs from one input alone: computed once per layer in a sweep."""

    mean: np.ndarray
    """Column means (float64)."""
    a: np.ndarray
    """Squared norms of the centred rows."""
    sxx: float
    """‖XcᵀXc‖²_F (or ⟨K, K⟩ via the Gram)."""
    constant: bool
    """All rows identical: CKA is undefined."""
    gram: np.ndarray | None = None
    """XcᵀXc (d×d), kept only when asked for (the jackknife needs it)."""


def layer_stats(X: np.ndarray, mean: np.ndarray | None = None, keep_gram: bool = True,
                with_sxx: bool = True) -> LayerStats:
    """Column means, centred row norms and ‖XcᵀXc‖²_F of one input, blocked, in float64.

    ``with_sxx`` False skips the d×d product (O(n·d²)) and leaves ``sxx`` NaN, for a caller that gets
    ‖XcᵀXc‖²_F = ⟨Kc, Kc⟩ from its own Grams.
    """
    n, d = X.shape
    mx = _means(X) if mean is None else mean
    gxx = np.zeros((d, d)) if with_sxx else None
    a = np.empty(n)
    for s in range(0, n, _BLOCK_ROWS):
        xc = np.asarray(X[s : s + _BLOCK_ROWS], dtype=np.float64) - mx
        if with_sxx:
            gxx += matmul(xc.T, xc)
        a[s : s + xc.shape[0]] = np.einsum("ij,ij->i", xc, xc)
    # Centring identical rows leaves rounding residue, not variance: below this much, a side is constant.
    constant = bool(a.sum() <= _residue(n, mx))
    if constant:
        a[:] = 0.0
        if with_sxx:
            gxx[:] = 0.0
    sxx = dot(gxx, gxx) if with_sxx else float("nan")
    return LayerStats(mx, a, sxx, constant, gxx if keep_gram and with_sxx else None)


def centred(X: np.ndarray, mx: np.ndarray) -> np.ndarray:
    """X − mx in float64 (n×d), for a layer that :func:`cross_product` meets many times in a sweep."""
    return np.asarray(X, dtype=np.float64) - mx


def cross_product(X: np.ndarray, mx: np.ndarray | None, Y: np.ndarray, my: np.ndarray) -> np.ndarray:
    """XcᵀYc (d1×d2) in float64, block by block; ‖·‖²_F of it is the CKA numerator.

    ``mx`` None: X is already :func:`centred` (the same numbers, computed once).
    """
    gxy = np.zeros((X.shape[1], Y.shape[1]))
    for s in range(0, X.shape[0], _BLOCK_ROWS):
        xc = X[s : s + _BLOCK_ROWS] if mx is None else np.asarray(X[s : s + _BLOCK_ROWS], dtype=np.float64) - mx
        yc = np.asarray(Y[s : s + _BLOCK_ROWS], dtype=np.float64) - my
        gxy += matmul(xc.T, yc)
    return gxy


def _per_row_feature(X, Y, mx, my, gxx, gyy, gxy, a, b) -> dict:
    """xc_iᵀ·C·yc_i style quadratic forms and kernel-times-norms vectors, one pass, O(n·d1·d2)."""
    n = X.shape[0]
    out = {key: np.empty(n) for key in ("qxy", "qxx", "qyy", "Ka", "Kb", "La", "Lb")}
    xa = np.zeros(X.shape[1])
    xb = np.zeros(X.shape[1])
    ya = np.zeros(Y.shape[1])
    yb = np.zeros(Y.shape[1])
    for s in range(0, n, _BLOCK_ROWS):
        xc = np.asarray(X[s : s + _BLOCK_ROWS], dtype=np.float64) - mx
        yc = np.asarray(Y[s : s + _BLOCK_ROWS], dtype=np.float64) - my
        sl = slice(s, s + xc.shape[0])
        xa += vecmat(a[sl], xc)
        xb += vecmat(b[sl], xc)
        ya += vecmat(a[sl], yc)
        yb += vecmat(b[sl], yc)
    for s in range(0, n, _BLOCK_ROWS):
        xc = np.asarray(X[s : s + _BLOCK_ROWS], dtype=np.float64) - mx
        yc = np.asarray(Y[s : s + _BLOCK_ROWS], dtype=np.float64) - my
        sl = slice(s, s + xc.shape[0])
        out["qxy"][sl] = np.einsum("ij,ij->i", matmul(xc, gxy), yc)
        out["qxx"][sl] = np.einsum("ij,ij->i", matmul(xc, gxx), xc)
        out["qyy"][sl] = np.einsum("ij,ij->i", matmul(yc, gyy), yc)
        out["Ka"][sl], out["Kb"][sl] = matvec(xc, xa), matvec(xc, xb)
        out["La"][sl], out["Lb"][sl] = matvec(yc, ya), matvec(yc, yb)
    return out


def _loo_terms(n, F, q, u, v, Lu, Kv):
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
    n, r = st.n, st.per_row
    uxy, fxy = _loo_terms(n, st.sxy, r["qxy"], st.a, st.b, r["La"], r["Kb"])
    uxx, fxx = _loo_terms(n, st.sxx, r["qxx"], st.a, st.a, r["Ka"], r["Ka"])
    uyy, fyy = _loo_terms(n, st.syy, r["qyy"], st.b, st.b, r["Lb"], r["Lb"])
    with np.errstate(invalid="ignore", divide="ignore"):
        biased = np.where((fxx > 0) & (fyy > 0), fxy / np.sqrt(fxx * fyy), np.nan)
        unbiased = np.where((uxx > 0) & (uyy > 0), uxy / np.sqrt(np.abs(uxx * uyy)), np.nan)
    return biased, unbiased


def _unbiased(s: float, u: np.ndarray, v: np.ndarray, n: int) -> float:
    """n(n−3)·HSIC₁ for linear kernels, from ‖XcᵀYc‖²_F and the centred row norms."""
    return s - n / (n - 2) * dot(u, v) + float(u.sum()) * float(v.sum()) / ((n - 1) * (n - 2))


def biased_terms(st: CrossStats) -> tuple[float, float, float]:
    """(S_XY, S_XX, S_YY) whose ratio S_XY/√(S_XX·S_YY) is biased linear CKA."""
    return st.sxy, st.sxx, st.syy


def unbiased_terms(st: CrossStats) -> tuple[float, float, float]:
    """(S_XY, S_XX, S_YY) for unbiased linear CKA (Song et al. 2012, eq. 5)."""
    n = st.n
    return (_unbiased(st.sxy, st.a, st.b, n), _unbiased(st.sxx, st.a, st.a, n), _unbiased(st.syy, st.b, st.b, n))


def ratio(terms: tuple[float, float, float]) -> float | None:
    """S_XY/√(S_XX·S_YY), or None when a side has no (estimated) variance."""
    sxy, sxx, syy = terms
    if not (sxx > 0 and syy > 0):
        return None
    return float(sxy / np.sqrt(sxx * syy))


def linear_cka(X: np.ndarray, Y: np.ndarray, unbiased: bool = False) -> float | None:
    """Linear CKA between X (n×d1) and Y (n×d2), paired by row.

    Parameters
    ----------
    X, Y : float arrays with the same number of rows (assumed already checked).
    unbiased : use the unbiased HSIC estimator (needs n ≥ 4).

    Returns
    -------
    CKA in [0, 1] (biased) or [−1, 1] (unbiased); None if a side has zero
    variance (estimated variance ≤ 0 for the unbiased form).

    Notes
    -----
    Biased: Kornblith et al. 2019 (equal to Escoufier's RV coefficient),
    ‖XcᵀYc‖²_F / (‖XcᵀXc‖_F ‖YcᵀYc‖_F). Unbiased: HSIC₁ of Song et al. 2012
    written in feature space (docs/formulas.md §3); it never forms an n×n kernel.
    """
    st = cross_stats(X, Y)
    return ratio(unbiased_terms(st) if unbiased else biased_terms(st))


def permutation_mean(st: CrossStats) -> float | None:
    """Exact mean of biased linear CKA (the RV coefficient) over random pairings of the rows.

    E = √(β_X·β_Y)/(n−1), with β = (tr Kc)²/tr(Kc²) the participation ratio
    of the centred spectrum (Josse, Pagès & Husson 2008); tr Kc = Σ a_i and
    tr(Kc²) = ‖XcᵀXc‖²_F, so no n×n kernel is needed. Large when d is
    comparable to n: biased CKA is biased upwards there.
    """
    if not (st.sxx > 0 and st.syy > 0):
        return None
    beta_x = float(st.a.sum()) ** 2 / st.sxx
    beta_y = float(st.b.sum()) ** 2 / st.syy
    return float(np.sqrt(beta_x * beta_y) / (st.n - 1))


# Rows whose pairs the delete-2 sum covers: all rows up to this many, else a random subset of this size
# (all pairs within it, ~10⁶). Rows per block of that work.
_PAIR_ROWS = 1448
_PAIR_BLOCK = 256


def _delete2_terms(n, F, S, P, ai, aj, bi, bj, qi, qj, Mij, Mji, Kij, Lij, La_i, La_j, Kb_i, Kb_j):
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


def _pair_forms(X, Y, st: CrossStats, R: np.ndarray):
    """Per-block provider of K, L and the x_pᵀ·C·y_q forms for rows R × R, from feature space or Grams."""
    r = st.per_row
    if "K" in r:  # Gram route: K, L are the centred n×n kernels
        K, L = r["K"], r["L"]
        KR, LR = K[:, R], L[:, R]

        def block(rows_i):
            Ki, Li = K[R[rows_i]], L[R[rows_i]]
            return Ki[:, R], Li[:, R], matmul(Ki, LR), matmul(Li, KR), matmul(Ki, KR), matmul(Li, LR)

        return block
    x = np.asarray(X[R], dtype=np.float64) - r["mx"]
    y = np.asarray(Y[R], dtype=np.float64) - r["my"]

    def block(rows_i):
        xi, yi = x[rows_i], y[rows_i]
        return (matmul(xi, x.T), matmul(yi, y.T), matmul(matmul(xi, r["gxy"]), y.T),
                matmul(matmul(yi, r["gxy"].T), x.T), matmul(matmul(xi, r["gxx"]), x.T),
                matmul(matmul(yi, r["gyy"]), y.T))

    return block


def second_order(X: np.ndarray, Y: np.ndarray, st: CrossStats, values: tuple[float, float],
                 loo: tuple[np.ndarray, np.ndarray], seed, rows: int = _PAIR_ROWS) -> tuple[float, float, bool]:
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
    n, r = st.n, st.per_row
    a, b = st.a, st.b
    exact = n <= rows
    R = np.arange(n) if exact else np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))
    s = R.size
    S_ab = (float(a.sum()), float(b.sum()))
    P_ab, P_aa, P_bb = dot(a, b), dot(a, a), dot(b, b)
    block = _pair_forms(X, Y, st, R)

    def pair(v, rows_i):
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
