"""``--search auto``: exact while its predicted time is small, approximate above."""

from __future__ import annotations

import numpy as np

from repalign.search.approx import ApproxSearch
from repalign.search.base import RowRunner
from repalign.search.exact import ExactSearch

# Float32 GEMM rate of the 2-core development machine, measured once (numpy sgemm and faiss.knn both
# ~1.0e11 flop/s on 4096×8192×768). Exact search costs at least the 2·n²·d flops of the all-pairs product.
GEMM_FLOPS = 1.0e11
# Above this predicted exact time, auto searches approximately (documented in the README).
AUTO_EXACT_SECONDS = 60.0


def predicted_exact_seconds(n: int, d: int) -> float:
    """The floor of exact search's time: the all-pairs product at this machine's GEMM rate."""
    return 2.0 * n * n * d / GEMM_FLOPS


class AutoSearch:
    """Chooses per layer, from its shape: exact (certified) below the threshold, approximate above."""

    method = "auto"

    def __init__(self, recall: float = 0.95, seed: int = 0, k: int | None = None):
        self.exact = ExactSearch()
        self.approx = ApproxSearch(recall=recall, seed=seed, k=k)
        self.notes: list[str] = []
        self.chosen: dict[str, str] = {}

    @property
    def records(self) -> dict:
        return self.approx.records

    def lists(self, X: np.ndarray, depth: int, distance: str, ordered: bool, label: str,
              runner: RowRunner | None = None) -> np.ndarray:
        n, d = X.shape
        seconds = predicted_exact_seconds(n, d)
        if seconds <= AUTO_EXACT_SECONDS:
            self.chosen[label] = "exact"
            return self.exact.lists(X, depth, distance, ordered, label, runner)
        if label not in self.chosen:
            self.notes.append(f"--search auto chose approximate search for {label}: exact search of {n}×{d} "
                              f"would take about {seconds:.0f} s here (> {AUTO_EXACT_SECONDS:g} s); "
                              "--search exact forces it")
        self.chosen[label] = "approx"
        return self.approx.lists(X, depth, distance, ordered, label, runner)

    def describe(self) -> dict:
        methods = set(self.chosen.values())
        return {"method": methods.pop() if len(methods) == 1 else "mixed", "chosen_by": "auto"}
