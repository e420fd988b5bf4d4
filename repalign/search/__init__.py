"""Neighbour-search backends behind one interface: exact (certified), approximate (recall measured), sharded."""

from __future__ import annotations

from repalign.search.approx import ApproxSearch, Record
from repalign.search.auto import AUTO_EXACT_SECONDS, GEMM_FLOPS, AutoSearch, predicted_exact_seconds
from repalign.search.base import Search
from repalign.search.exact import ExactSearch
from repalign.search.sharded import ShardedSearch, unsharded

SEARCH_METHODS = ("auto", "exact", "approx")
DEFAULT_RECALL = 0.95

__all__ = ["Search", "ExactSearch", "ApproxSearch", "AutoSearch", "ShardedSearch", "Record", "unsharded",
           "SEARCH_METHODS", "DEFAULT_RECALL", "AUTO_EXACT_SECONDS", "GEMM_FLOPS", "predicted_exact_seconds",
           "exact_for", "make"]


def exact_for(search: Search, shape: tuple[int, ...]) -> bool:
    """Whether ``search`` gives exact lists for a layer of this shape (only those may be cached)."""
    search = unsharded(search)
    if isinstance(search, ExactSearch):
        return True
    return isinstance(search, AutoSearch) and predicted_exact_seconds(shape[0], shape[1]) <= AUTO_EXACT_SECONDS


def make(method: str, recall: float, seed: int, k: int | None = None) -> Search:
    """A fresh backend for one input (each keeps its own records of what it searched); ``k``: the recall@k that
    nprobe is tuned to (None: recall at the whole depth searched)."""
    if method == "exact":
        return ExactSearch()
    if method == "approx":
        return ApproxSearch(recall=recall, seed=seed, k=k)
    return AutoSearch(recall=recall, seed=seed, k=k)
