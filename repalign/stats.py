"""Resampling for uncertainty: exact bootstrap replicates of k-NN metrics, jackknives, intervals, permutations."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable

import numpy as np

from repalign.metrics.knn import overlaps

# ---------------------------------------------------------------- random streams


def resample_weights(seed: np.random.SeedSequence, n: int, count: int, block: int = 64):
    """Yield ``count`` bootstrap count vectors w ~ Multinomial(n, 1/n), in blocks of rows.

    Every metric draws from a copy of the same SeedSequence, so replicate b
    is the same resample of the items for every metric.
    """
    rng = np.random.default_rng(seed)
    done = 0
    while done < count:
        m = min(block, count - done)
        # Indices drawn with replacement, counted: the same law as a multinomial, and cheap.
        idx = rng.integers(0, n, size=(m, n)) + (np.arange(m, dtype=np.int64) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=m * n).reshape(m, n).astype(np.int32)
        done += m


def permutations(seed: np.random.SeedSequence, n: int, count: int):
    """Yield ``count`` random permutations of range(n)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield rng.permutation(n)


# ---------------------------------------------------------------- k-NN replicates


@dataclass
class KnnResampler:
    """Bootstrap and jackknife replicates of mutual k-NN from neighbour lists computed once.

    Parameters
    ----------
    lists_a, lists_b : (n, K) ordered neighbour lists (self excluded, ties by
        index) with K > k, from :func:`repalign.neighbors.knn`.
    k : the metric's k.
    full_list : callable(side, i, depth) -> the ordered list of row i to that
        depth, used only when a resample leaves fewer than k slots in the
        stored K (rare for K ≈ 3k).

    Notes
    -----
    docs/formulas.md §6. In a resample with counts w, the neighbours of item i are
    the first items of i's full-data list that are present, item j taking w_j
    slots; copies of i itself are never its neighbours. Copies of j tie with
    each other and are ordered by position, so both spaces take the same
    copies, and an item j in both lists contributes min(slots_A(j),
    slots_B(j)) to the overlap. Every copy of i has the same overlap, so the
    replicate is Σ_i w_i·overlap_i/(n·k). This equals materialising the
    resample and searching with the copies of the query excluded, without
    any new search.
    """

    lists_a: np.ndarray
    lists_b: np.ndarray
    k: int
    full_list: Callable[[str, int], np.ndarray] | None = None

    def __post_init__(self):
        n, K = self.lists_a.shape
        self.n, self.K = n, K
        # Positions (row, pa, pb) where both lists hold the same item; they do not depend on the resample.
        both = np.concatenate([self.lists_a, self.lists_b], axis=1)
        order = np.argsort(both, axis=1, kind="stable")
        sorted_ = np.take_along_axis(both, order, axis=1)
        rows, pos = np.nonzero(sorted_[:, 1:] == sorted_[:, :-1])
        p1, p2 = order[rows, pos], order[rows, pos + 1]
        self.m_rows = rows
        self.m_pa = np.minimum(p1, p2)
        self.m_pb = np.maximum(p1, p2) - K
        self._flat_a = self.m_rows * K + self.m_pa
        self._flat_b = self.m_rows * K + self.m_pb
        self._full: dict = {}

    @staticmethod
    def _slots(w_of_list: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        cum = np.cumsum(w_of_list, axis=-1)
        return np.minimum(w_of_list, np.maximum(k - (cum - w_of_list), 0)), cum[..., -1]

    def _slots_at(self, w_of_list: np.ndarray, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_slots` at the flat positions ``flat`` only (and every row's total), in int32."""
        cum = np.cumsum(w_of_list, axis=-1, dtype=np.int32)
        c, x = cum.ravel()[flat], w_of_list.ravel()[flat]
        return np.minimum(x, np.maximum(self.k - (c - x), 0)), cum[:, -1]

    def _deep_list(self, side: str, i: int, w: np.ndarray) -> np.ndarray:
        """Row i's list, deep enough that the present items fill k slots (deepened by doubling, cached)."""
        lst = self._full.get((side, i))
        depth = 4 * self.K if lst is None else lst.size
        while lst is None or (w[lst].sum() < self.k and lst.size < self.n - 1):
            lst = self.full_list(side, i, min(depth, self.n - 1))
            depth *= 2
        self._full[(side, i)] = lst
        return lst

    def _full_overlap(self, i: int, w: np.ndarray) -> int:
        """Overlap of row i in a resample whose stored lists ran out of slots (fallback)."""
        out = {}
        for side in ("a", "b"):
            lst = self._deep_list(side, i, w)
            slots, _ = self._slots(w[lst], self.k)
            nz = slots > 0
            out[side] = dict(zip(lst[nz].tolist(), slots[nz].tolist()))
        return sum(min(s, out["b"][j]) for j, s in out["a"].items() if j in out["b"])

    def overlaps(self, w: np.ndarray) -> np.ndarray:
        """(n,) overlap of every item in the resample with counts w (0 where w_i = 0 is irrelevant)."""
        k = self.k
        sa, tot_a = self._slots_at(w[self.lists_a], self._flat_a)
        sb, tot_b = self._slots_at(w[self.lists_b], self._flat_b)
        vals = np.minimum(sa, sb)
        ov = np.bincount(self.m_rows, weights=vals, minlength=self.n)
        short = np.flatnonzero((w > 0) & ((tot_a < k) | (tot_b < k)))
        if short.size:
            if self.full_list is None:
                raise RuntimeError("a resample needs deeper neighbour lists than were stored")
            for i in short:
                ov[i] = self._full_overlap(int(i), w)
        return ov

    def replicate(self, w: np.ndarray) -> float:
        """Mutual k-NN of the resample with counts w (length n, summing to n)."""
        return float(w @ self.overlaps(w) / (w.sum() * self.k))

    def bootstrap(self, weight_blocks) -> np.ndarray:
        out = []
        for block in weight_blocks:
            out.extend(self.replicate(w) for w in block)
        return np.asarray(out)

    def bootstrap_ij(self, weight_blocks) -> tuple[np.ndarray, float]:
        """Bootstrap replicates and the infinitesimal-jackknife variance Σ_i cov*(w_i, T*)².

        Efron's IJ estimate (Efron 2014; Wager, Hastie & Efron 2014) from the
        same replicates as :meth:`bootstrap`. T* = Σ_a w_a·o_a(w)/(n·k), and w_i
        can only move the overlap of item i itself and of the items a whose
        stored lists hold i, so cov*(w_i, T*) is estimated from those terms
        alone: S_i = w_i·o_i + Σ_{a: i ∈ list(a)} w_a·o_a. Leaving out the terms
        whose covariance with w_i is zero (all but O(K) of n) removes most of the
        Monte Carlo noise, which otherwise grows like n/B. The remaining noise
        is subtracted (its variance is estimated per item from the replicates),
        and the coefficients are centred because Σ_i w_i = n.
        """
        n, k = self.n, self.k
        src = np.repeat(np.arange(n, dtype=np.int64), 2 * self.K)
        # (held item, holder) pairs, sorted by the held item so that each item's holders are contiguous.
        code = np.unique(np.concatenate([self.lists_a, self.lists_b], axis=1).ravel() * n + src)
        held, holder = code // n, code % n
        starts = np.flatnonzero(np.r_[True, held[1:] != held[:-1]])
        items = held[starts]

        def held_sums(v):  # S_i = v_i + Σ_{a holds i} v_a
            S = v.copy()
            S[items] += np.add.reduceat(v[holder], starts)
            return S

        full = overlaps(self.lists_a[:, :k], self.lists_b[:, :k]).astype(np.float64)
        # Any constant centring of S_i leaves E[(w_i − 1)(S_i − c_i)] = cov*(w_i, S_i); this one is close to E*[S_i].
        centre = held_sums(full)
        # Every quantity below is an integer held in float64 (far below 2⁵³), so all sums are exact.
        acc, acc2 = np.zeros(n), np.zeros(n)
        out = []
        for block in weight_blocks:
            for w in block:
                o = self.overlaps(w)
                out.append(float(w @ o / (w.sum() * k)))  # exactly as replicate() computes it
                w = w.astype(np.float64)
                u = (w - 1.0) * (held_sums(w * o) - centre)
                acc += u
                acc2 += u * u
        B = len(out)
        if B < 2:
            return np.asarray(out), float("nan")
        coef = acc / B
        noise = (acc2 / B - coef * coef) / (B - 1)
        var = (float(np.sum(coef * coef - noise)) - n * float(coef.mean()) ** 2) / float(n * k) ** 2
        return np.asarray(out), var

    def relabelled(self, perm: np.ndarray) -> "KnnResampler":
        """The resampler of the data with side b's rows permuted (row i of b becomes row perm[i])."""
        inv = np.empty_like(perm)
        inv[perm] = np.arange(perm.size)
        full = self.full_list

        def full_list(side, i, depth):
            return full(side, i, depth) if side == "a" else inv[full(side, int(perm[i]), depth)]

        return KnnResampler(self.lists_a, inv[self.lists_b[perm]], self.k, full_list if full else None)

    def jackknife(self) -> np.ndarray:
        """All n leave-one-out values of mutual k-NN, in O(n·k²).

        Deleting item i removes row i and shifts up the lists of the rows that
        held i among their first k; only those rows change, and each needs the
        k+1-th neighbour (K > k).
        """
        n, k = self.n, self.k
        A, B = self.lists_a, self.lists_b
        base = overlaps(A[:, :k], B[:, :k]).astype(np.float64)
        rows = np.repeat(np.arange(n, dtype=np.int64), k)
        key = np.unique(np.concatenate([rows * n + A[:, :k].ravel(), rows * n + B[:, :k].ravel()]))
        j, i = key // n, key % n
        shifted = []
        for lists in (A, B):
            top = lists[j, : k + 1]
            keep = top != i[:, None]
            # i not among the first k+1: the list keeps its first k.
            keep[keep.all(axis=1), k] = False
            shifted.append(top[keep].reshape(-1, k))
        delta = np.bincount(i, weights=base[j] - overlaps(*shifted), minlength=n)
        return (base.sum() - base - delta) / ((n - 1) * k)


# ---------------------------------------------------------------- intervals


# Permutations (each with resamples/IJ_NULL_PERMUTATIONS replicates) that calibrate the IJ variance of mknn.
IJ_NULL_PERMUTATIONS = 4


@dataclass
class IjVariance:
    replicates: np.ndarray
    """The bootstrap replicates of the observed pairing."""
    ij: float
    """Infinitesimal-jackknife variance of the observed pairing."""
    null_excess: float
    """Mean IJ variance of randomly re-paired data minus the exact null variance."""
    calibrated: float
    """ij − null_excess (may be ≤ 0 for tiny, noisy data)."""
    null_variance: float
    """The exact variance under random pairing."""

    @property
    def variance(self) -> float:
        """The variance the interval uses: the calibrated one, never below the null variance."""
        return max(self.calibrated, self.null_variance)


def _child(seed: np.random.SeedSequence, j: int) -> np.random.SeedSequence:
    """The j-th child of ``seed``, the same however often it is asked for (spawn() would move on)."""
    return np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key) + (j,))


def knn_ij_variance(rs: KnnResampler, boot_seed: np.random.SeedSequence, resamples: int,
                    null_seed: np.random.SeedSequence, null_sd: float,
                    pairings: int = IJ_NULL_PERMUTATIONS) -> IjVariance:
    """Null-calibrated infinitesimal-jackknife variance of mutual k-NN.

    The IJ variance (:meth:`KnnResampler.bootstrap_ij`) of a statistic built
    from k-NN graphs overstates its variance by its higher-order part, as the
    jackknife does (Efron & Stein 1981); with unrelated spaces that part is all
    of it. For the data's own two graphs, randomly re-paired, the true variance
    is known exactly (the null variance, :func:`repalign.nulls.mknn_null`), so
    the IJ's excess there is measured: the mean over ``pairings`` random
    pairings (resamples/pairings replicates each) of IJ − null variance.
    The calibrated variance is IJ − that excess: exact in expectation when the
    spaces are unrelated, and with signal a correction of the part the data
    share with the null. The interval uses max(calibrated, null variance):
    without signal the calibrated value is right on average but noisy (its SD
    is about a quarter of the true variance, from the IJ itself), and its low
    tail made intervals too short (coverage 0.91 at n = 1024, d = 768); the
    null variance is the exact value there, and with signal the true variance
    was far above it in every setting studied. benchmarks/coverage_results.md
    measures all of it.
    """
    n = rs.n
    reps, ij = rs.bootstrap_ij(resample_weights(boot_seed, n, resamples))
    per = max(2, resamples // pairings)
    excess = []
    for j, perm in enumerate(permutations(_child(null_seed, 0), n, pairings)):
        _, v = rs.relabelled(perm).bootstrap_ij(resample_weights(_child(null_seed, j + 1), n, per))
        excess.append(v - null_sd**2)
    null_excess = float(np.mean(excess))
    return IjVariance(reps, ij, null_excess, ij - null_excess, null_sd**2)


def _z(q: float) -> float:
    return NormalDist().inv_cdf(q)


def jackknife_se(values: np.ndarray) -> float:
    n = values.size
    return float(np.sqrt((n - 1) / n * np.sum((values - values.mean()) ** 2)))


def interval(estimate: float, method: str, confidence: float, *, replicates: np.ndarray | None = None,
             jack: np.ndarray | None = None, se: float | None = None) -> tuple[float, float]:
    """A two-sided interval (Efron & Tibshirani 1993).

    ``percentile``: quantiles of the replicates. ``basic``: 2θ̂ minus them.
    ``bca``: bias-corrected and accelerated (z₀ from the share of replicates
    below θ̂, acceleration from the jackknife). ``normal``: θ̂ ± z·SE with the
    SE from the bootstrap replicates, or from the jackknife when there are none, or ``se`` when given.
    """
    alpha = 1.0 - confidence
    lo_q, hi_q = alpha / 2, 1 - alpha / 2
    if method == "normal" and se is not None:
        z = _z(hi_q)
        return estimate - z * se, estimate + z * se
    if method == "normal":
        se = float(np.std(replicates, ddof=1)) if replicates is not None and replicates.size > 1 else jackknife_se(jack)
        z = _z(hi_q)
        return estimate - z * se, estimate + z * se
    r = np.sort(replicates)
    if method == "percentile":
        return float(np.quantile(r, lo_q)), float(np.quantile(r, hi_q))
    if method == "basic":
        return 2 * estimate - float(np.quantile(r, hi_q)), 2 * estimate - float(np.quantile(r, lo_q))
    if method == "bca":
        share = (np.count_nonzero(r < estimate) + 0.5 * np.count_nonzero(r == estimate)) / r.size
        share = min(max(share, 0.5 / r.size), 1 - 0.5 / r.size)
        z0 = _z(share)
        d = jack.mean() - jack
        denom = 6.0 * np.sum(d**2) ** 1.5
        a = float(np.sum(d**3) / denom) if denom > 0 else 0.0
        qs = []
        for q in (lo_q, hi_q):
            zq = _z(q)
            qs.append(NormalDist().cdf(z0 + (z0 + zq) / (1 - a * (z0 + zq))))
        return float(np.quantile(r, qs[0])), float(np.quantile(r, qs[1]))
    raise ValueError(method)


# ---------------------------------------------------------------- permutations


def knn_permutation_null(lists_a: np.ndarray, lists_b: np.ndarray, perms) -> np.ndarray:
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


def calibrated_score(observed: float, null: np.ndarray, alpha: float = 0.05) -> float:
    """Gröger, Wen & Brbić 2026: clamp((s − τ)/(1 − τ), 0, 1), τ the ⌈(1−α)(B+1)⌉-th smallest of {s} ∪ null."""
    pool = np.sort(np.append(null, observed))
    rank = int(np.ceil((1 - alpha) * (null.size + 1)))
    tau = float(pool[min(rank, pool.size) - 1])
    if tau >= 1.0:
        return 0.0
    return float(min(max((observed - tau) / (1 - tau), 0.0), 1.0))


def cka_permutation_null(X: np.ndarray, Y: np.ndarray, st, perms, *, unbiased: bool) -> np.ndarray:
    """Linear CKA with Y's rows permuted, for each permutation.

    Only ‖XcᵀYc^π‖²_F and aᵀb^π change under a permutation (the other sums
    are invariant), so each costs one cross-product: O(n·d1·d2), or O(n²)
    through the n×n Grams when n is small next to d1·d2 (then formed once).
    """
    from repalign.metrics.cka import unbiased_terms
    from repalign.metrics.linalg import dot, matmul

    n = X.shape[0]
    Xc = np.asarray(X, dtype=np.float64)
    Xc = Xc - Xc.mean(axis=0)
    Yc = np.asarray(Y, dtype=np.float64)
    Yc = Yc - Yc.mean(axis=0)
    gram = n * 4 < X.shape[1] * Y.shape[1] and n <= 8000
    if gram:
        K, L = matmul(Xc, Xc.T), matmul(Yc, Yc.T)
    if unbiased:
        _, sxx, syy = unbiased_terms(st)
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


# Largest edge → layer-mask table kept dense (n² entries); above it, a sorted table and binary search.
_DENSE_TABLE_BYTES = 256 << 20


@functools.lru_cache(maxsize=4)
def _bit_matrix(count: int) -> np.ndarray:
    """(2^count, count) 0/1 matrix: row v holds the bits of v."""
    v = np.arange(1 << count, dtype=np.int64)
    return ((v[:, None] >> np.arange(count)) & 1).astype(np.float64)


def knn_max_permutation_null(lists_a: list, lists_b: list, perms) -> np.ndarray:
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
    out = []
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


def _edge_tables(lists_b: list, n: int, k: int) -> list:
    """Every B edge once, with a bit mask of the B layers holding it (64 layers per table)."""
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    tables = []
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

            def lookup(code, keys=keys, masks=masks):
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
