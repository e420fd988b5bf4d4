"""The cka and cka-unbiased metrics: linear CKA with its exact null, jackknife interval and permutation test."""

from __future__ import annotations

import numpy as np

from repalign import stats
from repalign.errors import InputError
from repalign.metrics import cka as _cka
from repalign.metrics.base import COVERS, DEFAULT_CI, PairData, ResultFields, clamp
from repalign.results import MetricResult

# Delete-2 values of unbiased CKA need n − 2 ≥ 4; below 8 items the plain jackknife is used.
_MIN_CORRECTED = 8


def cka_biased_result(p: PairData) -> MetricResult:
    """Biased linear CKA of the pair (the RV coefficient)."""
    return _cka_result("cka", p, unbiased=False)


def cka_unbiased_result(p: PairData) -> MetricResult:
    """Unbiased linear CKA of the pair (needs 4 items)."""
    if p.n < 4:
        raise InputError(f"{p.labels[0]} and {p.labels[1]} hold {p.n} items, but cka-unbiased needs at least 4")
    return _cka_result("cka-unbiased", p, unbiased=True)


def _cka_result(name: str, p: PairData, unbiased: bool) -> MetricResult:
    st = p.cross
    terms = _cka.unbiased_terms(st) if unbiased else _cka.biased_terms(st)
    value = _cka.ratio(terms)
    if value is not None and not np.isfinite(value):  # cannot happen after validation's rescaling; never print it
        raise RuntimeError(f"{name} is not finite for this data")
    params = {"kernel": "linear", "estimator": "unbiased" if unbiased else "biased"}
    rng = (-1.0, 1.0) if unbiased else (0.0, 1.0)
    if value is None:
        side = p.labels[0] if not terms[1] > 0 else p.labels[1]
        what = "has no estimated variance" if unbiased else "has all rows identical (zero variance)"
        return MetricResult(name, None, params, None, rng, reason=f"{side} {what}; CKA is undefined",
                            ci_reason="no value")
    # Rounding can push a ratio of equal sums a hair past ±1.
    value = min(max(value, rng[0]), rng[1])
    if p.n >= 4:
        mean, sd = (stats.unbiased_cka_null if unbiased else stats.biased_cka_null)(st)
    else:  # the exact mean needs n ≥ 2, the variance n ≥ 4
        mean, sd = _cka.permutation_mean(st), None
    out: ResultFields = {"chance": mean, "null_sd": sd, "z": stats.z_score(value, mean, sd)}
    u = p.u
    if u.resamples > 0:
        out.update(_interval(name, p, value, rng, unbiased))
    else:
        out["ci_reason"] = "intervals off (--resamples 0)"
    if u.permutations > 0 and u.permutations_explicit:
        p.progress(f"{name}: {u.permutations} permutations")
        null = stats.cka_permutation_null(p.a, p.b, st, stats.permutations(p.streams.perm, p.n, u.permutations),
                                          unbiased=unbiased)
        out.update({"p_value": stats.p_value(value, null), "calibrated": stats.calibrated_score(value, null),
                    "permutations": u.permutations})
    return MetricResult(name, value, params, range=rng, **out)


def _interval(name: str, p: PairData, value: float, rng: tuple[float, float], unbiased: bool) -> ResultFields:
    """The jackknife-normal interval, its variance corrected for the second-order part when that is defined."""
    if p.n < 5:
        return {"ci_reason": f"the jackknife needs at least 5 items (n = {p.n})"}
    jack = p.cka_loo[1 if unbiased else 0]
    if not np.isfinite(jack).all():
        return {"ci_reason": "a leave-one-out value is undefined (an item carries all the variance)"}
    var = stats.jackknife_se(jack) ** 2
    method = "jackknife-normal"
    if p.method(name, ("jackknife",), DEFAULT_CI["cka"]) == "corrected" and p.n >= _MIN_CORRECTED:
        second = p.cka_second[1 if unbiased else 0]
        if np.isfinite(second) and var - second > 0:
            var, method = var - second, "jackknife-corrected-normal"
        else:
            p.notes.append(f"{name}: the jackknife's second-order correction is undefined for this "
                           "data, so the plain jackknife interval is given (conservative)")
    lo, hi = stats.interval(value, "normal", p.u.confidence, se=float(np.sqrt(var)))
    lo, hi = clamp(lo, hi, rng)
    return {"ci_low": lo, "ci_high": hi, "ci_method": method, "ci_covers": COVERS[name]}
