"""p-values with few or no permutations: Cantelli's bound from exact null moments, Besag–Clifford stopping."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Besag & Clifford (1991) stop after h null values at least as large as the observed one. Their power study
# shows h = 10 loses almost nothing against the full budget at the usual levels, while a p-value near 0.5
# then costs about 20 permutations instead of P; the relative error of h/L is about 1/√h ≈ 0.3, ample for a
# p-value that is far from significant (a significant one never stops early: it has fewer than h exceedances).
STOP_AFTER = 10

METHOD_PERMUTATION = "permutation"
METHOD_SEQUENTIAL = "sequential permutation (Besag-Clifford)"
METHOD_BOUND = "exact-moment bound (Cantelli)"


def cantelli_bound(observed: float, mean: float | None, sd: float | None) -> float | None:
    """Upper bound on the exact permutation tail P_π(T ≥ observed) from the null's mean and SD alone.

    Parameters
    ----------
    observed : float
        The observed statistic (larger = more extreme).
    mean, sd : float or None
        The exact mean and standard deviation of T over all n! pairings.

    Returns
    -------
    float or None
        σ²/(σ² + t²) with t = observed − mean; None when the bound says nothing (t ≤ 0, a moment unknown,
        σ = 0) or is not a positive number.

    Notes
    -----
    Cantelli's (one-sided Chebyshev) inequality, P(T − μ ≥ t) ≤ σ²/(σ² + t²) for t > 0, holds for any
    distribution with that mean and variance, so it holds for the uniform distribution of T over the n!
    permutations: the bound is never below the exact permutation p-value (tests/test_pvalues.py checks it
    against every permutation at n ≤ 8). It needs no permutation at all. The moments carry rounding of order
    1e-16 relative; the bound is used only when t is many SDs, where that moves it by far less than its size.
    """
    if mean is None or sd is None or not sd > 0:
        return None
    t = observed - mean
    if not t > 0:
        return None
    bound = sd * sd / (sd * sd + t * t)
    return bound if bound > 0 and math.isfinite(bound) else None


def cantelli_quantile(mean: float, sd: float, alpha: float = 0.05) -> float:
    """An upper bound μ + σ·√((1 − α)/α) on the (1 − α) quantile of any distribution with mean μ and SD σ.

    Notes
    -----
    Cantelli's inequality with t = σ√((1−α)/α) gives P(T ≥ μ + t) ≤ σ²/(σ² + t²) = α, so at least 1 − α of
    the mass lies below μ + t. Used for the calibrated score when no permutation ran.
    """
    return mean + sd * math.sqrt((1 - alpha) / alpha)


@dataclass(frozen=True)
class SequentialNull:
    """The outcome of a Besag–Clifford run: its p-value, the null values drawn, whether it stopped early."""

    p_value: float
    null: np.ndarray
    """The L null values drawn, in the order drawn (L = ``null.size``)."""
    stopped: bool
    """True when h exceedances were seen before the budget ran out (p = h/L); else p = (1 + g)/(P + 1)."""


def sequential_p_value(draw: Callable[[int], np.ndarray], observed: float, budget: int, *,
                       stop_after: int = STOP_AFTER, batch: int = 8) -> SequentialNull:
    """Permutation p-value that stops once ``stop_after`` null values ≥ ``observed`` have been drawn.

    Parameters
    ----------
    draw : callable
        ``draw(m)`` returns the next m null values of one fixed random stream (larger = more extreme).
    observed : float
        The observed statistic.
    budget : int
        P, the most permutations to draw (≥ 1).
    stop_after : int
        h of Besag & Clifford (:data:`STOP_AFTER`).
    batch : int
        Values asked of ``draw`` at a time (so that a batched GEMM serves several); the result does not
        depend on it, as the stopping point is found inside the batch.

    Returns
    -------
    SequentialNull
        p = h/L when the h-th exceedance came at draw L; else, after all P draws with g < h exceedances,
        p = (1 + g)/(P + 1), the plain permutation p-value.

    Notes
    -----
    Besag & Clifford (1991), "Sequential Monte Carlo p-values", Biometrika 78(2): 301–304. Under the null
    the observed value and the draws are exchangeable, and this p-value satisfies P(p ≤ α) ≤ α for every α
    (ties count as exceedances, which only makes it larger). The expected number of draws is at most
    about h/p, so a run whose p-value is far from significant stops after a few dozen permutations.
    """
    if budget < 1:
        raise ValueError(f"the permutation budget must be at least 1, got {budget}")
    drawn: list[np.ndarray] = []
    seen, count = 0, 0
    while count < budget:
        values = np.asarray(draw(min(batch, budget - count)), dtype=np.float64)
        hits = np.flatnonzero(values >= observed)
        if seen + hits.size >= stop_after:
            cut = int(hits[stop_after - seen - 1]) + 1  # the draw that brought the h-th exceedance
            drawn.append(values[:cut])
            null = np.concatenate(drawn)
            return SequentialNull(stop_after / null.size, null, True)
        seen += hits.size
        count += values.size
        drawn.append(values)
    return SequentialNull((1 + seen) / (budget + 1), np.concatenate(drawn), False)
