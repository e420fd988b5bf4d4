"""The interface every neighbour-search backend implements, and how a backend's pass over all rows is run."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Search(Protocol):
    """A way of finding each row's nearest other rows.

    ``lists`` returns an (n, depth) int64 array: row i lists rows j ≠ i (self excluded by index), best first
    when ``ordered`` (or when the backend can only order them one way). ``describe`` says what ran, for the
    report; ``notes`` are lines for the report's notes (e.g. why auto chose a method).
    """

    notes: list[str]

    def lists(self, X: np.ndarray, depth: int, distance: str, ordered: bool, label: str) -> np.ndarray: ...

    def describe(self) -> dict: ...


class RowJob(Protocol):
    """The query-row-parallel part of a search: the lists of some rows against the whole layer.

    Called with the layer ``X``, its float32 copy ``Xf`` and float64 row norms (made from ``X`` by
    ``neighbors._float32_copy`` and ``validation.row_norms``) and the query rows; returns their lists and how
    many rows needed a fallback search. A job holds only small parameters (no layer), so it can be shipped.
    """

    @property
    def distance(self) -> str: ...

    def __call__(self, X: np.ndarray, Xf: np.ndarray, norms: np.ndarray, rows: np.ndarray
                 ) -> tuple[np.ndarray, int]: ...


class RowRunner(Protocol):
    """Runs a :class:`RowJob` over all n query rows (e.g. in shards on a cluster): the lists in row order and the
    fallback count summed."""

    def run(self, job: RowJob, n: int, label: str) -> tuple[np.ndarray, int]: ...
