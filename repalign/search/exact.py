"""Exact, certified neighbour lists: FAISS in float32, then rescored and certified in float64 (neighbors.knn)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from repalign.search.base import RowRunner


class ExactSearch:
    """Today's search: the exact float64 neighbour lists whatever FAISS's rounding (see :func:`neighbors.knn`)."""

    method = "exact"

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.searched: list[str] = []

    def lists(self, X: np.ndarray, depth: int, distance: str, ordered: bool, label: str,
              runner: RowRunner | None = None) -> np.ndarray:
        """``runner``: how the query rows are searched (None: all at once here; :mod:`.sharded`: in shards)."""
        from repalign.neighbors import checked_norms, knn

        if label not in self.searched:
            self.searched.append(label)
        if runner is None:
            return knn(X, depth, distance, label=label, ordered=ordered)
        checked_norms(X, depth, distance, label)  # refused here as knn refuses it, before any shard runs
        return runner.run(ExactRows(depth, distance, ordered), X.shape[0], label)[0]

    def describe(self) -> dict:
        return {"method": "exact", "certified": True}


@dataclass(frozen=True)
class ExactRows:
    """The exact lists of some rows (a :class:`~.base.RowJob`): rows of :func:`neighbors.knn` with the same
    ``ordered``."""

    depth: int
    distance: str
    ordered: bool

    def __call__(self, X: np.ndarray, Xf: np.ndarray, norms: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, int]:
        from repalign.neighbors import knn_of_rows

        return knn_of_rows(X, Xf, rows, self.depth, self.distance, norms, self.ordered), 0
