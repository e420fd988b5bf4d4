"""Two-sided intervals from bootstrap replicates, jackknife values or a standard error."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


def _z(q: float) -> float:
    return NormalDist().inv_cdf(q)


def jackknife_se(values: np.ndarray) -> float:
    """The jackknife standard error of leave-one-out values."""
    n = values.size
    return float(np.sqrt((n - 1) / n * np.sum((values - values.mean()) ** 2)))


def interval(estimate: float, method: str, confidence: float, *, replicates: np.ndarray | None = None,
             jack: np.ndarray | None = None, se: float | None = None) -> tuple[float, float]:
    """A two-sided interval (Efron & Tibshirani 1993).

    ``percentile``: quantiles of the replicates. ``basic``: 2θ̂ minus them.
    ``bca``: bias-corrected and accelerated (z₀ from the share of replicates
    below θ̂, acceleration from the jackknife). ``normal``: θ̂ ± z·SE with the
    SE from the bootstrap replicates, or from the jackknife when there are none, or ``se`` when given.
    """
    alpha = 1.0 - confidence
    lo_q, hi_q = alpha / 2, 1 - alpha / 2
    if method == "normal":
        if se is None:
            se = _resampling_se(replicates, jack)
        z = _z(hi_q)
        return estimate - z * se, estimate + z * se
    if replicates is None:
        raise ValueError(f"a {method} interval needs bootstrap replicates")
    r = np.sort(replicates)
    if method == "percentile":
        return float(np.quantile(r, lo_q)), float(np.quantile(r, hi_q))
    if method == "basic":
        return 2 * estimate - float(np.quantile(r, hi_q)), 2 * estimate - float(np.quantile(r, lo_q))
    if method == "bca":
        if jack is None:
            raise ValueError("a bca interval needs the jackknife values")
        return _bca(estimate, r, jack, lo_q, hi_q)
    raise ValueError(method)


def _resampling_se(replicates: np.ndarray | None, jack: np.ndarray | None) -> float:
    """The SD of the bootstrap replicates, or the jackknife SE when there are fewer than two."""
    if replicates is not None and replicates.size > 1:
        return float(np.std(replicates, ddof=1))
    if jack is None:
        raise ValueError("a normal interval needs a standard error, bootstrap replicates or jackknife values")
    return jackknife_se(jack)


def _bca(estimate: float, r: np.ndarray, jack: np.ndarray, lo_q: float, hi_q: float) -> tuple[float, float]:
    """The BCa interval from the sorted replicates ``r`` and the jackknife values (acceleration)."""
    share = float((np.count_nonzero(r < estimate) + 0.5 * np.count_nonzero(r == estimate)) / r.size)
    share = min(max(share, 0.5 / r.size), 1 - 0.5 / r.size)
    z0 = _z(share)
    d = jack.mean() - jack
    denom = 6.0 * np.sum(d**2) ** 1.5
    a = float(np.sum(d**3) / denom) if denom > 0 else 0.0
    qs = []
    for q in (lo_q, hi_q):
        zq = _z(q)
        qs.append(NormalDist().cdf(z0 + (z0 + zq) / (1 - a * (z0 + zq))))
    return float(np.quantile(r, qs[0])), float(np.quantile(r, qs[1]))
