"""The edit-knn metric: one minus the Levenshtein distance between each item's two ordered k-lists, over k."""

from __future__ import annotations

import numpy as np

from repalign.metrics import knn as _knn
from repalign.metrics.base import PairData, finish
from repalign.metrics.spec import MetricSpec, Params, Work
from repalign.results import MetricResult
from repalign.validation import check_k

_NAME = "edit-knn"


def levenshtein_rows(knn_a: np.ndarray, knn_b: np.ndarray) -> np.ndarray:
    """Per row, the Levenshtein distance between the two ordered lists (insert, delete, substitute: cost 1).

    Parameters
    ----------
    knn_a, knn_b : (m, k) integer lists.

    Returns
    -------
    (m,) int64 in [0, k].

    Notes
    -----
    The k×k dynamic programme, one table row at a time for all rows at once.
    Within a table row, cur[c] = min(t[c], cur[c−1] + 1) with t the
    substitution and deletion moves, which unrolls to c + min_{c' ≤ c}(t[c'] − c'):
    one cumulative minimum instead of a loop over c. O(m·k²).
    """
    m, k = knn_a.shape
    cols = np.arange(k + 1, dtype=np.int64)
    prev = np.broadcast_to(cols, (m, k + 1))
    t = np.empty((m, k + 1), dtype=np.int64)
    for r in range(1, k + 1):
        t[:, 0] = r
        np.minimum(prev[:, 1:] + 1, prev[:, :-1] + (knn_a[:, r - 1 : r] != knn_b), out=t[:, 1:])
        prev = np.minimum.accumulate(t - cols, axis=1) + cols
    return np.asarray(prev[:, k], dtype=np.int64)


def edit_knn(knn_a: np.ndarray, knn_b: np.ndarray) -> float:
    """Edit k-NN, 1 − (1/n) Σ_i Lev(list_A(i), list_B(i)) / k, in [0, 1].

    Parameters
    ----------
    knn_a, knn_b : (n, k) ordered neighbour lists (nearest first, self excluded).

    Notes
    -----
    PRH ``edit_distance_knn`` (same normalisation: the mean distance over k).
    """
    n, k = knn_a.shape
    total = 0
    for rows in _knn.row_blocks(n, k):
        total += int(levenshtein_rows(knn_a[rows], knn_b[rows]).sum())
    return (n * k - total) / (n * k)  # exact for the integer total


def edit_result(p: PairData, params: Params) -> MetricResult:
    """Edit k-NN of the pair; its chance level is known only from permutations."""
    check_k(p.k, p.n, _NAME, p.labels)
    A, B = p.neighbors("a")[:, :p.k], p.neighbors("b")[:, :p.k]
    return finish(p, SPEC, params, edit_knn(A, B), shown={"k": p.k, "distance": p.distance})


def _permutation_null(p: PairData, params: Params, perms: list[np.ndarray]) -> np.ndarray:
    """Relabel B's stored lists per permutation (order kept), then the k×k programme again: O(n·k²) each."""
    A, B = p.neighbors("a")[:, :p.k], p.neighbors("b")[:, :p.k]
    return np.array([edit_knn(A, _knn.relabel(B, perm)) for perm in perms], dtype=np.float64)


def _check(params: Params, n: int, d1: int, d2: int, k: int, labels: tuple[str, str]) -> None:
    check_k(k, n, _NAME, labels)


def _memory(n: int, d1: int, d2: int, params: Params) -> int:
    # Relabelled lists (int64); per block: t, the previous row, the cumulative minimum and its two
    # temporaries (int64), and the comparison.
    return _knn.list_memory(n, params.get("k"), per_entry=8, block_per_entry=5 * 8 + 1)


SPEC = MetricSpec(
    _NAME, "edit-distance k-NN", (0.0, 1.0),
    "one minus the mean Levenshtein distance between each item's two ordered k-neighbour lists, over k "
    "(PRH edit_distance_knn)",
    edit_result, work=Work(lists=True, ordered=True), permutation_null=_permutation_null, cheap_null=False,
    memory=_memory, check=_check)
