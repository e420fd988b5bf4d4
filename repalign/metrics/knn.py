"""Neighbour-based metrics: mutual k-NN alignment (Huh et al. 2024) and its chance level."""

from __future__ import annotations

import numpy as np

from repalign.stats.graphs import overlaps

__all__ = ["chance", "mutual_knn", "overlaps", "relabel"]


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
    """The neighbour lists of a side whose rows are permuted: row i of the result lists row perm[i]'s neighbours.

    Parameters
    ----------
    lists : (n, k) neighbour indices of the side as given.
    perm : (n,) permutation; row i of the permuted side is row perm[i] of the original.

    Returns
    -------
    (n, k) int64 array ``inv[lists[perm]]``, inv the inverse permutation: neighbour j of row perm[i] now sits
    at row inv[j]. O(n·k), no new search (docs/formulas.md §6).
    """
    inv = np.empty(perm.size, dtype=np.int64)
    inv[perm] = np.arange(perm.size)
    return inv[lists[perm]]
