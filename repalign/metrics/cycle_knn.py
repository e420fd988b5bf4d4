"""The cycle-knn metric: how often a step to a b-neighbour and back through a's lists returns home."""

from __future__ import annotations

import numpy as np

from repalign.metrics import knn as _knn
from repalign.metrics.base import PairData, finish
from repalign.metrics.spec import MetricSpec, Params, Work
from repalign.results import MetricResult
from repalign.validation import check_k

_NAME = "cycle-knn"


def cycle_knn(sorted_a: np.ndarray, knn_b: np.ndarray) -> float:
    """Cycle k-NN, (1/n) Σ_i 1[∃ j ∈ N_k^B(i) with i ∈ N_k^A(j)], in [0, 1].

    Parameters
    ----------
    sorted_a : (n, k) neighbour lists of A, each row sorted ascending (the order within a list does not matter).
    knn_b : (n, k) neighbour lists of B (self excluded).

    Notes
    -----
    Huh et al. 2024, PRH ``cycle_knn(feats_A, feats_B)``: from item i to its
    neighbours in B, and back to i through their neighbour lists in A. Not
    symmetric: swapping A and B walks the other way round. Each of the n·k
    questions "is i in A's list of j?" is a binary search in j's sorted list,
    all at once: O(n·k·log k), where PRH compares all k² pairs per row.
    """
    n, k = sorted_a.shape
    flat = sorted_a.ravel()
    base = knn_b.astype(np.int64) * k  # where j's sorted list starts in flat
    target = np.arange(n, dtype=np.int64)[:, None]
    lo, hi = np.zeros(base.shape, dtype=np.int64), np.full(base.shape, k - 1, dtype=np.int64)
    for _ in range((k - 1).bit_length()):  # first column of j's list holding a value ≥ i (or the last column)
        mid = (lo + hi) >> 1
        less = flat[base + mid] < target
        # Capped at the last column: there the answer is "not in the list" whatever the bound says.
        lo, hi = np.where(less, np.minimum(mid + 1, k - 1), lo), np.where(less, hi, mid)
    return float(np.count_nonzero((flat[base + lo] == target).any(axis=1)) / n)


def cycle_chance(knn_a: np.ndarray) -> float:
    """Exact mean of cycle k-NN when B's rows are randomly permuted.

    Parameters
    ----------
    knn_a : (n, k) neighbour lists of A.

    Notes
    -----
    Under a uniform permutation, row i's relabelled B list is a uniform
    k-subset of the n−1 other items, so with d_i the in-degree of i in A's
    k-NN graph (the items j whose A list holds i), row i fails to cycle with
    probability C(n−1−d_i, k)/C(n−1, k) = Π_{t<k} (1 − d_i/(n−1−t)). The chance
    level is the mean over i of one minus that, computed once per distinct
    in-degree, in logs.
    """
    n, k = knn_a.shape
    deg, count = np.unique(np.bincount(knn_a.ravel(), minlength=n), return_counts=True)
    frac = deg[:, None] / (n - 1.0 - np.arange(k))  # (distinct degrees, k)
    with np.errstate(divide="ignore"):
        log_miss = np.log1p(-np.minimum(frac, 1.0)).sum(axis=1)  # −inf: the list cannot avoid i's in-neighbours
    return float(np.dot(count, -np.expm1(log_miss)) / n)


def cycle_result(p: PairData, params: Params) -> MetricResult:
    """Cycle k-NN of the pair with its exact chance level, and the permutation p-value as the settings ask."""
    check_k(p.k, p.n, _NAME, p.labels)
    A, B = p.neighbors("a")[:, :p.k], p.neighbors("b")[:, :p.k]
    value = cycle_knn(np.sort(A, axis=1), B)
    return finish(p, SPEC, params, value, chance=cycle_chance(A), shown={"k": p.k, "distance": p.distance})


def _permutation_null(p: PairData, params: Params, perms: list[np.ndarray]) -> np.ndarray:
    """A's lists sorted once; each permutation relabels B's lists and searches A's: O(n·k·log k)."""
    sorted_a = np.sort(p.neighbors("a")[:, :p.k], axis=1)
    B = p.neighbors("b")[:, :p.k]
    return np.array([cycle_knn(sorted_a, _knn.relabel(B, perm)) for perm in perms], dtype=np.float64)


def _check(params: Params, n: int, d1: int, d2: int, k: int, labels: tuple[str, str]) -> None:
    check_k(k, n, _NAME, labels)


def _memory(n: int, d1: int, d2: int, params: Params) -> int:
    # A's sorted lists, the relabelled B lists, and the search's offsets, bounds, midpoints and comparisons.
    return _knn.list_memory(n, params.get("k"), per_entry=7 * 8 + 2)


SPEC = MetricSpec(
    _NAME, "cycle k-NN", (0.0, 1.0),
    "share of items i with some neighbour j in b whose neighbours in a include i (Huh et al. 2024, cycle_knn)",
    cycle_result, work=Work(lists=True),
    chance="exact: mean over items of 1 − C(n−1−d_i, k)/C(n−1, k), d_i = in-degree of i in a's k-NN graph",
    permutation_null=_permutation_null, cheap_null=True, memory=_memory, check=_check, symmetric=False,
    asymmetry="b's neighbours, then back through a's: ∃ j ∈ N_b(i) with i ∈ N_a(j); swap the inputs to reverse")
