"""Bootstrap replicates of linear CKA (biased and unbiased) from resampling weights, with no n×n matrix."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from repalign.linalg import matmul

# Entries of one n×batch float64 matrix (128 MB); about five of them are alive at a time.
_BATCH_ENTRIES = 1 << 24
# Rows of the Gram matrices formed at a time in the n-space route: five row blocks of 512 × n float64
# (K, L and three Hadamard products) are 200 MB at n = 10,000, while the products stay at BLAS speed.
_GRAM_ROWS = 512


@dataclass
class WeightedForms:
    """Per resample (arrays of length B), the uncentred weighted sums both estimators are assembled from.

    With K = XcXcᵀ, L = YcYcᵀ (centred by the full-data means) and the count vectors w in the columns of
    ``W`` (n×B):
    ``qxy`` = wᵀ(K∘L)w, ``qxx`` = wᵀ(K∘K)w, ``qyy`` = wᵀ(L∘L)w; ``Kw``, ``Lw`` (n×B) the products
    K·w, L·w; ``a``, ``b`` (n) the diagonals of K and L.
    """

    W: np.ndarray
    qxy: np.ndarray
    qxx: np.ndarray
    qyy: np.ndarray
    Kw: np.ndarray
    Lw: np.ndarray
    a: np.ndarray
    b: np.ndarray


def default_batch(n: int) -> int:
    """Resamples per batch: up to 1024, fewer for large n so that the n×batch matrices stay near 128 MB."""
    return int(max(64, min(1024, _BATCH_ENTRIES // max(n, 1))))


def use_gram_route(n: int, d1: int, d2: int, batch: int) -> bool:
    """Whether the three quadratic forms are cheaper through row blocks of the n×n Grams.

    Feature route, per resample: ‖XcᵀDiag(w)Yc‖²_F and its two siblings, 2n(d1·d2 + d1² + d2²) flops.
    Gram route: the three forms wᵀ(K∘L)w etc. as (K∘L)·W over the blocks on and above the diagonal, 3n²
    flops per resample, plus forming those blocks of the Grams once per batch, n²(d1 + d2). (K·w and L·w
    go through the features either way: 4n(d1 + d2).) At n = 1,024, d1 = d2 = 768 the Gram route costs
    3.1e6 flops per resample against 3.6e9; at n = 10,000, 3e8 against 3.5e10.
    """
    feature = 2.0 * n * batch * (d1 * d2 + d1 * d1 + d2 * d2)
    gram = 3.0 * n * n * batch + 1.0 * n * n * (d1 + d2)
    return gram < feature


def _forms_gram(Xc: np.ndarray, Yc: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """wᵀ(K∘L)w, wᵀ(K∘K)w, wᵀ(L∘L)w for every column w of W (n×B), from blocks of K and L on and above the diagonal.

    The three matrices are symmetric, so wᵀMw = Σ_I w_IᵀM_II w_I + 2 Σ_{I<J} w_IᵀM_IJ w_J: half the flops of
    the full products.
    """
    n = Xc.shape[0]
    out = np.zeros((3, W.shape[1]))
    for s in range(0, n, _GRAM_ROWS):
        rows = slice(s, min(s + _GRAM_ROWS, n))
        cols = slice(s, n)
        K = matmul(Xc[rows], Xc[cols].T)
        L = matmul(Yc[rows], Yc[cols].T)
        # Off-diagonal blocks count twice; the diagonal block (the first columns) once.
        twice = np.full((1, n - s), 2.0)
        twice[0, : rows.stop - s] = 1.0
        for j, M in enumerate((K * L, K * K, L * L)):
            M *= twice
            out[j] += _wsum(W[rows], matmul(M, W[cols]))
    return out[0], out[1], out[2]


def _forms_feature(Xc: np.ndarray, Yc: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same forms as ‖XcᵀDiag(w)Yc‖²_F etc., one resample at a time (cheap when d is small next to n)."""
    out = np.empty((3, W.shape[1]))
    for b in range(W.shape[1]):
        wX = Xc * W[:, b : b + 1]
        gxy, gxx, gyy = matmul(wX.T, Yc), matmul(wX.T, Xc), matmul((Yc * W[:, b : b + 1]).T, Yc)
        out[:, b] = [np.einsum("ij,ij->", g, g) for g in (gxy, gxx, gyy)]
    return out[0], out[1], out[2]


def weighted_forms(Xc: np.ndarray, Yc: np.ndarray, W: np.ndarray, gram: bool | None = None) -> WeightedForms:
    """The :class:`WeightedForms` of centred Xc (n×d1), Yc (n×d2) for the count vectors in the columns of W (n×B).

    ``gram``: the route (n-space Gram blocks or feature space); None chooses by :func:`use_gram_route`.
    Both give the same numbers up to rounding.
    """
    n, d1 = Xc.shape
    d2 = Yc.shape[1]
    W = np.asarray(W, dtype=np.float64)
    if gram is None:
        gram = use_gram_route(n, d1, d2, W.shape[1])
    route = _forms_gram if gram else _forms_feature
    qxy, qxx, qyy = route(Xc, Yc, W)
    # K·W = Xc(XcᵀW): 4n·d·B flops, far below the n²·B of the Gram.
    Kw = matmul(Xc, matmul(Xc.T, W))
    Lw = matmul(Yc, matmul(Yc.T, W))
    a = np.einsum("ij,ij->i", Xc, Xc)
    b = np.einsum("ij,ij->i", Yc, Yc)
    return WeightedForms(W, qxy, qxx, qyy, Kw, Lw, a, b)


def biased_terms(f: WeightedForms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S_XY, S_XX, S_YY) of biased CKA for every resample (arrays of length B); their ratio is the replicate.

    Notes
    -----
    With p = w/n, HSIC(p) = pᵀ(K∘L)p − 2 Σ_i p_i (Kp)_i (Lp)_i + (pᵀKp)(pᵀLp) = ‖C_w‖²_F, the squared
    Frobenius norm of the weighted centred cross-product C_w = Σ_i p_i (x_i − μ_x)(y_i − μ_y)ᵀ with
    μ_x = Σ_i p_i x_i (docs/formulas.md §6): the biased HSIC of the resample with its rows repeated w_i
    times, up to the factor n²/(n−1)², which cancels in the ratio (Efron & Tibshirani 1993, ch. 6: the
    bootstrap replicate as the plug-in statistic of the resampled distribution).
    """
    n = float(f.W[:, 0].sum())
    P = f.W / n
    Kp, Lp = f.Kw / n, f.Lw / n
    pKp, pLp = _wsum(P, Kp), _wsum(P, Lp)

    def hsic(q: np.ndarray, U: np.ndarray, V: np.ndarray, pu: np.ndarray, pv: np.ndarray) -> np.ndarray:
        return q / n**2 - 2.0 * np.einsum("ib,ib,ib->b", P, U, V) + pu * pv

    return hsic(f.qxy, Kp, Lp, pKp, pLp), hsic(f.qxx, Kp, Kp, pKp, pKp), hsic(f.qyy, Lp, Lp, pLp, pLp)


def unbiased_terms(f: WeightedForms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S_XY, S_XX, S_YY) of unbiased CKA of each materialised resample (rows repeated by their counts).

    Notes
    -----
    Song et al. 2012, eq. 5, on the resample of m = Σ w_i rows in which item i appears w_i times. Its Gram
    K̃ has a zero diagonal only where a copy meets itself: two copies of item i are distinct rows, and
    their entry K_ii stays. In terms of the items, with a_i = K_ii,

    tr(K̃L̃) = wᵀ(K∘L)w − Σ_i w_i a_i b_i,   1ᵀK̃1 = wᵀKw − Σ_i w_i a_i,
    1ᵀK̃L̃1 = Σ_i w_i ((Kw)_i − a_i)((Lw)_i − b_i),

    and S = tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((m−1)(m−2)) − 2·1ᵀK̃L̃1/(m−2) is m(m−3)·HSIC₁ of the resample.
    The pairs of copies are perfectly aligned pseudo-pairs, so the replicates sit above the estimate
    (docs/formulas.md §6.5): this plug-in is what the resample computes, not an unbiased estimate of
    anything (Efron & Tibshirani 1993, ch. 10, on the bootstrap estimate of bias).
    """
    m = float(f.W[:, 0].sum())

    def s(q: np.ndarray, U: np.ndarray, V: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        tr = q - _wsum(f.W, (u * v)[:, None])
        su = _wsum(f.W, U) - _wsum(f.W, u[:, None])
        sv = _wsum(f.W, V) - _wsum(f.W, v[:, None])
        cross = np.einsum("ib,ib,ib->b", f.W, U - u[:, None], V - v[:, None])
        return tr + su * sv / ((m - 1) * (m - 2)) - 2.0 * cross / (m - 2)

    return (s(f.qxy, f.Kw, f.Lw, f.a, f.b), s(f.qxx, f.Kw, f.Kw, f.a, f.a), s(f.qyy, f.Lw, f.Lw, f.b, f.b))


def _wsum(W: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Σ_i W_ib·U_ib per column (U may be n×1), in numpy's own loop (thread-order stable)."""
    return np.einsum("ib,ib->b", W, np.broadcast_to(U, W.shape))


def constant_side(f: WeightedForms) -> np.ndarray:
    """Per resample, whether a side's rows are all identical in it (CKA undefined there).

    The weighted total variance Σ_i p_i‖x_i − μ_w‖² = Σ_i p_i a_i − pᵀKp; rounding alone leaves a residue
    of a few ulps of Σ_i p_i a_i, so below that much the side counts as constant.
    """
    n = float(f.W[:, 0].sum())
    out = np.zeros(f.W.shape[1], dtype=bool)
    for U, u in ((f.Kw, f.a), (f.Lw, f.b)):
        total = _wsum(f.W, u[:, None]) / n
        out |= total - _wsum(f.W, U) / n**2 <= 64 * np.finfo(np.float64).eps * total
    return out


def ratios(terms: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """S_XY/√(S_XX·S_YY) per resample; NaN where a side has no (estimated) variance in the resample."""
    sxy, sxx, syy = terms
    ok = (sxx > 0) & (syy > 0)
    out = np.full(sxy.shape, np.nan)
    out[ok] = sxy[ok] / np.sqrt(sxx[ok] * syy[ok])
    return out


def bootstrap(X: np.ndarray, Y: np.ndarray, weight_blocks: Iterable[np.ndarray],
              batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap replicates of (biased, unbiased) linear CKA, one per count vector.

    Parameters
    ----------
    X, Y : (n, d1), (n, d2) arrays paired by row (assumed already checked).
    weight_blocks : blocks (m, n) of count vectors w ~ Multinomial(n, 1/n), from
        :func:`repalign.stats.resample_weights`.
    batch : resamples evaluated together (their weights are one n×batch float64 matrix); default
        :func:`default_batch`.

    Returns
    -------
    Two arrays of length B: the CKA of each resample with its rows repeated w_i times, biased and unbiased
    (NaN where a side is constant in the resample).

    Notes
    -----
    Efron & Tibshirani 1993, ch. 6: a resample is a count vector w, and the replicate is the statistic of
    the data with row i taken w_i times. No row is copied and no n×n matrix is formed: see
    :func:`biased_terms`, :func:`unbiased_terms` and :func:`use_gram_route` (docs/formulas.md §6.5).
    Translation invariance lets the data be centred once by the full-data means.
    """
    n, d1 = X.shape
    batch = default_batch(n) if batch is None else batch
    # One route for every batch (chosen for a full one), so a replicate does not depend on where it falls.
    gram = use_gram_route(n, d1, Y.shape[1], batch)
    Xc = np.asarray(X, dtype=np.float64) - np.asarray(X, dtype=np.float64).mean(axis=0)
    Yc = np.asarray(Y, dtype=np.float64) - np.asarray(Y, dtype=np.float64).mean(axis=0)
    biased: list[np.ndarray] = []
    unbiased: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        f = weighted_forms(Xc, Yc, np.concatenate(pending).T, gram)
        constant = constant_side(f)
        biased.append(np.where(constant, np.nan, ratios(biased_terms(f))))
        # Unbiased HSIC needs 4 rows (its terms divide by m − 2 and m − 3).
        unbiased.append(np.where(constant, np.nan, ratios(unbiased_terms(f))) if n >= 4
                        else np.full(constant.shape, np.nan))
        pending.clear()

    count = 0
    for block in weight_blocks:
        pending.append(block)
        count += block.shape[0]
        if count >= batch:
            flush()
            count = 0
    if pending:
        flush()
    if not biased:
        return np.empty(0), np.empty(0)
    return np.concatenate(biased), np.concatenate(unbiased)
