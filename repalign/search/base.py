"""The interface every neighbour-search backend implements."""

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
