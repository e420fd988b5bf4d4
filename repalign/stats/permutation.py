"""Random pairings: permutation streams, permutation nulls (one pair and max over pairs), p-values."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from repalign.linalg import dot, matmul
from repalign.stats.graphs import overlaps
from repalign.stats.nulls import CkaSums


def permutations(seed: np.random.SeedSequence, n: int, count: int) -> Iterator[np.ndarray]:
    """Yield ``count`` random permutations of range(n)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield rng.permutation(n)


def knn_permutation_null(lists_a: np.ndarray, lists_b: np.ndarray, perms: Iterable[np.ndarray]) -> np.ndarray:
    """Mutual k-NN with B's rows permuted, by relabelling the stored lists: O(n·k) each.

    If B's row i is replaced by row π(i), the neighbours of i in the permuted
    B are π⁻¹(N_B(π(i))).
    """
    n, k = lists_a.shape
    out = []
    for perm in perms:
        inv = np.empty(n, dtype=np.int64)
        inv[perm] = np.arange(n)
        out.append(overlaps(lists_a, inv[lists_b[perm]]).sum() / (n * k))
    return np.asarray(out)


def p_value(observed: float, null: np.ndarray) -> float:
    """(1 + #{null ≥ observed}) / (B + 1): never 0."""
    return float((1 + np.count_nonzero(null >= observed)) / (null.size + 1))


def calibrated_score(observed: float, null: np.ndarray, alpha: float = 0.05, best: float = 1.0) -> float:
    """Gröger, Wen & Brbić 2026: clamp((s − τ)/(best − τ), 0, 1), τ the ⌈(1−α)(B+1)⌉-th smallest of {s} ∪ null.

    ``best``: the value of perfect alignment (1 for similarities; a distance is passed negated, best = −0).
    """
    pool = np.sort(np.append(null, observed))
    rank = int(np.ceil((1 - alpha) * (null.size + 1)))
    return calibrated_from_threshold(observed, float(pool[min(rank, pool.size) - 1]), best)


def calibrated_from_threshold(observed: float, tau: float, best: float = 1.0) -> float:
    """clamp((s − τ)/(best − τ), 0, 1), 0 when τ ≥ best: the calibrated score for a given null quantile τ."""
    if tau >= best:
        return 0.0
    return float(min(max((observed - tau) / (best - tau), 0.0), 1.0))


def cka_permutation_null(X: np.ndarray, Y: np.ndarray, st: CkaSums, perms: Iterable[np.ndarray], *,
                         unbiased: bool) -> np.ndarray:
    """Linear CKA with Y's rows permuted, for each permutation.

    Only ‖XcᵀYc^π‖²_F and aᵀb^π change under a permutation (the other sums
    are invariant), so each costs one cross-product: O(n·d1·d2), or O(n²)
    through the n×n Grams when n is small next to d1·d2 (then formed once).
    """
    n = X.shape[0]
    Xc = np.asarray(X, dtype=np.float64)
    Xc = Xc - Xc.mean(axis=0)
    Yc = np.asarray(Y, dtype=np.float64)
    Yc = Yc - Yc.mean(axis=0)
    gram = n * 4 < X.shape[1] * Y.shape[1] and n <= 8000
    if gram:
        K, L = matmul(Xc, Xc.T), matmul(Yc, Yc.T)
    if unbiased:
        _, sxx, syy = st.unbiased_terms()
        const = float(st.a.sum()) * float(st.b.sum()) / ((n - 1) * (n - 2))
    else:
        sxx, syy = st.sxx, st.syy
    denom = np.sqrt(sxx * syy)
    out = []
    for perm in perms:
        if gram:
            sxy = dot(K, L[np.ix_(perm, perm)])
        else:
            c = matmul(Xc.T, Yc[perm])
            sxy = dot(c, c)
        if unbiased:
            sxy = sxy - n / (n - 2) * dot(st.a, st.b[perm]) + const
        out.append(sxy / denom)
    return np.asarray(out)


# Bytes of permuted copies of Y gathered for one batched cross-product: bounds the batch at large n·d2.
_BATCH_BYTES = 256 << 20
# Permutations per batched cross-product when memory allows: enough for one wide GEMM to serve several.
_MAX_BATCH = 8


class CkaPermuter:
    """Linear CKA of one pair with Y's rows permuted, in batches, both estimators from one cross-product.

    The centred arrays are made once. A batch of permutations gathers Yc[π₁] … Yc[π_b] side by side, so one
    :func:`~repalign.linalg.matmul` (thread-order-stable) forms every XcᵀYc^π of the batch; ‖XcᵀYc^π‖²_F and
    aᵀb^π are kept per permutation (keyed by its content), so cka and cka-unbiased of one pair share them.
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray, st: CkaSums):
        self.n = n = X.shape[0]
        self.st = st
        self.Xc = np.asarray(X, dtype=np.float64)
        self.Xc = self.Xc - self.Xc.mean(axis=0)
        self.Yc = np.asarray(Y, dtype=np.float64)
        self.Yc = self.Yc - self.Yc.mean(axis=0)
        d1, d2 = X.shape[1], Y.shape[1]
        # As cka_permutation_null: the n×n Grams when n is small next to d1·d2 (then no GEMM per permutation).
        self.gram = n * 4 < d1 * d2 and n <= 8000
        if self.gram:
            self.K, self.L = matmul(self.Xc, self.Xc.T), matmul(self.Yc, self.Yc.T)
        self.batch = self.batch_size(n, d2)
        self._sums: dict[bytes, tuple[float, float]] = {}

    @staticmethod
    def batch_size(n: int, d2: int) -> int:
        """Permutations per product: a fixed function of the shape, never of the thread count."""
        return max(1, min(_MAX_BATCH, _BATCH_BYTES // max(1, 8 * n * d2)))

    def values(self, perms: Sequence[np.ndarray], *, unbiased: bool) -> np.ndarray:
        """CKA (biased or unbiased) for each permutation, in order."""
        self._fill([p for p in perms if _key(p) not in self._sums])
        sums = np.array([self._sums[_key(p)] for p in perms], dtype=np.float64).reshape(-1, 2)
        n, st = self.n, self.st
        sxy, ab = sums[:, 0], sums[:, 1]
        if unbiased:
            _, sxx, syy = st.unbiased_terms()
            const = float(st.a.sum()) * float(st.b.sum()) / ((n - 1) * (n - 2))
            sxy = sxy - n / (n - 2) * ab + const
        else:
            sxx, syy = st.sxx, st.syy
        return sxy / np.sqrt(sxx * syy)

    def _fill(self, perms: list[np.ndarray]) -> None:
        b = np.asarray(self.st.b, dtype=np.float64)
        for start in range(0, len(perms), self.batch):
            chunk = perms[start : start + self.batch]
            for perm, frob in zip(chunk, self._frobenius(chunk)):
                self._sums[_key(perm)] = (frob, dot(self.st.a, b[perm]))

    def _frobenius(self, chunk: list[np.ndarray]) -> list[float]:
        """‖XcᵀYc^π‖²_F for each permutation of the chunk: one product for the whole chunk."""
        if self.gram:
            return [dot(self.K, self.L[np.ix_(p, p)]) for p in chunk]
        d2 = self.Yc.shape[1]
        # (n, b, d2) → (n, b·d2): permutation j's columns are j·d2 … (j+1)·d2 − 1.
        stacked = self.Yc[np.stack(chunk, axis=1)].reshape(self.n, len(chunk) * d2)
        c = matmul(self.Xc.T, stacked).reshape(self.Xc.shape[1], len(chunk), d2)
        return [dot(c[:, j, :], c[:, j, :]) for j in range(len(chunk))]


def _key(perm: np.ndarray) -> bytes:
    """A permutation's identity for the sums kept per permutation."""
    return hashlib.blake2b(np.ascontiguousarray(perm, dtype=np.int64).tobytes(), digest_size=16).digest()


# Largest edge → layer-mask table kept dense (n² entries); above it, a sorted table and binary search.
_DENSE_TABLE_BYTES = 256 << 20


@functools.lru_cache(maxsize=4)
def _bit_matrix(count: int) -> np.ndarray:
    """(2^count, count) 0/1 matrix: row v holds the bits of v."""
    v = np.arange(1 << count, dtype=np.int64)
    return ((v[:, None] >> np.arange(count)) & 1).astype(np.float64)


def knn_max_permutation_null(lists_a: Sequence[np.ndarray], lists_b: Sequence[np.ndarray],
                             perms: Iterable[np.ndarray]) -> np.ndarray:
    """For each permutation, the largest mutual k-NN over all (layer of A, layer of B) pairs.

    The same permutation of the items is applied to every layer of B, and the
    max is taken as for the observed best pair (docs/formulas.md §4), so comparing
    the best score with this null accounts for having chosen the best pair.

    Parameters
    ----------
    lists_a, lists_b : lists of (n, k) neighbour lists, one per layer.
    perms : iterable of permutations of range(n) (row i of B ← row π(i)).

    Notes
    -----
    Edge (i, j) of an A layer counts for B layer m under π iff (π(i), π(j)) is
    an edge of B layer m. Every B edge is stored once with a bit mask of the
    layers holding it, so one permutation costs one gather per A layer,
    O(La·n·k), whatever Lb is (up to 64 B layers per table; more are chunked).
    With one layer on each side it equals :func:`knn_permutation_null`.
    """
    n, k = lists_a[0].shape
    La = len(lists_a)
    tables = _edge_tables(lists_b, n, k)
    stacked = np.stack([np.asarray(A, dtype=np.int64) for A in lists_a], axis=1)  # (n, La, k)
    # Codes row·n + column < n² fit int32 whenever n ≤ 46340.
    itype = np.int32 if n * n < 2**31 else np.int64
    row_codes = (np.repeat(np.arange(n, dtype=np.int64), La * k) * n).astype(itype)
    layer_of = np.tile(np.repeat(np.arange(La, dtype=np.int64), k), n)  # the A layer of each code
    code = np.empty(n * La * k, dtype=itype)
    out: list[float] = []
    for perm in perms:
        perm = np.asarray(perm, dtype=np.int64)
        inv = np.empty(n, dtype=np.int64)
        inv[perm] = np.arange(n)
        # Edge (i, j) of an A layer counts for B layer m iff (π(i), π(j)) is an edge of m. Visiting B's rows
        # in order (row r = π(i) holds i = π⁻¹(r)), every A layer at once, reads the table row after row.
        np.add(row_codes, perm.astype(itype)[stacked[inv]].ravel(), out=code)
        best = 0
        for lookup, count in tables:
            best = max(best, _most_shared(lookup(code), layer_of, La, count))
        out.append(best / (n * k))
    return np.asarray(out)


# Maps edge codes (row·n + column) to the bit masks of the B layers holding them, and how many layers it covers.
_EdgeTable = tuple[Callable[[np.ndarray], np.ndarray], int]


def _edge_tables(lists_b: Sequence[np.ndarray], n: int, k: int) -> list[_EdgeTable]:
    """Every B edge once, with a bit mask of the B layers holding it (64 layers per table)."""
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    tables: list[_EdgeTable] = []
    for start in range(0, len(lists_b), 64):
        chunk = lists_b[start : start + 64]
        mtype = next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if np.dtype(t).itemsize * 8 >= len(chunk))
        codes = [rows * n + np.asarray(B, dtype=np.int64).ravel() for B in chunk]
        if n * n * np.dtype(mtype).itemsize <= _DENSE_TABLE_BYTES:
            table = np.zeros(n * n, dtype=mtype)
            for m, c in enumerate(codes):
                table[c] |= mtype(1 << m)
            tables.append((table.__getitem__, len(chunk)))
        else:
            keys, inverse = np.unique(np.concatenate(codes), return_inverse=True)
            masks = np.zeros(keys.size, dtype=mtype)
            np.bitwise_or.at(masks, inverse, np.concatenate([np.full(c.size, 1 << m, dtype=mtype)
                                                             for m, c in enumerate(codes)]))

            def lookup(code: np.ndarray, keys: np.ndarray = keys, masks: np.ndarray = masks) -> np.ndarray:
                pos = np.minimum(np.searchsorted(keys, code), keys.size - 1)
                return np.where(keys[pos] == code, masks[pos], 0).astype(masks.dtype)

            tables.append((lookup, len(chunk)))
    return tables


def _most_shared(masks: np.ndarray, layer_of: np.ndarray, La: int, count: int) -> int:
    """max over (A layer l, B layer m) of #{edges of l whose mask has bit m}."""
    if count <= 16:
        # One histogram of (A layer, mask) gives every pair at once.
        hist = np.bincount(np.add(masks, layer_of << count, dtype=np.int64), minlength=La << count)
        counts = hist.reshape(La, 1 << count).astype(np.float64) @ _bit_matrix(count)  # exact: < 2^53
        return int(round(float(counts.max())))
    best = 0
    for m in range(count):
        has = (masks >> masks.dtype.type(m)) & masks.dtype.type(1)
        best = max(best, int(np.bincount(layer_of, weights=has, minlength=La).max()))
    return best
