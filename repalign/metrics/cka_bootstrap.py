"""Bootstrap replicates of linear CKA (biased and unbiased) from resampling weights, with no n×n matrix.

Two departures from the textbook plug-in (the statistic of the resample with rows repeated), both measured
in benchmarks/coverage_results.md and derived in docs/formulas.md §6.5:

1. **Tie-free.** Two copies of one item are a perfectly aligned pseudo-pair; counting them put the plug-in
   replicates 29–340 true SDs above the estimate. A replicate here counts item pairs (i, j), i ≠ j, with
   weight w_i·w_j and an item with itself with weight w_i: the pairs of copies are dropped.
2. **Degenerate-corrected.** Without shared signal CKA is a degenerate statistic, and a bootstrap of it
   triples the variance (√3 in SD): the linear part of each replicate carries twice the degenerate variance
   on top of its own (Arcones & Giné 1992). Each replicate is split exactly into its linear part in w − 1
   and the rest, and the linear part is shrunk by the factor that removes twice the rest's variance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from repalign.linalg import matmul, matvec, vecmat

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
    """(S_XY, S_XX, S_YY) of tie-free biased CKA for every resample (arrays of length B); their ratio is the replicate.

    Notes
    -----
    S_XY = Σ_{i≠j} w_i w_j K_ij L_ij + Σ_i w_i K_ii L_ii = wᵀ(K∘L)w − Σ_i (w_i² − w_i) a_i b_i, with K and L
    centred once by the full-data means (the sample's own centred kernel, as Arcones & Giné 1992 bootstrap
    V-statistics). At w = 1 it is n²·HSIC₀ of the data, so the replicate at w = 1 is the estimate. Dropping
    the pairs of copies of one item (weight w_i² − w_i) is what keeps the replicates centred on the estimate
    (docs/formulas.md §6.5).
    """
    extra = f.W * f.W - f.W
    return (f.qxy - _wsum(extra, (f.a * f.b)[:, None]), f.qxx - _wsum(extra, (f.a * f.a)[:, None]),
            f.qyy - _wsum(extra, (f.b * f.b)[:, None]))


def unbiased_terms(f: WeightedForms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S_XY, S_XX, S_YY) of tie-free unbiased CKA for every resample.

    Notes
    -----
    Song et al. 2012, eq. 5, on the resample of m = Σ w_i rows in which item i appears w_i times, with the
    Gram entries between two copies of one item set to zero like the diagonal (tie-free, as
    :func:`biased_terms`). In terms of the items, with a_i = K_ii,

    tr(K̃L̃) = wᵀ(K∘L)w − Σ_i w_i² a_i b_i,   1ᵀK̃1 = wᵀKw − Σ_i w_i² a_i,
    1ᵀK̃L̃1 = Σ_i w_i ((Kw)_i − w_i a_i)((Lw)_i − w_i b_i),

    and S = tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((m−1)(m−2)) − 2·1ᵀK̃L̃1/(m−2). At w = 1 this is m(m−3)·HSIC₁ of the data.
    """
    m = float(f.W[:, 0].sum())
    W2 = f.W * f.W

    def s(q: np.ndarray, U: np.ndarray, V: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        tr = q - _wsum(W2, (u * v)[:, None])
        su = _wsum(f.W, U) - _wsum(W2, u[:, None])
        sv = _wsum(f.W, V) - _wsum(W2, v[:, None])
        cross = np.einsum("ib,ib,ib->b", f.W, U - f.W * u[:, None], V - f.W * v[:, None])
        return tr + su * sv / ((m - 1) * (m - 2)) - 2.0 * cross / (m - 2)

    return (s(f.qxy, f.Kw, f.Lw, f.a, f.b), s(f.qxx, f.Kw, f.Kw, f.a, f.a), s(f.qyy, f.Lw, f.Lw, f.b, f.b))


@dataclass(frozen=True)
class LinearPart:
    """The replicate of one estimator to first order in w − 1: value + Σ_i (w_i − 1)·grad_i (grad has length n)."""

    value: float
    grad: np.ndarray

    def of(self, W: np.ndarray) -> np.ndarray:
        """Σ_i (w_i − 1)·grad_i for every column of W (n×B)."""
        return matmul(self.grad[None, :], W)[0] - float(self.grad.sum())


def _row_forms(A: np.ndarray, C: np.ndarray, B: np.ndarray) -> np.ndarray:
    """a_iᵀ C b_i for every row, in row blocks (no n×d copy of the whole layer)."""
    out = np.empty(A.shape[0])
    for s in range(0, A.shape[0], _GRAM_ROWS * 16):
        rows = slice(s, s + _GRAM_ROWS * 16)
        out[rows] = np.einsum("ij,ij->i", matmul(A[rows], C), B[rows])
    return out


def _ratio_part(terms: list[tuple[float, np.ndarray]]) -> LinearPart:
    """Value and gradient of S_XY/√(S_XX·S_YY) from the (value, gradient) of its three terms."""
    (sxy, gxy), (sxx, gxx), (syy, gyy) = terms
    if not (sxx > 0 and syy > 0):
        return LinearPart(float("nan"), np.full(gxy.shape, np.nan))
    r = sxy / np.sqrt(sxx * syy)
    return LinearPart(float(r), gxy / np.sqrt(sxx * syy) - 0.5 * r * (gxx / sxx + gyy / syy))


def linear_parts(Xc: np.ndarray, Yc: np.ndarray) -> tuple[LinearPart, ...]:
    """The exact gradients at w = 1 of the tie-free replicates of (biased, unbiased) CKA, in feature space.

    Unbiased CKA needs 4 rows, so below that only the biased part is returned.

    Differentiating :func:`biased_terms` and :func:`unbiased_terms` at w = 1, with k_i = (K∘L 1)_i =
    x_iᵀ(XcᵀYc)y_i, K1 = Xc(Xcᵀ1), a_i = K_ii (and likewise for the other pairs):
    ∂S₀/∂w = 2k − a∘b;  ∂tr/∂w = 2k − 2a∘b;  ∂(1ᵀK̃1)/∂w = 2K1 − 2a;
    ∂(1ᵀK̃L̃1)/∂w = u∘v + Kv − a∘v + Lu − u∘b with u = K1 − a, v = L1 − b.
    """
    m = float(Xc.shape[0])
    # The unbiased terms divide by m − 2; their values are dropped below 4 rows, so only avoid the division.
    c1, c2 = (1.0 / ((m - 1) * (m - 2)), 2.0 / (m - 2)) if m >= 4 else (0.0, 0.0)
    a, b = np.einsum("ij,ij->i", Xc, Xc), np.einsum("ij,ij->i", Yc, Yc)
    K1, L1 = matvec(Xc, Xc.sum(axis=0)), matvec(Yc, Yc.sum(axis=0))
    sides = {"x": (Xc, a, K1), "y": (Yc, b, L1)}
    biased, unbiased = [], []
    for p, q in (("x", "y"), ("x", "x"), ("y", "y")):
        (P, u_, U1), (Q, v_, V1) = sides[p], sides[q]
        k = _row_forms(P, matmul(P.T, Q), Q)
        biased.append((float(k.sum()), 2.0 * k - u_ * v_))
        u, v = U1 - u_, V1 - v_
        tr, su, sv, cross = k.sum() - (u_ * v_).sum(), u.sum(), v.sum(), (u * v).sum()
        g_tr, g_su, g_sv = 2.0 * k - 2.0 * u_ * v_, 2.0 * U1 - 2.0 * u_, 2.0 * V1 - 2.0 * v_
        g_cross = u * v + matvec(P, vecmat(v, P)) - u_ * v + matvec(Q, vecmat(u, Q)) - u * v_
        unbiased.append((float(tr + su * sv * c1 - c2 * cross), g_tr + (g_su * sv + su * g_sv) * c1 - c2 * g_cross))
    return (_ratio_part(biased), _ratio_part(unbiased)) if m >= 4 else (_ratio_part(biased),)


def corrected(replicates: np.ndarray, linear: np.ndarray, value: float) -> np.ndarray:
    """Degenerate-corrected replicates value + c·linear + rest, rest = replicate − value − linear.

    The bootstrap's linear part carries the true linear variance plus twice the degenerate (second-order)
    variance, which the rest estimates (docs/formulas.md §6.5), so c² = max(0, 1 − 2·Var(rest)/Var(linear)):
    about 1 with shared signal (the rest is tiny), about 0 without (the linear part is all spurious).
    Replicates with a NaN (a constant side) are returned unchanged; the interval refuses them.
    """
    if not np.isfinite(replicates).all() or not np.isfinite(value):
        return replicates
    rest = replicates - value - linear
    var_lin = float(np.var(linear))
    c2 = max(0.0, 1.0 - 2.0 * float(np.var(rest)) / var_lin) if var_lin > 0 else 1.0
    return value + np.sqrt(c2) * linear + rest


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
              batch: int | None = None, correct: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap replicates of (biased, unbiased) linear CKA, one per count vector.

    Parameters
    ----------
    X, Y : (n, d1), (n, d2) arrays paired by row (assumed already checked).
    weight_blocks : blocks (m, n) of count vectors w ~ Multinomial(n, 1/n), from
        :func:`repalign.stats.resample_weights`.
    batch : resamples evaluated together (their weights are one n×batch float64 matrix); default
        :func:`default_batch`.
    correct : return the degenerate-corrected replicates (:func:`corrected`); False gives the tie-free
        replicates themselves.

    Returns
    -------
    Two arrays of length B, biased and unbiased CKA (NaN where a side is constant in the resample).

    Notes
    -----
    Efron & Tibshirani 1993, ch. 6: a resample is a count vector w. The replicate is the tie-free statistic
    of the data with item i taken w_i times (:func:`biased_terms`, :func:`unbiased_terms`), corrected for
    degeneracy (:func:`corrected`; docs/formulas.md §6.5). No row is copied and no n×n matrix is formed
    (:func:`use_gram_route`). The data are centred once by the full-data means.
    """
    n, d1 = X.shape
    batch = default_batch(n) if batch is None else batch
    # One route for every batch (chosen for a full one), so a replicate does not depend on where it falls.
    gram = use_gram_route(n, d1, Y.shape[1], batch)
    Xc = np.asarray(X, dtype=np.float64) - np.asarray(X, dtype=np.float64).mean(axis=0)
    Yc = np.asarray(Y, dtype=np.float64) - np.asarray(Y, dtype=np.float64).mean(axis=0)
    # Unbiased HSIC needs 4 rows (its terms divide by m − 2 and m − 3).
    estimators = (biased_terms, unbiased_terms) if n >= 4 else (biased_terms,)
    parts = linear_parts(Xc, Yc) if correct else None
    reps: list[list[np.ndarray]] = [[] for _ in estimators]
    lins: list[list[np.ndarray]] = [[] for _ in estimators]
    pending: list[np.ndarray] = []

    def flush() -> None:
        f = weighted_forms(Xc, Yc, np.concatenate(pending).T, gram)
        constant = constant_side(f)
        for e, terms in enumerate(estimators):
            reps[e].append(np.where(constant, np.nan, ratios(terms(f))))
            if parts is not None:
                lins[e].append(parts[e].of(f.W))
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
    if not reps[0]:
        return np.empty(0), np.empty(0)
    out = [np.concatenate(r) for r in reps]
    if parts is not None:
        out = [corrected(r, np.concatenate(lin), part.value) for r, lin, part in zip(out, lins, parts)]
    if len(out) == 1:
        out.append(np.full(out[0].shape, np.nan))
    return out[0], out[1]
