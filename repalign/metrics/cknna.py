"""The cknna metric: CKA restricted to the mutual k-NN pairs (Huh et al. 2024), from the neighbour lists alone."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from repalign.errors import InputError
from repalign.linalg import dot
from repalign.metrics.base import PairData, finish
from repalign.metrics.knn import relabel
from repalign.metrics.spec import MetricSpec, Params, Work
from repalign.results import MetricResult
from repalign.validation import check_k, check_nonzero_rows, row_norms

# Gathered neighbour rows per block of the kernel values, in float64 elements (32 MB).
_BLOCK_ELEMENTS = 1 << 22
# memory() is not told k; it plans for lists this deep (k beyond it is rare for a neighbour metric).
_PLAN_K = 100


@dataclass(frozen=True)
class SideKernel:
    """One side's neighbour lists and its kernel at those entries, with the self term HSIC₁(M∘K, M∘K)."""

    lists: np.ndarray
    """(n, k) int64 neighbour indices, self excluded."""
    values: np.ndarray
    """(n, k) float64: values[i, c] = K[i, lists[i, c]]."""
    self_hsic: float


def list_kernel(x: np.ndarray, lists: np.ndarray, norms: np.ndarray | None = None) -> np.ndarray:
    """The kernel at the list entries: K[i, lists[i, c]] as a float64 row dot product.

    Parameters
    ----------
    x : (n, d) array, any float dtype.
    lists : (n, k) neighbour indices.
    norms : (n,) row norms: divide by both rows' norms (cosine similarity); None: the raw inner product.

    Returns
    -------
    (n, k) float64. O(n·k·d), in row blocks; numpy's own summation loop, so the rounding does not depend on the
    number of BLAS threads.
    """
    n, k = lists.shape
    d = x.shape[1]
    out = np.empty((n, k), dtype=np.float64)
    step = max(1, _BLOCK_ELEMENTS // max(1, k * d))
    for r in range(0, n, step):
        rows = np.asarray(x[r : r + step], dtype=np.float64)
        gathered = np.asarray(x[lists[r : r + step]], dtype=np.float64)
        out[r : r + step] = np.einsum("bd,bkd->bk", rows, gathered)
    if norms is not None:
        out /= norms[:, None] * norms[lists]
    return out


def sparse_hsic(n: int, rows: np.ndarray, cols: np.ndarray, kv: np.ndarray, lv: np.ndarray) -> float:
    """Unbiased HSIC₁ of two n×n matrices that are zero outside the same off-diagonal entries.

    Parameters
    ----------
    n : matrix size (n ≥ 4).
    rows, cols : (m,) the distinct entries (i, j), i ≠ j, where K̃ and L̃ may be nonzero.
    kv, lv : (m,) float64 K̃_ij and L̃_ij at those entries.

    Returns
    -------
    HSIC₁ = [Σ_ij K̃_ij L̃_ji + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2·1ᵀK̃L̃1/(n−2)] / (n(n−3)).

    Notes
    -----
    Song et al. 2012, eq. 5. The trace term is Σ_ij K̃_ij L̃_ji as in platonic-rep's ``hsic_unbiased``: masked
    kernels are not symmetric, so it differs from Σ_ij K̃_ij L̃_ij. The transposed entry (j, i) is found by a
    binary search over the sorted keys i·n + j; 1ᵀK̃L̃1 = Σ_j colsum(K̃)_j · rowsum(L̃)_j. O(m log m).
    """
    keys = rows * n + cols
    order = np.argsort(keys)
    sorted_keys = keys[order]
    transposed = cols * n + rows
    pos = np.minimum(np.searchsorted(sorted_keys, transposed), max(keys.size - 1, 0))
    found = sorted_keys[pos] == transposed if keys.size else np.zeros(0, dtype=bool)
    trace = dot(kv[found], lv[order[pos[found]]])
    col_k = np.bincount(cols, weights=kv, minlength=n)
    row_l = np.bincount(rows, weights=lv, minlength=n)
    total = trace + float(kv.sum()) * float(lv.sum()) / ((n - 1) * (n - 2)) - 2.0 * dot(col_k, row_l) / (n - 2)
    return total / (n * (n - 3))


def side_kernel(x: np.ndarray, lists: np.ndarray, norms: np.ndarray | None = None) -> SideKernel:
    """A side's kernel at its list entries and its self term HSIC₁(M∘K, M∘K) (M the side's top-k mask)."""
    n, k = lists.shape
    lists = np.asarray(lists, dtype=np.int64)
    values = list_kernel(x, lists, norms)
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    flat = values.ravel()
    return SideKernel(lists, values, sparse_hsic(n, rows, lists.ravel(), flat, flat))


def cross_hsic(a: SideKernel, lists_b: np.ndarray, values_b: np.ndarray) -> float:
    """HSIC₁(m∘K, m∘L) with m the entries (i, j) where j is in both lists of row i.

    B's lists are sorted row by row, which makes their keys i·n + j sorted overall; each entry of A's lists is
    then looked up by binary search. O(n·k·log(n·k)).
    """
    n, k = a.lists.shape
    order = np.argsort(lists_b, axis=1)
    keys_b = (np.take_along_axis(lists_b, order, axis=1) + np.arange(n, dtype=np.int64)[:, None] * n).ravel()
    lv_sorted = np.take_along_axis(values_b, order, axis=1).ravel()
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = a.lists.ravel()
    keys_a = rows * n + cols
    pos = np.minimum(np.searchsorted(keys_b, keys_a), keys_b.size - 1)
    hit = keys_b[pos] == keys_a
    return sparse_hsic(n, rows[hit], cols[hit], a.values.ravel()[hit], lv_sorted[pos[hit]])


def cknna(a: SideKernel, b: SideKernel) -> float | None:
    """CKNNA = HSIC₁(m∘K, m∘L) / sqrt(HSIC₁(M_K∘K, M_K∘K) · HSIC₁(M_L∘L, M_L∘L)); None if the product ≤ 0.

    Parameters
    ----------
    a, b : the two sides' :class:`SideKernel` (same n and k).

    Notes
    -----
    Huh et al. 2024, "The Platonic Representation Hypothesis", ``cknna`` in platonic-rep's metrics.py; the
    masks are the row-wise top-k lists (self excluded, not symmetrised), m = M_K ∘ M_L. platonic-rep adds
    1e-6 to the denominator; this does not (0.311153 instead of 0.311141 on the reference fixture).
    """
    denom = a.self_hsic * b.self_hsic
    if not denom > 0:
        return None
    return cross_hsic(a, b.lists, b.values) / math.sqrt(denom)


def _kernel_name(distance: str) -> str:
    return "cosine" if distance == "cosine" else "inner-product"


def _sides(p: PairData) -> tuple[SideKernel, SideKernel]:
    """Both sides' kernel values at their lists, kept on the pair for the permutation null that follows."""
    if "cknna" not in p.cache:
        p.cache["cknna"] = (_side(p, "a"), _side(p, "b"))
    return p.cache["cknna"]


def _side(p: PairData, side: str) -> SideKernel:
    x, label = (p.a, p.labels[0]) if side == "a" else (p.b, p.labels[1])
    norms = None
    if p.distance == "cosine":
        norms = row_norms(x)
        check_nonzero_rows(norms, label, "cosine similarity")
    return side_kernel(x, p.neighbors(side)[:, :p.k], norms)


def _check(params: Params, n: int, d1: int, d2: int, k: int, labels: tuple[str, str]) -> None:
    if k < 2:
        raise InputError(f"{labels[0]} and {labels[1]}: cknna needs k ≥ 2 (got k={k}); with one neighbour the "
                         "masked kernels have no off-diagonal structure to centre")
    check_k(k, n, "cknna", labels)


def cknna_result(p: PairData, params: Params) -> MetricResult:
    """CKNNA of the pair from both sides' neighbour lists and kernel values at them."""
    _check(params, p.n, 0, 0, p.k, p.labels)
    a, b = _sides(p)
    shown = {"k": p.k, "distance": p.distance, "kernel": _kernel_name(p.distance)}
    value = cknna(a, b)
    if value is None:
        bad = [p.labels[i] for i, s in enumerate((a, b)) if not s.self_hsic > 0]
        return finish(p, SPEC, params, None, shown=shown,
                      reason=f"{' and '.join(bad)}: the unbiased HSIC of the k-NN-masked kernel with itself is not "
                             "positive, so CKNNA's denominator is undefined")
    return finish(p, SPEC, params, value, chance=None, null_sd=None, shown=shown)


def _permutation_null(p: PairData, params: Params, perms: list[np.ndarray]) -> np.ndarray:
    """Relabel B's lists and move its kernel values with them; only the cross term changes.

    L^π_ij = L_{π(i), π(j)}: the self term of B is a relabelling of the same matrix, so it is unchanged.
    O(n·k·log(n·k)) per permutation.
    """
    a, b = _sides(p)
    denom = math.sqrt(a.self_hsic * b.self_hsic)
    return np.array([cross_hsic(a, relabel(b.lists, perm), b.values[perm]) / denom for perm in perms])


def _memory(n: int, d1: int, d2: int, params: Params) -> int:
    # About 24 float64/int64 arrays of n·k entries at the peak (kernel values of both sides, sorted keys,
    # positions, the cross entries and their transposed lookups), a few n-vectors, and one gathered block
    # (in float64 plus its copy in the input's dtype).
    k = min(max(n - 1, 1), _PLAN_K)
    return 8 * (24 * n * k + 6 * n) + 16 * max(_BLOCK_ELEMENTS, k * max(d1, d2))


SPEC = MetricSpec(
    "cknna", "CKNNA", (-math.inf, math.inf),
    "CKA (unbiased HSIC) of the kernels masked to the mutual k-NN pairs (Huh et al. 2024, the paper's own metric); "
    "kernel = cosine for distance=cosine, else the raw inner product (for l2 the lists are Euclidean); no 1e-6 "
    "in the denominator, unlike platonic-rep",
    cknna_result, work=Work(lists=True, arrays=True), chance="permutation null (no closed form is known)",
    permutation_null=_permutation_null, cheap_null=True, memory=_memory, check=_check, perfect=1.0)
