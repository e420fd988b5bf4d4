"""Linear CKA, biased (Kornblith et al. 2019) and unbiased (Song et al. 2012 HSIC), in feature space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from repalign.linalg import dot, matmul, matvec, vecmat

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
    per_row: dict[str, np.ndarray] | None = None
    """Row-wise quantities for the jackknife (:mod:`repalign.metrics.cka_jackknife`), filled on request."""

    def rows(self) -> dict[str, np.ndarray]:
        """:attr:`per_row`, which the caller must have asked :func:`cross_stats` for."""
        if self.per_row is None:
            raise ValueError("these CKA sums were computed without per_row=True")
        return self.per_row

    def unbiased_terms(self) -> tuple[float, float, float]:
        """:func:`unbiased_terms` of these sums (what repalign.stats.nulls.CkaSums asks for)."""
        return unbiased_terms(self)


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
        if gxx is not None:
            gxx += matmul(xc.T, xc)
        a[s : s + xc.shape[0]] = np.einsum("ij,ij->i", xc, xc)
    # Centring identical rows leaves rounding residue, not variance: below this much, a side is constant.
    constant = bool(a.sum() <= _residue(n, mx))
    if constant:
        a[:] = 0.0
        if gxx is not None:
            gxx[:] = 0.0
    sxx = float("nan") if gxx is None else dot(gxx, gxx)
    return LayerStats(mx, a, sxx, constant, gxx if keep_gram else None)


def centred(X: np.ndarray, mx: np.ndarray) -> np.ndarray:
    """X − mx in float64 (n×d), for a layer that :func:`cross_product` meets many times in a sweep.

    An input read in row blocks (not an ndarray) stays unread: its blocks are centred as they are read, the
    same numbers :func:`cross_product` would compute from X and mx.
    """
    if not isinstance(X, np.ndarray):
        return cast(np.ndarray, _CentredRows(X, mx))
    return np.asarray(X, dtype=np.float64) - mx


class _CentredRows:
    """Row blocks of X − mx in float64, for a streamed layer (see :func:`centred`)."""

    def __init__(self, X: Any, mx: np.ndarray):
        self.X, self.mx = X, mx
        self.shape = X.shape

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.asarray(self.X[rows], dtype=np.float64) - self.mx


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


def _per_row_feature(X: np.ndarray, Y: np.ndarray, mx: np.ndarray, my: np.ndarray, gxx: np.ndarray, gyy: np.ndarray,
                     gxy: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
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
