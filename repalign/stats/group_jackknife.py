"""The delete-a-group jackknife: a standard error for any statistic that can be recomputed on a subset of rows."""

from __future__ import annotations

from typing import Callable

import numpy as np

GROUPS = 20
"""Groups the rows are split into; the statistic is recomputed G times, once without each group."""


def groups(seed: np.random.SeedSequence, n: int, count: int = GROUPS) -> np.ndarray:
    """A seeded random split of ``n`` rows into ``count`` groups of near-equal size: each row's group label.

    The sizes differ by at most one (a shuffled ``arange(n) % count``), so every deletion removes
    about n/G rows.
    """
    if not 2 <= count <= n:
        raise ValueError(f"{count} groups need at least {count} rows (n = {n})")
    labels = np.arange(n) % count
    np.random.default_rng(seed).shuffle(labels)
    return labels


def group_jackknife_values(theta: Callable[[np.ndarray], float | None], labels: np.ndarray) -> np.ndarray:
    """θ recomputed on the rows outside each group, in group order; ``theta`` takes sorted row indices.

    Rows stay in their original order, so a statistic that reads the order sees the same data minus
    the deleted rows. A value θ cannot be computed for is NaN (the caller decides what that means).
    """
    count = int(labels.max()) + 1
    out = np.empty(count, dtype=np.float64)
    for g in range(count):
        v = theta(np.flatnonzero(labels != g))
        out[g] = np.nan if v is None else v
    return out


def group_jackknife_se(values: np.ndarray) -> float:
    """The grouped jackknife SE, sqrt((G − 1)/G · Σ_g (θ_(g) − θ̄)²), from the G delete-a-group values.

    Parameters
    ----------
    values : (G,) the statistic recomputed with each group of rows removed
        (:func:`group_jackknife_values`).

    Returns
    -------
    The standard error of the statistic on all n rows.

    Notes
    -----
    The delete-d jackknife with the rows split into G disjoint groups of
    d ≈ n/G (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*,
    ch. 11: the delete-d jackknife and the jackknife's failure for
    non-smooth statistics). It estimates the variance of the full-data
    statistic, not its mean, so the interval is centred on the full-data
    estimate. With G fixed it costs G + 1 evaluations whatever n is, and
    needs nothing but the statistic itself. Known property: like the
    delete-1 jackknife, whose variance estimate is biased upwards (Efron &
    Stein 1981, Ann. Statist. 9:586), it tends to overestimate the variance,
    the more so for a non-smooth statistic (a median, or one built on
    nearest-neighbour sets, which change discretely when rows are removed)
    and for one whose first-order part vanishes (no shared signal), so the
    interval is conservative. Deleting rows also changes the target of a
    statistic whose expectation depends on n (docs/formulas.md §6); all G
    deletes share m ≈ n − n/G rows, so that shift moves θ̄, not the spread.
    Whether the spread is right for a given metric is for the coverage
    study to decide (benchmarks/coverage_results.md).
    """
    g = values.size
    return float(np.sqrt((g - 1) / g * np.sum((values - values.mean()) ** 2)))
