"""The lcs-knn metric: longest common subsequence of each item's two ordered k-neighbour lists, over k."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np

from repalign.metrics import knn as _knn
from repalign.metrics.base import PairData, finish
from repalign.metrics.spec import MetricSpec, Params, Work
from repalign.results import MetricResult
from repalign.validation import check_k

_NAME = "lcs-knn"
# Largest overlap whose LIS mean is enumerated (1575 partitions of 24); the chance level is given only when
# larger overlaps have probability below _TAIL under the permutation null (always, unless k is large next to n).
_MAX_OVERLAP = 24
_TAIL = 1e-15


def shared_positions(knn_a: np.ndarray, knn_b: np.ndarray) -> np.ndarray:
    """For each entry of A's lists, its position in B's list of the same row, or −1 if absent.

    Parameters
    ----------
    knn_a, knn_b : (m, k) lists, each row of distinct items.

    Returns
    -------
    (m, k) int64. One sort per row, O(k·log k), of the codes item·2k + column: a shared
    item shows up as two neighbouring codes with the same item, A's column first.
    """
    m, k = knn_a.shape
    width = 2 * k
    code = np.concatenate([knn_a, knn_b], axis=1).astype(np.int64) * width + np.arange(width)
    code.sort(axis=1)
    col = code % width
    rows, cols = np.nonzero(code[:, 1:] // width == code[:, :-1] // width)
    pos = np.full((m, k), -1, dtype=np.int64)
    pos[rows, col[rows, cols]] = col[rows, cols + 1] - k
    return pos


def increasing_run(pos: np.ndarray) -> np.ndarray:
    """Length of the longest increasing subsequence of each row's entries ≥ 0 (patience sorting, all rows at once).

    Parameters
    ----------
    pos : (m, k) int array of values in [−1, k); −1 entries are skipped, the others distinct per row.

    Returns
    -------
    (m,) int64 lengths. O(m·k·log k): k steps, each a vectorised binary search.
    """
    m, k = pos.shape
    # tails[r, l] (flat, rows of k+1): the smallest last value of an increasing run of length l+1 so far;
    # k = none yet. Flat indices make each probe one 1-D gather.
    start = np.arange(m, dtype=np.int64) * (k + 1)
    tails = np.full(m * (k + 1), k, dtype=np.int64)
    length = np.zeros(m, dtype=np.int64)
    for c in range(k):
        x = pos[:, c]
        lo, hi = start.copy(), start + k
        for _ in range(k.bit_length()):  # first l in [0, k] with tails[l] ≥ x
            mid = (lo + hi) >> 1
            less = tails[mid] < x
            np.copyto(lo, mid + 1, where=less)
            np.copyto(hi, mid, where=~less)
        ok = x >= 0
        tails[lo[ok]] = x[ok]
        np.maximum(length, np.where(ok, lo - start + 1, 0), out=length)
    return length


def lcs_lengths(knn_a: np.ndarray, knn_b: np.ndarray) -> np.ndarray:
    """Per row, the length of the longest common subsequence of the two ordered k-lists.

    Parameters
    ----------
    knn_a, knn_b : (n, k) ordered neighbour lists (nearest first, self excluded).

    Returns
    -------
    (n,) int64 in [0, k].

    Notes
    -----
    The items of a list are distinct, so the LCS is the longest increasing
    subsequence of the B positions of A's items (Hunt–Szymanski): O(k·log k)
    per row instead of PRH's k×k dynamic programme.
    """
    n, k = knn_a.shape
    out = np.empty(n, dtype=np.int64)
    for rows in _knn.row_blocks(n, k):
        out[rows] = increasing_run(shared_positions(knn_a[rows], knn_b[rows]))
    return out


def lcs_knn(knn_a: np.ndarray, knn_b: np.ndarray) -> float:
    """LCS k-NN, (1/n) Σ_i LCS(list_A(i), list_B(i)) / k, in [0, 1].

    Notes
    -----
    PRH ``lcs_knn`` reports the mean length, in [0, k]: this value times k.
    """
    return float(lcs_lengths(knn_a, knn_b).mean() / knn_a.shape[1])


def _partitions(o: int, largest: int | None = None) -> Iterator[tuple[int, ...]]:
    """The partitions of o, parts non-increasing."""
    if o == 0:
        yield ()
        return
    for first in range(min(o, largest or o), 0, -1):
        for rest in _partitions(o - first, first):
            yield (first, *rest)


@functools.lru_cache(maxsize=None)
def mean_lis(o: int) -> float:
    """Exact mean length of the longest increasing subsequence of a uniform random permutation of o items.

    Notes
    -----
    By the Robinson–Schensted correspondence the LIS is the first row λ₁ of the
    shape λ ⊢ o, which has f_λ²/o! probability (f_λ by the hook-length formula),
    so the mean is Σ_λ λ₁ f_λ² / o!, summed exactly in integers.
    """
    total = 0
    fact = math.factorial(o)
    for lam in _partitions(o):
        conj = [sum(1 for part in lam if part > j) for j in range(lam[0])] if lam else []
        hooks = math.prod(lam[i] - j + conj[j] - i - 1 for i in range(len(lam)) for j in range(lam[i]))
        total += lam[0] * (fact // hooks) ** 2 if lam else 0
    return float(total / fact) if o else 0.0


def lcs_chance(n: int, k: int) -> float | None:
    """Exact mean of LCS k-NN when B's rows are randomly permuted, or None if k is too large next to n.

    Notes
    -----
    Under a uniform permutation, row i's relabelled B list is a uniformly
    random ordered k-tuple of the n−1 other items: its overlap o with A's list
    is hypergeometric, and the order of the shared items in B is uniform and
    independent of o, so the LCS is the LIS of a uniform o-permutation. Hence
    E = Σ_o pmf(o)·E[LIS_o]/k, the same for every row. Overlaps above 24 are
    not enumerated; None when they are not negligible (probability ≥ 1e-15).
    """
    o, pmf = _knn.hypergeometric_overlap(n, k)
    keep = o <= _MAX_OVERLAP
    if pmf[~keep].sum() >= _TAIL:
        return None
    return float(sum(p * mean_lis(int(v)) for v, p in zip(o[keep], pmf[keep])) / k)


def lcs_result(p: PairData, params: Params) -> MetricResult:
    """LCS k-NN of the pair (over k) with its exact chance level, and the permutation p-value as the settings ask."""
    check_k(p.k, p.n, _NAME, p.labels)
    A, B = p.neighbors("a")[:, :p.k], p.neighbors("b")[:, :p.k]
    return finish(p, SPEC, params, lcs_knn(A, B), chance=lcs_chance(p.n, p.k),
                  shown={"k": p.k, "distance": p.distance, "scale": "length/k"})


def _permutation_null(p: PairData, params: Params, perms: list[np.ndarray]) -> np.ndarray:
    """Relabel B's stored lists per permutation (order kept): O(n·k·log k), no new search."""
    A, B = p.neighbors("a")[:, :p.k], p.neighbors("b")[:, :p.k]
    return np.array([lcs_knn(A, _knn.relabel(B, perm)) for perm in perms], dtype=np.float64)


def _check(params: Params, n: int, d1: int, d2: int, k: int, labels: tuple[str, str]) -> None:
    check_k(k, n, _NAME, labels)


def _memory(n: int, d1: int, d2: int, params: Params) -> int:
    # Relabelled lists (int64); per block: the codes of both lists (2k int64), their columns, the two
    # item quotients compared, positions, tails and the comparison; the search's per-row vectors are small.
    return _knn.list_memory(n, params.get("k"), per_entry=8, block_per_entry=4 * 16 + 8 + 8 + 2)


SPEC = MetricSpec(
    _NAME, "LCS k-NN", (0.0, 1.0),
    "mean longest common subsequence of each item's two ordered k-neighbour lists, over k (PRH lcs_knn reports "
    "the mean length, this value × k)",
    lcs_result, work=Work(lists=True, ordered=True),
    chance="exact: Σ_o pmf(o)·E[LIS of a random o-permutation]/k, o hypergeometric; none when k is large next to n",
    permutation_null=_permutation_null, cheap_null=True, memory=_memory, check=_check)
