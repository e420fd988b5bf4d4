"""The jaccard metric: mean Jaccard index of each item's two k-neighbour sets."""

from __future__ import annotations

import numpy as np

from repalign.metrics import knn as _knn
from repalign.metrics.base import PairData, finish
from repalign.metrics.spec import MetricSpec, Params, Work
from repalign.results import MetricResult
from repalign.stats.graphs import overlaps
from repalign.validation import check_k

_NAME = "jaccard"


def jaccard_knn(knn_a: np.ndarray, knn_b: np.ndarray) -> float:
    """Jaccard k-NN, (1/n) Σ_i |N^A(i) ∩ N^B(i)| / |N^A(i) ∪ N^B(i)| = (1/n) Σ_i o_i/(2k − o_i), in [0, 1].

    Parameters
    ----------
    knn_a, knn_b : (n, k) neighbour lists (self excluded), same n and k.

    Notes
    -----
    PU ``jaccard``. A monotone per-row transform of the mutual k-NN overlap,
    stricter for partial overlaps. O(n·k·log k).
    """
    k = knn_a.shape[1]
    o = overlaps(knn_a, knn_b)
    return float(np.mean(o / (2.0 * k - o)))


def jaccard_chance(n: int, k: int) -> float:
    """Exact mean of Jaccard k-NN when B's rows are randomly permuted.

    Notes
    -----
    Each overlap is hypergeometric (population n−1, k marked, k drawn;
    :func:`repalign.metrics.knn.hypergeometric_overlap`), so the mean is
    Σ_o pmf(o)·o/(2k − o); it depends on n and k only.
    """
    o, pmf = _knn.hypergeometric_overlap(n, k)
    return float(np.dot(pmf, o / (2.0 * k - o)))


def jaccard_result(p: PairData, params: Params) -> MetricResult:
    """Jaccard k-NN of the pair with its exact chance level, and the permutation p-value as the settings ask."""
    check_k(p.k, p.n, _NAME, p.labels)
    A, B = p.neighbors("a")[:, :p.k], p.neighbors("b")[:, :p.k]
    return finish(p, SPEC, params, jaccard_knn(A, B), chance=jaccard_chance(p.n, p.k),
                  shown={"k": p.k, "distance": p.distance})


def _permutation_null(p: PairData, params: Params, perms: list[np.ndarray]) -> np.ndarray:
    """Relabel B's stored lists per permutation: O(n·k·log k), no new search."""
    A, B = p.neighbors("a")[:, :p.k], p.neighbors("b")[:, :p.k]
    return np.array([jaccard_knn(A, _knn.relabel(B, perm)) for perm in perms], dtype=np.float64)


def _check(params: Params, n: int, d1: int, d2: int, k: int, labels: tuple[str, str]) -> None:
    check_k(k, n, _NAME, labels)


def _memory(n: int, d1: int, d2: int, params: Params) -> int:
    # Relabelled lists; both lists side by side and their sorted copy (int64); the comparison; per-row ratios.
    return _knn.list_memory(n, params.get("k"), per_entry=8 + 16 + 16 + 2) + 16 * n


SPEC = MetricSpec(
    _NAME, "Jaccard k-NN", (0.0, 1.0),
    "mean Jaccard index |∩|/|∪| of each item's k-neighbour sets in the two spaces (PU jaccard)",
    jaccard_result, work=Work(lists=True),
    chance="exact: Σ_o pmf(o)·o/(2k−o), o hypergeometric (n−1 items, k marked, k drawn)",
    permutation_null=_permutation_null, cheap_null=True, memory=_memory, check=_check)
