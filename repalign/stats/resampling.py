"""Bootstrap and jackknife replicates of mutual k-NN from stored neighbour lists, and its calibrated IJ variance."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from repalign.stats.graphs import overlaps
from repalign.stats.permutation import permutations


def resample_weights(seed: np.random.SeedSequence, n: int, count: int, block: int = 64) -> Iterator[np.ndarray]:
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


class FullList(Protocol):
    """Row i's ordered neighbour list on side "a" or "b", to the given depth (self excluded, ties by index)."""

    def __call__(self, side: str, i: int, depth: int) -> np.ndarray: ...


@dataclass
class KnnResampler:
    """Bootstrap and jackknife replicates of mutual k-NN from neighbour lists computed once.

    Parameters
    ----------
    lists_a, lists_b : (n, K) ordered neighbour lists (self excluded, ties by
        index) with K > k, from :func:`repalign.neighbors.knn`.
    k : the metric's k.
    full_list : :class:`FullList`, the ordered list of row i to a given
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
    full_list: FullList | None = None

    def __post_init__(self) -> None:
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
        # The block path reads the lists position-major, (K, n), so that its running sums add contiguous rows, and
        # takes the matches one position of list a at a time: within one position each row appears at most once.
        index = np.int32 if n < 2**31 else np.int64
        self._lists_t = (np.ascontiguousarray(self.lists_a.T, dtype=index),
                         np.ascontiguousarray(self.lists_b.T, dtype=index))
        # Within a position, by pb, so that the matches a block can reach (both slots possibly > 0) are a prefix.
        self._by_position = []
        for q in np.unique(self.m_pa):
            at = np.flatnonzero(self.m_pa == q)
            at = at[np.argsort(self.m_pb[at], kind="stable")]
            self._by_position.append((int(q), self.m_rows[at], self.m_pb[at]))
        self._full: dict[tuple[str, int], np.ndarray] = {}

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
        if self.full_list is None:
            raise RuntimeError("a resample needs deeper neighbour lists than were stored")
        lst = self._full.get((side, i))
        depth = 4 * self.K if lst is None else lst.size
        while lst is None or (w[lst].sum() < self.k and lst.size < self.n - 1):
            lst = self.full_list(side, i, min(depth, self.n - 1))
            depth *= 2
        self._full[(side, i)] = lst
        return lst

    def _full_overlap(self, i: int, w: np.ndarray) -> int:
        """Overlap of row i in a resample whose stored lists ran out of slots (fallback)."""
        out: dict[str, dict[int, int]] = {}
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
        for i in short:
            ov[i] = self._full_overlap(int(i), w)
        return ov

    def _dense_slots(self, W: np.ndarray, lists_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """(m, K, n) slots of every list position in the m resamples W (int8), each row's count (its total over
        the K positions, or at least k once its k slots are filled) and the number of leading positions that
        hold every nonzero slot.

        The first 2k positions are done for every row at once; they fill all but about 0.5 % of the rows
        (counts are Poisson(1), so a row is open after q positions with probability P(Poisson(q) < k)), and
        the remaining positions are followed for the open rows only, which is where most of the work was.
        """
        m, n, k, K = W.shape[0], self.n, self.k, self.K
        dense = min(K, 2 * k)
        held = W[:, lists_t[:dense]]  # the count of the item at each list position
        slots = np.zeros((m, K, n), dtype=W.dtype)
        before = np.zeros((m, n), dtype=np.int16)  # the slots' running sum; ≤ K·127 < 2¹⁵
        room = np.empty((m, n), dtype=np.int16)
        for q in range(dense):
            np.subtract(k, before, out=room)
            np.maximum(room, 0, out=room)
            np.minimum(room, held[:, q], out=room)
            slots[:, q] = room
            before += held[:, q]
        r, i = np.nonzero(before < k)
        reach = dense
        for q in range(dense, K):
            if r.size == 0:
                break
            h = W[r, lists_t[q, i]]
            got = before[r, i]
            slots[r, q, i] = np.minimum(h, np.maximum(k - got, 0))
            got += h
            before[r, i] = got
            reach = q + 1
            still = got < k
            r, i = r[still], i[still]
        return slots, before, reach

    def block_overlaps(self, W: np.ndarray) -> np.ndarray:
        """(m, n) overlaps of the m resamples in the rows of W: :meth:`overlaps` row by row, vectorised.

        Memory: about 4·m·K·n bytes; callers pass blocks of :meth:`block_rows` rows.
        """
        m, k = W.shape[0], self.k
        if int(W.max(initial=0)) > 127:  # probability ~0 for multinomial counts; int8 would wrap
            return np.stack([self.overlaps(w) for w in W])
        W8 = W.astype(np.int8)
        slots_a, tot_a, reach_a = self._dense_slots(W8, self._lists_t[0])
        slots_b, tot_b, reach_b = self._dense_slots(W8, self._lists_t[1])
        ov = np.zeros((m, self.n), dtype=np.int16)
        for q, rows, pb in self._by_position:
            if q >= reach_a:
                break
            cut = np.searchsorted(pb, reach_b)  # matches deeper in b have no slot there in this block
            rows, pb = rows[:cut], pb[:cut]
            ov[:, rows] += np.minimum(slots_a[:, q, rows], slots_b[:, pb, rows])
        out = ov.astype(np.float64)
        for r, i in zip(*np.nonzero((W > 0) & ((tot_a < k) | (tot_b < k)))):
            out[r, i] = self._full_overlap(int(i), W[r])
        return out

    def block_rows(self) -> int:
        """How many resamples :meth:`block_overlaps` takes at once: about 16 MB of working arrays, 1 to 16 rows."""
        return int(min(16, max(1, 2**22 // (self.K * self.n))))

    def _blocks(self, weight_blocks: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(W, overlaps) for sub-blocks of at most :meth:`block_rows` resamples, in the order given."""
        step = self.block_rows()
        for block in weight_blocks:
            for s in range(0, block.shape[0], step):
                W = block[s:s + step]
                yield W, self.block_overlaps(W)

    def replicate(self, w: np.ndarray) -> float:
        """Mutual k-NN of the resample with counts w (length n, summing to n)."""
        return float(w @ self.overlaps(w) / (w.sum() * self.k))

    def bootstrap(self, weight_blocks: Iterable[np.ndarray]) -> np.ndarray:
        """Mutual k-NN of every resample, from blocks of count vectors (:func:`resample_weights`)."""
        out = [np.einsum("bi,bi->b", W.astype(np.float64), o) / (W.sum(axis=1) * self.k)
               for W, o in self._blocks(weight_blocks)]
        return np.concatenate(out) if out else np.zeros(0)

    def bootstrap_ij(self, weight_blocks: Iterable[np.ndarray]) -> tuple[np.ndarray, float]:
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
        n, k, K = self.n, self.k, self.K
        # (held item, holder) pairs, each once: every entry of both lists except list b's copy of an item both
        # lists hold (the matches), sorted by the held item so that each item's holders are contiguous. Any
        # order within an item will do (the sums below are of integers, exact in any order), so numpy's fast
        # unstable sort; np.unique over the pairs' codes had cost minutes at n = 10⁶.
        index = np.int32 if n < 2**31 else np.int64
        in_b = np.ones((n, K), dtype=bool)
        in_b[self.m_rows, self.m_pb] = False
        rows = np.broadcast_to(np.arange(n, dtype=index)[:, None], (n, K))
        held = np.concatenate([self.lists_a.astype(index).ravel(), self.lists_b.astype(index)[in_b]])
        holder = np.concatenate([rows.ravel(), rows[in_b]])
        order = np.argsort(held)
        held, holder = held[order], holder[order]
        del order
        starts = np.flatnonzero(np.r_[True, held[1:] != held[:-1]])
        items = held[starts]
        in_b_count = in_b.sum(axis=1)

        def held_sums(v: np.ndarray) -> np.ndarray:  # S_i = v_i + Σ_{a holds i} v_a, one resample per row of v
            S = v.copy()
            for row, s in zip(v, S):
                a = np.flatnonzero(row)
                if 4 * a.size < n:
                    # Few holders with v_a ≠ 0 (v = w·o, and most overlaps are 0 when the spaces share little):
                    # add each one's v_a to the items of its lists, O(|a|·K) instead of O(n·K).
                    into = np.concatenate([self.lists_a[a].ravel(), self.lists_b[a][in_b[a]]])
                    s += np.bincount(into, weights=np.concatenate([np.repeat(row[a], K),
                                                                   np.repeat(row[a], in_b_count[a])]), minlength=n)
                else:  # a 1-d reduceat per resample is several times faster than one along an axis
                    s[items] += np.add.reduceat(row[holder], starts)
            return S

        full = overlaps(self.lists_a[:, :k], self.lists_b[:, :k]).astype(np.float64)
        # Any constant centring of S_i leaves E[(w_i − 1)(S_i − c_i)] = cov*(w_i, S_i); this one is close to E*[S_i].
        centre = held_sums(full[None, :])[0]
        # Every quantity below is an integer held exactly (in float64 far below 2⁵³), so all sums are exact and
        # do not depend on the block size.
        acc, acc2 = np.zeros(n), np.zeros(n)
        out = []
        for W, o in self._blocks(weight_blocks):
            w = W.astype(np.float64)
            out.append(np.einsum("bi,bi->b", w, o) / (W.sum(axis=1) * k))  # as bootstrap() computes it
            u = (w - 1.0) * (held_sums(w * o) - centre)
            acc += u.sum(axis=0)
            acc2 += (u * u).sum(axis=0)
        reps = np.concatenate(out) if out else np.zeros(0)
        B = reps.size
        if B < 2:
            return reps, float("nan")
        coef = acc / B
        noise = (acc2 / B - coef * coef) / (B - 1)
        var = (float(np.sum(coef * coef - noise)) - n * float(coef.mean()) ** 2) / float(n * k) ** 2
        return reps, var

    def relabelled(self, perm: np.ndarray) -> KnnResampler:
        """The resampler of the data with side b's rows permuted (row i of b becomes row perm[i])."""
        inv = np.empty_like(perm)
        inv[perm] = np.arange(perm.size)
        full = self.full_list
        if full is None:
            return KnnResampler(self.lists_a, inv[self.lists_b[perm]], self.k)

        def full_list(side: str, i: int, depth: int) -> np.ndarray:
            return full(side, i, depth) if side == "a" else inv[full(side, int(perm[i]), depth)]

        return KnnResampler(self.lists_a, inv[self.lists_b[perm]], self.k, full_list)

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


# Random pairings that calibrate the IJ variance of mknn.
IJ_NULL_PERMUTATIONS = 4
# Replicate budgets of the IJ (item-replicates, n·B). The IJ's Monte Carlo error relative to the variance it
# estimates falls like 1/√(n·B) (each item's covariance carries O(1) noise per replicate, and the variance is a
# sum over n items), so a fixed n·B keeps it constant as n grows. These values reproduce the budgets validated at
# n ≤ 2,560 (B = 1000 observed, 4 × 250 calibration) and lower B above. Measured (benchmarks/README.md,
# "Cheaper defaults"): the seed-to-seed SD of the observed IJ relative to itself was 3.2 % at n = 1,024,
# B = 1000 and 3.4 % at n = 10,000, B = 256 without signal; one calibration pairing's error is dominated by
# the pairing drawn, not by its replicates. The floors bind above n = 80,000, where by the same law the error
# is smaller still (about 1 % at n = 10⁶), and keep the interval's cost linear in n there (64 replicates).
IJ_ITEM_REPLICATES = 2_560_000
IJ_MIN_REPLICATES = 32
IJ_NULL_ITEM_REPLICATES = 640_000
IJ_NULL_MIN_REPLICATES = 8


def ij_budgets(n: int, resamples: int, pairings: int = IJ_NULL_PERMUTATIONS) -> tuple[int, int]:
    """(replicates of the observed pairing, replicates per calibration pairing) for n items, at most ``resamples``.

    B = min(resamples, max(32, ⌈2.56e6/n⌉)) and, per pairing, min(resamples/pairings, max(8, ⌈6.4e5/n⌉)):
    the n·B validated at small n up to n = 80,000, so the cost stays that of n = 2,560 (n·B fixed); above,
    the floors, 64 replicates in all, whose relative error keeps falling like 1/√n.
    """
    observed = min(resamples, max(IJ_MIN_REPLICATES, -(-IJ_ITEM_REPLICATES // n)))
    per = min(resamples // pairings, max(IJ_NULL_MIN_REPLICATES, -(-IJ_NULL_ITEM_REPLICATES // n)))
    return observed, max(2, per)


def calibration_replicates(nominal: int, ij: float, null_variance: float) -> int:
    """Replicates per calibration pairing: ``nominal`` scaled by (null variance / V)², never below the floor.

    V = max(IJ − null variance, null variance) stands for the variance the interval will use before the
    calibration is known (the excess it removes was 0.1–0.9 null variances in every setting measured), so
    without signal, where the IJ is 1.2–1.5 null variances, the nominal budget is kept.

    The calibration measures the IJ's excess on randomly re-paired data, so its Monte Carlo error is a
    multiple of the null variance (SD about 0.15–0.2 null variances per pairing at the nominal budget,
    n = 10,000), and it enters the interval's variance V additively. Its error relative to V then
    scales like (null variance / V)·√(nominal/replicates): keeping it at its size without signal, where
    V ≈ null variance and the budgets were validated, needs nominal·(null variance/V)² replicates. With
    signal V is tens to hundreds of null variances (200 at n = 10,000 in benchmarks/README.md), so the
    calibration drops to the floor.
    """
    if not (ij > null_variance > 0) or nominal <= IJ_NULL_MIN_REPLICATES:
        return nominal
    ratio = null_variance / max(ij - null_variance, null_variance)
    return max(IJ_NULL_MIN_REPLICATES, min(nominal, math.ceil(nominal * ratio**2)))


@dataclass
class IjVariance:
    """The infinitesimal-jackknife variance of mknn and its calibration on randomly re-paired data."""

    replicates: np.ndarray
    """The bootstrap replicates of the observed pairing (:func:`ij_budgets` of them)."""
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
    is known exactly (the null variance, :func:`repalign.stats.nulls.mknn_null`), so
    the IJ's excess there is measured: the mean over ``pairings`` random
    pairings of IJ − null variance. The replicate counts are :func:`ij_budgets`
    (``resamples`` at most; fewer above n ≈ 2,560, where fewer give the same
    Monte Carlo error), so ``replicates`` may hold fewer than ``resamples``, and
    each pairing's are cut further by :func:`calibration_replicates` when the IJ
    is many null variances (the calibration then barely moves the variance).
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
    observed, per = ij_budgets(n, resamples, pairings)
    reps, ij = rs.bootstrap_ij(resample_weights(boot_seed, n, observed))
    per = calibration_replicates(per, ij, null_sd**2)
    excess = []
    for j, perm in enumerate(permutations(_child(null_seed, 0), n, pairings)):
        _, v = rs.relabelled(perm).bootstrap_ij(resample_weights(_child(null_seed, j + 1), n, per))
        excess.append(v - null_sd**2)
    null_excess = float(np.mean(excess))
    return IjVariance(reps, ij, null_excess, ij - null_excess, null_sd**2)


