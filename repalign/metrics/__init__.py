"""Metric registry: names → functions and parameters, plus the shared per-pair work they draw on."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from repalign import nulls as _nulls
from repalign import stats as _stats
from repalign.errors import InputError, UsageError
from repalign.metrics import cka as _cka
from repalign.metrics import knn as _knn
from repalign.results import MetricResult, UncertaintySettings
from repalign.validation import check_k

COVERS = {
    "mknn": "the mean of mknn over fresh samples of n items, at this n and k",
    "cka": "the mean of biased CKA over fresh samples of n items, at this n",
    "cka-unbiased": "the population value of CKA",
}
CI_METHODS = ("auto", "percentile", "basic", "bca", "normal", "ij", "jackknife")


def list_depth(n: int, k: int, resamples: int) -> int:
    """Neighbours to store per item: k, or deeper when bootstrap replicates read past k (docs/formulas.md §6)."""
    return min(n - 1, max(3 * k, k + 10) if resamples else k)


class PairData:
    """Two validated, preprocessed inputs and the work metrics share (computed once, on demand)."""

    def __init__(self, a: np.ndarray, b: np.ndarray, *, k: int, distance: str, labels: tuple[str, str],
                 uncertainty: UncertaintySettings | None = None, progress: Callable[[str], None] | None = None,
                 lists: dict | None = None, cross: _cka.CrossStats | None = None, counts: tuple | None = None,
                 n: int | None = None):
        # lists/cross/counts: work done already (a sweep computes it once per layer); a and b may then be
        # None when neither intervals nor permutations need the arrays.
        self.a, self.b = a, b
        self.progress = progress or (lambda stage: None)
        self.n = a.shape[0] if n is None else n
        self.k = k
        self.distance = distance
        self.labels = labels
        self.u = uncertainty or UncertaintySettings(resamples=0, permutations=0)
        seq = np.random.SeedSequence(self.u.seed)
        # One stream for resamples and one for permutations, shared by every metric; a third picks the
        # rows of the CKA jackknife's second-order correction at large n, a fourth the random pairings
        # that calibrate mknn's IJ variance.
        self.boot_seed, self.perm_seed, self.pair_seed, self.null_seed = seq.spawn(4)
        self.depth = list_depth(self.n, k, self.u.resamples)
        self._lists: dict = dict(lists or {})
        self._norms: dict = {}
        self.counts = counts
        if cross is not None:
            self.__dict__["cross"] = cross
        self.notes: list[str] = []

    def _side(self, side: str) -> tuple[np.ndarray, str]:
        return (self.a, self.labels[0]) if side == "a" else (self.b, self.labels[1])

    def neighbors(self, side: str) -> np.ndarray:
        """Ordered neighbour lists of depth ``self.depth`` (the metric uses the first k)."""
        from repalign.neighbors import knn

        if side not in self._lists:
            x, label = self._side(side)
            self.progress(f"searching {self.depth} nearest neighbours of {self.n} items in {label}")
            # Without resamples only the set of k neighbours matters, and only the set is certified.
            self._lists[side] = knn(x, self.depth, self.distance, label=label, ordered=self.depth > self.k)
        return self._lists[side]

    def full_list(self, side: str, i: int, depth: int) -> np.ndarray:
        """Row i's ordered list to a given depth, for the rare resample that exhausts the stored one."""
        from repalign.neighbors import exact_knn
        from repalign.validation import row_norms

        x, _ = self._side(side)
        if side not in self._norms:
            self._norms[side] = row_norms(x)
        return exact_knn(x, depth, self.distance, rows=np.array([i]), norms=self._norms[side])[0]

    @cached_property
    def cross(self) -> _cka.CrossStats:
        self.progress("CKA cross-products")
        return _cka.cross_stats(self.a, self.b, per_row=self.u.resamples > 0)

    @cached_property
    def cka_loo(self) -> tuple[np.ndarray, np.ndarray]:
        """Leave-one-out values of (biased, unbiased) linear CKA, shared by both metrics."""
        self.progress("CKA jackknife")
        return _cka.jackknife(self.a, self.b, self.cross)

    @cached_property
    def cka_second(self) -> tuple[float, float, bool]:
        """Second-order part of the CKA jackknife variance, (biased, unbiased, exact); see cka.second_order."""
        self.progress("CKA jackknife, second-order correction")
        st = self.cross
        values = (_cka.ratio(_cka.biased_terms(st)), _cka.ratio(_cka.unbiased_terms(st)))
        return _cka.second_order(self.a, self.b, st, values, self.cka_loo, self.pair_seed)

    def method(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        m = self.u.ci_method
        return default if m == "auto" or m not in allowed else m


@dataclass(frozen=True)
class MetricSpec:
    """A metric as the CLI and the README know it."""

    name: str
    title: str
    range: tuple[float, float]
    description: str
    compute: Callable[[PairData], MetricResult]
    needs_neighbors: bool = False


def _clamp(lo: float, hi: float, rng: tuple[float, float]) -> tuple[float, float]:
    return max(lo, rng[0]), min(hi, rng[1])


def _mknn(p: PairData) -> MetricResult:
    check_k(p.k, p.n, "mknn", p.labels)
    k = p.k
    la, lb = p.neighbors("a"), p.neighbors("b")
    A, B = la[:, :k], lb[:, :k]
    value = _knn.mutual_knn(A, B)
    if p.counts is not None:
        mean, sd = _nulls.mknn_null_from_counts(*p.counts, p.n, k)
    else:
        mean, sd = _nulls.mknn_null(A, B)
    out = {"chance": mean, "null_sd": sd, "z": _nulls.z_score(value, mean, sd)}
    u = p.u
    if u.resamples > 0:
        rs = _stats.KnnResampler(la, lb, k, full_list=p.full_list)
        method = p.method("mknn", ("percentile", "basic", "bca", "normal", "ij"), DEFAULT_CI["mknn"])
        se, label = None, f"bootstrap-{method}"
        if method == "ij":
            p.progress(f"mknn: {u.resamples} bootstrap resamples, IJ variance and its null calibration")
            ij = _stats.knn_ij_variance(rs, p.boot_seed, u.resamples, p.null_seed, sd)
            reps, label = ij.replicates, "ij-calibrated-normal"
            if ij.variance > 0:
                se = float(np.sqrt(ij.variance))
            else:
                method, label = "normal", "bootstrap-normal"
                p.notes.append("mknn: neither the calibrated IJ variance nor the null variance is positive for this "
                               "data, so the interval uses the bootstrap SD")
        else:
            p.progress(f"mknn: {u.resamples} bootstrap resamples")
            reps = rs.bootstrap(_stats.resample_weights(p.boot_seed, p.n, u.resamples))
        jack = rs.jackknife() if method == "bca" else None
        if method not in ("normal", "ij"):
            # benchmarks/coverage_results.md: with strong signal the replicates sit well below the estimate.
            p.notes.append(f"mknn: {method} bootstrap intervals under-cover badly when the spaces agree strongly "
                           "(coverage study: as low as 0.01 at n=4096, where the default, ij, covered 0.88–1.00)")
        lo, hi = _stats.interval(value, "normal" if method == "ij" else method, u.confidence, replicates=reps,
                                 jack=jack, se=se)
        lo, hi = _clamp(lo, hi, (0.0, 1.0))
        out.update(ci_low=lo, ci_high=hi, ci_method=label, ci_covers=COVERS["mknn"])
    else:
        out["ci_reason"] = "intervals off (--resamples 0)"
    if u.permutations > 0:
        p.progress(f"mknn: {u.permutations} permutations")
        null = _stats.knn_permutation_null(A, B, _stats.permutations(p.perm_seed, p.n, u.permutations))
        out.update(p_value=_stats.p_value(value, null), calibrated=_stats.calibrated_score(value, null),
                   permutations=u.permutations)
    return MetricResult("mknn", value, {"k": k, "distance": p.distance}, range=(0.0, 1.0), **out)


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
        mean, sd = (_nulls.unbiased_cka_null if unbiased else _nulls.biased_cka_null)(st)
    else:  # the exact mean needs n ≥ 2, the variance n ≥ 4
        mean, sd = _cka.permutation_mean(st), None
    out = {"chance": mean, "null_sd": sd, "z": _nulls.z_score(value, mean, sd)}
    u = p.u
    if u.resamples > 0:
        if p.n < 5:
            out["ci_reason"] = f"the jackknife needs at least 5 items (n = {p.n})"
        else:
            jack = p.cka_loo[1 if unbiased else 0]
            if not np.isfinite(jack).all():
                out["ci_reason"] = "a leave-one-out value is undefined (an item carries all the variance)"
            else:
                var = _stats.jackknife_se(jack) ** 2
                method = "jackknife-normal"
                if p.method(name, ("jackknife",), DEFAULT_CI["cka"]) == "corrected" and p.n >= _MIN_CORRECTED:
                    second = p.cka_second[1 if unbiased else 0]
                    if np.isfinite(second) and var - second > 0:
                        var, method = var - second, "jackknife-corrected-normal"
                    else:
                        p.notes.append(f"{name}: the jackknife's second-order correction is undefined for this "
                                       "data, so the plain jackknife interval is given (conservative)")
                lo, hi = _stats.interval(value, "normal", u.confidence, se=float(np.sqrt(var)))
                lo, hi = _clamp(lo, hi, rng)
                out.update(ci_low=lo, ci_high=hi, ci_method=method, ci_covers=COVERS[name])
    else:
        out["ci_reason"] = "intervals off (--resamples 0)"
    if u.permutations > 0 and u.permutations_explicit:
        p.progress(f"{name}: {u.permutations} permutations")
        null = _stats.cka_permutation_null(p.a, p.b, st, _stats.permutations(p.perm_seed, p.n, u.permutations),
                                           unbiased=unbiased)
        out.update(p_value=_stats.p_value(value, null), calibrated=_stats.calibrated_score(value, null),
                   permutations=u.permutations)
    return MetricResult(name, value, params, range=rng, **out)


def _cka_biased(p: PairData) -> MetricResult:
    return _cka_result("cka", p, unbiased=False)


def _cka_unbiased(p: PairData) -> MetricResult:
    if p.n < 4:
        raise InputError(f"{p.labels[0]} and {p.labels[1]} hold {p.n} items, but cka-unbiased needs at least 4")
    return _cka_result("cka-unbiased", p, unbiased=True)


# The interval each metric uses unless --ci-method asks otherwise; benchmarks/coverage.py measures them
# (results in benchmarks/coverage_results.md).
# mknn: the bootstrap SD is 1.4–1.7× the true SD in every setting studied, and the bootstrap distribution
# can sit well below the estimate under strong signal, where percentile and basic intervals under-cover
# (0.875 and 0.65 at n=1024, d=768). "ij" is estimate ± z·(null-calibrated IJ SE, floored at the exact
# null SD), stats.knn_ij_variance; "normal" (± z·bootstrap SD) remains as the conservative choice.
# CKA: the jackknife variance counts the second-order (degenerate) part of the variance twice, which
# made its intervals 1.34–1.50× too wide when the sides are unrelated; "corrected" subtracts the sum of
# squared delete-2 interactions (cka.second_order). "jackknife" asks for the plain, conservative one.
DEFAULT_CI = {"mknn": "ij", "cka": "corrected"}
# Delete-2 values of unbiased CKA need n − 2 ≥ 4; below 8 items the plain jackknife is used.
_MIN_CORRECTED = 8

REGISTRY: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("mknn", "mutual k-NN", (0.0, 1.0),
                   "mean share of each item's k nearest neighbours that are the same in both spaces "
                   "(Huh et al. 2024); chance level k/(n−1)", _mknn, needs_neighbors=True),
        MetricSpec("cka", "linear CKA", (0.0, 1.0),
                   "centred kernel alignment with linear kernels, biased HSIC (Kornblith et al. 2019); "
                   "chance is its exact mean under random pairing", _cka_biased),
        MetricSpec("cka-unbiased", "unbiased linear CKA", (-1.0, 1.0),
                   "linear CKA with the unbiased HSIC estimator (Song et al. 2012); chance 0", _cka_unbiased),
    )
}
DEFAULT_METRICS = ("mknn", "cka")


def parse_metrics(values) -> list[str]:
    """Names from repeated and/or comma-separated options, in order, without repeats."""
    if values is None or isinstance(values, str):
        values = [values] if values else list(DEFAULT_METRICS)
    out: list[str] = []
    for v in values:
        for name in str(v).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in REGISTRY:
                raise UsageError(f"unknown metric '{name}' (choose from {', '.join(REGISTRY)})")
            if name not in out:
                out.append(name)
    if not out:
        raise UsageError("no metric selected")
    return out
