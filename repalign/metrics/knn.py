"""Neighbour-based metrics: mutual k-NN alignment (Huh et al. 2024), its chance level, and shared list helpers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from repalign.stats.graphs import overlaps

__all__ = ["chance", "hypergeometric_overlap", "list_memory", "mutual_knn", "overlaps", "relabel", "row_blocks"]

# Rows per block in the k×k and sort-based per-row work: about 2^20 list entries, so temporaries stay near
# 8 MB each whatever n is.
_BLOCK_ENTRIES = 1 << 20
# k assumed by a memory estimate when the engine does not pass the global k in the params.
_ASSUMED_K = 10


def mutual_knn(knn_a: np.ndarray, knn_b: np.ndarray) -> float:
    """Mutual k-NN alignment, (1/n) Σ_i |N_k^A(i) ∩ N_k^B(i)| / k, in [0, 1].

    Parameters
    ----------
    knn_a, knn_b : (n, k) neighbour lists (self excluded), same n and k.

    Notes
    -----
    Huh et al. 2024, "The Platonic Representation Hypothesis", ``mutual_knn``.
    Only comparable between runs with equal n and k: its chance level
    k/(n−1) (:func:`chance`) falls as n grows.
    """
    k = knn_a.shape[1]
    return float(overlaps(knn_a, knn_b).sum() / (knn_a.shape[0] * k))


def chance(n: int, k: int) -> float:
    """Exact mean of mutual k-NN when the rows of one side are randomly permuted: k/(n−1).

    Each overlap is hypergeometric: k of the n−1 other items drawn, k of them marked.
    """
    return k / (n - 1)


def relabel(lists: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """B's neighbour lists after permuting B's rows: row i becomes π⁻¹(N_B(π(i))).

    Parameters
    ----------
    lists : (n, k) neighbour lists of B (self excluded, in order).
    perm : (n,) permutation π of range(n); row i of the permuted B is row π(i) of B.

    Returns
    -------
    (n, k) int64 lists of the permuted B, in the same order (no new search): O(n·k).
    """
    perm = np.asarray(perm, dtype=np.int64)
    inv = np.empty(perm.size, dtype=np.int64)
    inv[perm] = np.arange(perm.size)
    return inv[lists[perm]]


def hypergeometric_overlap(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distribution of |N^A(i) ∩ N^B(i)| when B's rows are randomly permuted.

    Under a uniform permutation, row i's relabelled B list is a uniform k-subset
    of the n−1 other items, so its overlap with A's k-list is hypergeometric
    (population n−1, k marked, k drawn).

    Returns
    -------
    o : the possible overlaps, max(0, 2k−(n−1)) … k.
    pmf : their probabilities (float64, summing to 1).

    Notes
    -----
    Built from the ratio pmf(o+1)/pmf(o) = (k−o)² / ((o+1)(n−1−2k+o+1)) in logs
    and normalised, so no large binomial or lgamma difference loses digits.
    """
    lo = max(0, 2 * k - (n - 1))
    o = np.arange(lo, k + 1)
    step = 2 * np.log(k - o[:-1]) - np.log(o[:-1] + 1.0) - np.log(n - 1 - 2 * k + o[:-1] + 1.0)
    logw = np.concatenate([[0.0], np.cumsum(step)])
    w = np.exp(logw - logw.max())
    return o, w / w.sum()


def row_blocks(n: int, k: int) -> Iterator[slice]:
    """Consecutive row slices of about 2^20 list entries each, for per-row work on n×k temporaries."""
    step = max(1, _BLOCK_ENTRIES // max(k, 1))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def list_memory(n: int, k: int | None, per_entry: int, block_per_entry: int = 0) -> int:
    """Bytes a list metric needs: ``per_entry`` bytes per n·k entry plus ``block_per_entry`` per block entry.

    ``k`` None: the engine did not pass it; the default k is assumed.
    """
    k = _ASSUMED_K if k is None else k
    block = min(n * k, max(_BLOCK_ENTRIES, k))
    return per_entry * n * k + block_per_entry * block + 8 * n

