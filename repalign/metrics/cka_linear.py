"""The cka and cka-unbiased metrics: linear CKA with its exact null, jackknife interval and permutation test."""

from __future__ import annotations

import numpy as np

from repalign import stats
from repalign.errors import InputError
from repalign.metrics import cka as _cka
from repalign.metrics.base import PairData, ResultFields, clamp, finish
from repalign.metrics.spec import MetricSpec, Params, Work
from repalign.results import MetricResult

# Delete-2 values of unbiased CKA need n − 2 ≥ 4; below 8 items the plain jackknife is used.
_MIN_CORRECTED = 8
# The jackknife variance counts the second-order (degenerate) part of the variance twice, which made its
# intervals 1.34–1.50× too wide when the sides are unrelated; "corrected" subtracts the sum of squared
# delete-2 interactions (cka_jackknife.second_order). "jackknife" asks for the plain, conservative one.
# The bootstrap flavours (cka_bootstrap, docs/formulas.md §6.5) read one set of replicates shared by both
# estimators: tie-free (the pairs of copies of one item dropped) and degenerate-corrected (the linear part
# shrunk by the bootstrap's own estimate of its spurious second-order variance). "bootstrap" is the flavour
# the coverage study validated (benchmarks/coverage_results.md).
_JACKKNIFE = ("corrected", "jackknife")
_FLAVOURS = ("percentile", "basic", "bca", "normal")
_METHODS = (*_JACKKNIFE, "bootstrap", *_FLAVOURS)
# The textbook plug-in replicates (rows repeated) failed the coverage study: without shared signal they sat
# 29–340 true SDs above the estimate, and percentile, basic and BCa covered 0.000. The corrected replicates
# centre on the estimate and spread as it does: in the 2026-12-03 evening study (n = 256 to 16,384) every
# flavour covered like the default, percentile 0.925–0.985 with widths 0.92–1.10, so no flavour carries a
# warning and "bootstrap" gives percentile, the plainest.
_BOOTSTRAP = {"cka": "percentile", "cka-unbiased": "percentile"}
_COVERS = {"cka": "the mean of biased CKA over fresh samples of n items, at this n",
           "cka-unbiased": "the population value of CKA"}


def cka_biased_result(p: PairData, params: Params) -> MetricResult:
    """Biased linear CKA of the pair (the RV coefficient)."""
    return _cka_result("cka", p, unbiased=False)


def cka_unbiased_result(p: PairData, params: Params) -> MetricResult:
    """Unbiased linear CKA of the pair (needs 4 items)."""
    if p.n < 4:
        raise InputError(f"{p.labels[0]} and {p.labels[1]} hold {p.n} items, but cka-unbiased needs at least 4")
    return _cka_result("cka-unbiased", p, unbiased=True)


def _biased_null(p: PairData, params: Params, perms: list[np.ndarray]) -> np.ndarray:
    """One d1×d2 cross-product per permutation (only ‖XcᵀYc^π‖²_F and aᵀb^π change), batched."""
    return _permuter(p).values(perms, unbiased=False)


def _unbiased_null(p: PairData, params: Params, perms: list[np.ndarray]) -> np.ndarray:
    return _permuter(p).values(perms, unbiased=True)


def _permuter(p: PairData) -> stats.CkaPermuter:
    """The pair's batched permutation values, made once and shared by cka and cka-unbiased (same stream)."""
    if "cka-permuter" not in p.cache:
        p.cache["cka-permuter"] = stats.CkaPermuter(p.a, p.b, p.cross)
    permuter: stats.CkaPermuter = p.cache["cka-permuter"]
    return permuter


def _cka_result(name: str, p: PairData, unbiased: bool) -> MetricResult:
    st = p.cross
    terms = _cka.unbiased_terms(st) if unbiased else _cka.biased_terms(st)
    value = _cka.ratio(terms)
    if value is not None and not np.isfinite(value):  # cannot happen after validation's rescaling; never print it
        raise RuntimeError(f"{name} is not finite for this data")
    params = {"kernel": "linear", "estimator": "unbiased" if unbiased else "biased"}
    spec = SPECS[name]
    rng = spec.range
    if value is None:
        side = p.labels[0] if not terms[1] > 0 else p.labels[1]
        what = "has no estimated variance" if unbiased else "has all rows identical (zero variance)"
        return finish(p, spec, params, None, reason=f"{side} {what}; CKA is undefined")
    # Rounding can push a ratio of equal sums a hair past ±1.
    value = min(max(value, rng[0]), rng[1])
    if p.n >= 4:
        mean, sd = (stats.unbiased_cka_null if unbiased else stats.biased_cka_null)(st)
    else:  # the exact mean needs n ≥ 2, the variance n ≥ 4
        mean, sd = _cka.permutation_mean(st), None
    interval = _interval(name, p, value, rng, unbiased) if p.u.resamples > 0 else None
    return finish(p, spec, params, value, chance=mean, null_sd=sd, interval=interval)


def _interval(name: str, p: PairData, value: float, rng: tuple[float, float], unbiased: bool) -> ResultFields:
    """The interval the settings ask for: a jackknife (the default) or a bootstrap flavour."""
    method = p.method(name, _METHODS, _METHODS[0])
    if method in _JACKKNIFE:
        return _jackknife_interval(name, p, value, rng, unbiased, corrected=method == "corrected")
    return _bootstrap_interval(name, p, value, rng, unbiased, _BOOTSTRAP[name] if method == "bootstrap" else method)


def _bootstrap_interval(name: str, p: PairData, value: float, rng: tuple[float, float], unbiased: bool,
                        flavour: str) -> ResultFields:
    """A bootstrap interval from the tie-free, degenerate-corrected replicates (cka_bootstrap)."""
    if flavour == "bca" and p.n < 5:
        return {"ci_reason": f"the BCa acceleration needs the jackknife, which needs at least 5 items (n = {p.n})"}
    reps = p.cka_boot[1 if unbiased else 0]
    if not np.isfinite(reps).all():
        return {"ci_reason": "a bootstrap resample has a side with no (estimated) variance; CKA is undefined there"}
    jack = p.cka_loo[1 if unbiased else 0] if flavour == "bca" else None
    if jack is not None and not np.isfinite(jack).all():
        return {"ci_reason": "a leave-one-out value is undefined (an item carries all the variance)"}
    lo, hi = stats.interval(value, flavour, p.u.confidence, replicates=reps, jack=jack)
    lo, hi = clamp(lo, hi, rng)
    return {"ci_low": lo, "ci_high": hi, "ci_method": f"bootstrap-{flavour}", "ci_covers": _COVERS[name]}


def _jackknife_interval(name: str, p: PairData, value: float, rng: tuple[float, float], unbiased: bool,
                        corrected: bool) -> ResultFields:
    """The jackknife-normal interval, its variance corrected for the second-order part when asked and defined."""
    if p.n < 5:
        return {"ci_reason": f"the jackknife needs at least 5 items (n = {p.n})"}
    jack = p.cka_loo[1 if unbiased else 0]
    if not np.isfinite(jack).all():
        return {"ci_reason": "a leave-one-out value is undefined (an item carries all the variance)"}
    var = stats.jackknife_se(jack) ** 2
    method = "jackknife-normal"
    if corrected and p.n >= _MIN_CORRECTED:
        second = p.cka_second[1 if unbiased else 0]
        if np.isfinite(second) and var - second > 0:
            var, method = var - second, "jackknife-corrected-normal"
        else:
            p.notes.append(f"{name}: the jackknife's second-order correction is undefined for this "
                           "data, so the plain jackknife interval is given (conservative)")
    lo, hi = stats.interval(value, "normal", p.u.confidence, se=float(np.sqrt(var)))
    lo, hi = clamp(lo, hi, rng)
    return {"ci_low": lo, "ci_high": hi, "ci_method": method, "ci_covers": _COVERS[name]}


def _memory(n: int, d1: int, d2: int, params: Params) -> int:
    # The cross-product and its centred copy (float64); with permutations, the centred inputs and one batch
    # of permuted copies of Y with their cross-products (stats.CkaPermuter).
    batch = stats.CkaPermuter.batch_size(n, d2)
    return 8 * d1 * d2 * 2 + 8 * n * (d1 + d2) + 8 * batch * d2 * (n + d1)


_WORK = Work(cross=True, arrays=True)
SPECS = {
    "cka": MetricSpec(
        "cka", "linear CKA", (0.0, 1.0),
        "centred kernel alignment with linear kernels, biased HSIC (Kornblith et al. 2019)", cka_biased_result,
        work=_WORK, chance="exact: permutation mean and SD in closed form (RV coefficient)",
        permutation_null=_biased_null, moment_bound=True, covers=_COVERS["cka"], ci_methods=_METHODS,
        memory=_memory),
    "cka-unbiased": MetricSpec(
        "cka-unbiased", "unbiased linear CKA", (-1.0, 1.0),
        "linear CKA with the unbiased HSIC estimator (Song et al. 2012)", cka_unbiased_result,
        work=_WORK, chance="exact: 0, with the permutation SD in closed form",
        permutation_null=_unbiased_null, moment_bound=True, covers=_COVERS["cka-unbiased"],
        ci_methods=_METHODS, memory=_memory),
}
