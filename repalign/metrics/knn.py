"""Neighbour-based metrics: mutual k-NN alignment (Huh et al. 2024) and its chance level."""

from __future__ import annotations

import numpy as np


def overlaps(knn_a: np.ndarray, knn_b: np.ndarray) -> np.ndarray:
    """|N_k^A(i) ∩ N_k^B(i)| for every row i.

    Parameters
    ----------
    knn_a, knn_b : (n, k) integer arrays of neighbour indices; each row holds
        k distinct indices (assumed already checked).

    Returns
    -------
    (n,) int64 array of overlap counts in [0, k].

    Notes
    -----
    Both rows are concatenated and sorted; since each list has distinct
    entries, a shared index shows up as two equal neighbours. O(n·k log k).
    """
    both = np.sort(np.concatenate([knn_a, knn_b], axis=1), axis=1)
    return np.count_nonzero(both[:, 1:] == both[:, :-1], axis=1)


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
