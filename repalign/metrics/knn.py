"""Neighbour-based metrics: mutual k-NN alignment (Huh et al. 2024) and its chance level."""

from __future__ import annotations

import numpy as np

from repalign.stats.graphs import overlaps

__all__ = ["chance", "mutual_knn", "overlaps"]


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
