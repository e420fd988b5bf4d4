"""k-NN graphs given as neighbour lists: the per-item overlap of two graphs."""

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
