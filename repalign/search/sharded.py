"""A backend whose pass over the query rows runs in shards (one Dask task each on a cluster), same lists.

Every CPU backend has one part that is parallel over query rows and costs |rows|·n·d against the whole layer:
the exact search's FAISS product and certification (:class:`~.exact.ExactRows`), the approximate search's
final IVF scan over all rows (:class:`~.approx.IvfIndex`). :class:`ShardedSearch` hands that part to a
:class:`~.base.RowRunner`, which splits the n rows into contiguous ranges; what needs the whole layer at once
(validation, approximate search's training, nprobe tuning and measuring sample) stays with the caller. Each
shard computes its rows' lists with the same code against the same float32 copy, and a row's list does not
depend on which other rows share its shard (see :func:`repalign.neighbors.knn_of_rows` and
:func:`repalign.neighbors.faiss_path`), so the joined lists equal the unsharded ones.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from repalign.search.base import RowJob, RowRunner, Search

SHARD_MIN_ROWS = 100_000
"""Layers with at least this many rows are split when a run has more than one worker thread: below, one
search takes seconds to a minute and a shard's fixed cost (re-reading the layer, its float32 copy) is a
large share of it."""
SHARDS_PER_WORKER = 2
"""Shards per worker thread: two, so that a slow or late worker leaves the others half a shard to wait for,
not a whole one, while each shard still searches enough rows to outweigh reading the layer again."""
MIN_SHARD_ROWS = 64
"""No shard has fewer rows: a tiny shard is all fixed cost (the same lists, though)."""

Ranges = list[tuple[int, int]]


def shard_count(n: int, threads: int, min_rows: int = SHARD_MIN_ROWS) -> int:
    """How many shards a layer of n rows is searched in on a cluster of ``threads`` worker threads (1: whole)."""
    if n < min_rows or threads < 2:
        return 1
    return max(1, min(SHARDS_PER_WORKER * threads, n // MIN_SHARD_ROWS))


def shard_ranges(n: int, count: int) -> Ranges:
    """``count`` contiguous row ranges covering 0..n−1 in order, their sizes differing by at most one."""
    return [(n * s // count, n * (s + 1) // count) for s in range(count)]


class Shards:
    """A :class:`~.base.RowRunner` that splits the rows into ``count`` ranges, has ``run_ranges`` compute each
    range's lists (anywhere: a cluster's tasks), and joins them in row order."""

    def __init__(self, count: int, run_ranges: Callable[[RowJob, Ranges, str], list[tuple[np.ndarray, int]]]):
        self.count = count
        self.run_ranges = run_ranges
        self.runs = 0
        """Searches run so far (none when the lists came from the cache)."""

    def run(self, job: RowJob, n: int, label: str) -> tuple[np.ndarray, int]:
        self.runs += 1
        parts = self.run_ranges(job, shard_ranges(n, self.count), label)
        return np.concatenate([lists for lists, _ in parts]), sum(fallback for _, fallback in parts)


class RowSearch(Search, Protocol):
    """A backend whose query-row pass can be run by a :class:`~.base.RowRunner` (exact, approx, auto)."""

    def lists(self, X: np.ndarray, depth: int, distance: str, ordered: bool, label: str,
              runner: RowRunner | None = None) -> np.ndarray: ...


class ShardedSearch:
    """``inner`` (exact, approx or auto) with its query rows searched by ``runner``; the records, choices and
    notes stay ``inner``'s, which is what a run reports."""

    def __init__(self, inner: RowSearch, runner: RowRunner):
        self.inner = inner
        self.runner = runner
        self.notes = inner.notes  # the same list: what the search notes is the inner backend's

    @property
    def method(self) -> str:
        return str(getattr(self.inner, "method", "exact"))

    def lists(self, X: np.ndarray, depth: int, distance: str, ordered: bool, label: str) -> np.ndarray:
        return self.inner.lists(X, depth, distance, ordered, label, runner=self.runner)

    def describe(self) -> dict:
        return self.inner.describe()


def unsharded(search: Search) -> Search:
    """The backend a :class:`ShardedSearch` wraps (any other backend as it is)."""
    return search.inner if isinstance(search, ShardedSearch) else search
