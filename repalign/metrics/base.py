"""What every metric shares: the pair of inputs with its shared work, the metric spec, interval settings."""

from __future__ import annotations

import functools
import math
from typing import Callable, TypedDict

import numpy as np

from repalign import stats
from repalign.errors import InputError
from repalign.metrics import cka as _cka
from repalign.metrics import cka_bootstrap as _cka_bootstrap
from repalign.metrics import cka_jackknife as _jackknife
from repalign.metrics.spec import MetricSpec, Params
from repalign.results import MetricResult, UncertaintySettings
from repalign.seeds import Streams

# A bootstrap resample keeps each item with probability 1 − (1 − 1/n)^n ≥ 1 − 1/e. A row whose stored list
# keeps fewer than k items needs a deeper list, found by a search of its own (stats.resampling), which costs a
# pass over the layer. The stored depth makes that rare: at K = 30 for k = 10 it happened with probability
# 2.3·10⁻⁴ per row and resample, ~10⁴ searches at n = 10⁶; at this rate a million-row run expects a handful.
SHORT_LIST_RATE = 1e-7


@functools.lru_cache(maxsize=None)
def _bootstrap_depth(k: int) -> int:
    """The smallest K ≥ max(3k, k + 10) with P(Binomial(K, 1 − 1/e) < k) ≤ :data:`SHORT_LIST_RATE`."""
    keep = 1.0 - math.exp(-1.0)

    def short(K: int) -> float:
        return sum(math.exp(math.lgamma(K + 1) - math.lgamma(j + 1) - math.lgamma(K - j + 1)
                            + j * math.log(keep) + (K - j) * math.log1p(-keep)) for j in range(k))

    K = max(3 * k, k + 10)
    while short(K) > SHORT_LIST_RATE:
        K += 1
    return K


def list_depth(n: int, k: int, resamples: int) -> int:
    """Neighbours to store per item: k, or deeper when bootstrap replicates read past k (docs/formulas.md §6)."""
    return min(n - 1, _bootstrap_depth(k) if resamples else k)


def clamp(lo: float, hi: float, rng: tuple[float, float]) -> tuple[float, float]:
    """An interval cut to the metric's range."""
    return max(lo, rng[0]), min(hi, rng[1])


class ResultFields(TypedDict, total=False):
    """The optional fields of a :class:`~repalign.results.MetricResult` that a metric fills step by step."""

    chance: float | None
    null_sd: float | None
    z: float | None
    p_value: float
    p_method: str
    calibrated: float
    permutations: int
    ci_low: float
    ci_high: float
    ci_method: str
    ci_covers: str
    ci_reason: str


class PairData:
    """Two validated, preprocessed inputs and the work metrics share (computed once, on demand)."""

    def __init__(self, a: np.ndarray | None, b: np.ndarray | None, *, k: int, distance: str,
                 labels: tuple[str, str], uncertainty: UncertaintySettings | None = None,
                 progress: Callable[[str], None] | None = None, lists: dict[str, np.ndarray] | None = None,
                 cross: _cka.CrossStats | None = None,
                 counts: tuple[dict[str, int], dict[str, int]] | None = None, n: int | None = None,
                 ordered: bool = False):
        # lists/cross/counts: work done already (a sweep computes it once per layer); a and b may then be
        # None when neither intervals nor permutations need the arrays.
        self._a, self._b = a, b
        self.progress = progress or (lambda stage: None)
        if n is None:
            n = self.a.shape[0]
        self.n = n
        self.k = k
        self.distance = distance
        self.labels = labels
        self.u = uncertainty or UncertaintySettings(resamples=0, permutations=0)
        self.streams = Streams.from_seed(self.u.seed)
        self.depth = list_depth(self.n, k, self.u.resamples)
        self.ordered = ordered or self.depth > k
        """Whether the lists are in exact order (resamples read past k; LCS and edit distance read the order)."""
        self._lists: dict[str, np.ndarray] = dict(lists or {})
        self._norms: dict[str, np.ndarray] = {}
        self.counts = counts
        self._cross = cross
        self._cka_loo: tuple[np.ndarray, np.ndarray] | None = None
        self._cka_second: tuple[float, float, bool] | None = None
        self._cka_boot: tuple[np.ndarray, np.ndarray] | None = None
        self.notes: list[str] = []
        self.cache: dict = {}
        """A metric's own work on this pair, kept for its permutation null (keyed by the metric's name)."""

    @property
    def a(self) -> np.ndarray:
        """The first input (present unless the pair was built from precomputed work alone)."""
        if self._a is None:
            raise RuntimeError(f"{self.labels[0]}: this work needs the array, which was not kept")
        return self._a

    @property
    def b(self) -> np.ndarray:
        """The second input (present unless the pair was built from precomputed work alone)."""
        if self._b is None:
            raise RuntimeError(f"{self.labels[1]}: this work needs the array, which was not kept")
        return self._b

    # The streams under the names the metrics and benchmarks/coverage.py read.
    @property
    def boot_seed(self) -> np.random.SeedSequence:
        return self.streams.boot

    @property
    def perm_seed(self) -> np.random.SeedSequence:
        return self.streams.perm

    @property
    def pair_seed(self) -> np.random.SeedSequence:
        return self.streams.pair

    @property
    def null_seed(self) -> np.random.SeedSequence:
        return self.streams.null

    def _side(self, side: str) -> tuple[np.ndarray, str]:
        return (self.a, self.labels[0]) if side == "a" else (self.b, self.labels[1])

    def neighbors(self, side: str) -> np.ndarray:
        """Ordered neighbour lists of depth ``self.depth`` (the metric uses the first k)."""
        from repalign.neighbors import knn  # FAISS loads only when a metric searches

        if side not in self._lists:
            x, label = self._side(side)
            self.progress(f"searching {self.depth} nearest neighbours of {self.n} items in {label}")
            # Unless a metric reads the order, only the set of k neighbours matters, and only the set is certified.
            self._lists[side] = knn(x, self.depth, self.distance, label=label, ordered=self.ordered)
        return self._lists[side]

    def full_list(self, side: str, i: int, depth: int) -> np.ndarray:
        """Row i's ordered list to a given depth, for the rare resample that exhausts the stored one."""
        from repalign.neighbors import exact_knn
        from repalign.validation import row_norms

        x, _ = self._side(side)
        if side not in self._norms:
            self._norms[side] = row_norms(x)
        return exact_knn(x, depth, self.distance, rows=np.array([i]), norms=self._norms[side])[0]

    @property
    def cross(self) -> _cka.CrossStats:
        """The CKA sums of the pair (given, or computed on first use)."""
        if self._cross is None:
            self.progress("CKA cross-products")
            self._cross = _cka.cross_stats(self.a, self.b, per_row=self.u.resamples > 0)
        return self._cross

    @property
    def cka_loo(self) -> tuple[np.ndarray, np.ndarray]:
        """Leave-one-out values of (biased, unbiased) linear CKA, shared by both metrics."""
        if self._cka_loo is None:
            self.progress("CKA jackknife")
            self._cka_loo = _jackknife.jackknife(self.a, self.b, self.cross)
        return self._cka_loo

    @property
    def cka_boot(self) -> tuple[np.ndarray, np.ndarray]:
        """Bootstrap replicates of (biased, unbiased) linear CKA from the shared resample stream, both metrics'."""
        if self._cka_boot is None:
            self.progress(f"CKA: {self.u.resamples} bootstrap resamples")
            weights = stats.resample_weights(self.streams.boot, self.n, self.u.resamples)
            self._cka_boot = _cka_bootstrap.bootstrap(self.a, self.b, weights)
        return self._cka_boot

    @property
    def cka_second(self) -> tuple[float, float, bool]:
        """Second-order part of the CKA jackknife variance, (biased, unbiased, exact): cka_jackknife.second_order."""
        if self._cka_second is None:
            self.progress("CKA jackknife, second-order correction")
            st = self.cross
            biased, unbiased = _cka.ratio(_cka.biased_terms(st)), _cka.ratio(_cka.unbiased_terms(st))
            # An undefined estimator gets a NaN sum (its metric has no value, so never reads it); None would
            # make the other estimator's sum fail.
            values = (np.nan if biased is None else biased, np.nan if unbiased is None else unbiased)
            self._cka_second = _jackknife.second_order(self.a, self.b, st, values, self.cka_loo, self.streams.pair)
        return self._cka_second

    def subset(self, rows: np.ndarray) -> PairData:
        """The pair restricted to ``rows``, intervals and permutations off, its own work (searches) redone."""
        quiet = UncertaintySettings(resamples=0, permutations=0, seed=self.u.seed)
        return PairData(self.a[rows], self.b[rows], k=self.k, distance=self.distance, labels=self.labels,
                        uncertainty=quiet, ordered=self.ordered)

    def method(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        """The interval method the user asked for if this metric offers it, else the metric's default."""
        m = self.u.ci_method
        return default if m == "auto" or m not in allowed else m


def finish(p: PairData, spec: MetricSpec, params: Params, value: float | None, *, chance: float | None = None,
           null_sd: float | None = None, reason: str | None = None, interval: ResultFields | None = None,
           shown: dict | None = None) -> MetricResult:
    """A metric's result from its value and exact null: z, and the permutation p-value when the settings ask.

    ``interval``: the interval fields, when the metric has a validated interval and computed it; otherwise
    ``ci_reason`` says why there is none. ``shown``: the params to report (default: ``params``).
    """
    out: ResultFields = {"chance": chance, "null_sd": null_sd, "z": None}
    reported = dict(params if shown is None else shown)
    if value is None:
        return MetricResult(spec.name, None, reported, chance, spec.range, reason=reason, ci_reason="no value",
                            higher_is_better=spec.higher_is_better)
    out["z"] = stats.z_score(value, chance, null_sd)
    if interval:
        out.update(interval)
    elif p.u.resamples == 0:
        out["ci_reason"] = "intervals off (--resamples 0)"
    elif spec.covers is None:
        out["ci_reason"] = "no validated interval exists yet for this metric (benchmarks/coverage_results.md)"
    u = p.u
    if spec.permutation_null is not None and u.permutations > 0 and (spec.cheap_null or u.permutations_explicit):
        out.update(_null_fields(p, spec, params, value, chance, null_sd))
    return MetricResult(spec.name, value, reported, range=spec.range, higher_is_better=spec.higher_is_better, **out)


def _null_fields(p: PairData, spec: MetricSpec, params: Params, value: float, chance: float | None,
                 null_sd: float | None) -> ResultFields:
    """p-value and calibrated score: from the exact moments when they suffice, else from permutations."""
    assert spec.permutation_null is not None
    u = p.u
    if spec.moment_bound:
        bounded = bound_fields(spec, value, chance, null_sd, u.permutations)
        if bounded:
            p.progress(f"{spec.name}: p-value from the exact null moments (no permutations needed)")
            return bounded
        return _sequential(p, spec, params, value)
    p.progress(f"{spec.name}: {u.permutations} permutations")
    perms = list(stats.permutations(p.streams.perm, p.n, u.permutations))
    return permutation_fields(spec, value, spec.permutation_null(p, params, perms))


def _sequential(p: PairData, spec: MetricSpec, params: Params, value: float) -> ResultFields:
    """Permutations drawn from the pair's stream until Besag–Clifford's rule stops them or P are drawn."""
    assert spec.permutation_null is not None
    null_of, budget = spec.permutation_null, p.u.permutations
    p.progress(f"{spec.name}: up to {budget} permutations, stopping after {stats.STOP_AFTER} at least as "
               "large as the observed value")
    stream = stats.permutations(p.streams.perm, p.n, budget)
    sign = 1.0 if spec.higher_is_better else -1.0

    def draw(count: int) -> np.ndarray:
        return sign * null_of(p, params, [next(stream) for _ in range(count)])

    return sequential_fields(spec, value, stats.sequential_p_value(draw, sign * value, budget))


def group_jackknife_interval(p: PairData, spec: MetricSpec, params: Params, value: float,
                             covers: str) -> ResultFields:
    """estimate ± z·SE with the SE of the delete-a-group jackknife (stats.group_jackknife_se), cut to the range.

    The metric is recomputed through its own ``compute`` on the rows outside each group, so a neighbour
    metric searches afresh: G more evaluations of the metric (G = stats.GROUPS).
    """
    if p.n < 2 * stats.GROUPS:
        return {"ci_reason": f"the grouped jackknife needs at least {2 * stats.GROUPS} items (n = {p.n})"}
    p.progress(f"{spec.name}: grouped jackknife ({stats.GROUPS} recomputations)")
    try:
        values = stats.group_jackknife_values(lambda rows: spec.compute(p.subset(rows), params).value,
                                              stats.groups(p.streams.groups, p.n))
    except InputError as exc:  # e.g. k too large for the remaining rows
        return {"ci_reason": f"the grouped jackknife cannot recompute {spec.name} without a group: {exc}"}
    if not np.isfinite(values).all():
        return {"ci_reason": f"{spec.name} is undefined with one of the jackknife's groups removed"}
    se = stats.group_jackknife_se(values)
    lo, hi = clamp(*stats.interval(value, "normal", p.u.confidence, se=se), spec.range)
    return {"ci_low": lo, "ci_high": hi, "ci_method": "group-jackknife-normal", "ci_covers": covers}


def permutation_fields(spec: MetricSpec, value: float, null: np.ndarray) -> ResultFields:
    """p-value and calibrated score of an observed value against its permutation null, in the metric's direction."""
    sign = 1.0 if spec.higher_is_better else -1.0
    out: ResultFields = {"p_value": stats.p_value(sign * value, sign * null), "p_method": stats.METHOD_PERMUTATION,
                         "permutations": int(null.size)}
    if np.isfinite(spec.best):  # the calibrated score scales towards perfect alignment, so it needs that value
        out["calibrated"] = stats.calibrated_score(sign * value, sign * null, best=sign * spec.best)
    return out


def sequential_fields(spec: MetricSpec, value: float, run: stats.SequentialNull) -> ResultFields:
    """The fields of a Besag–Clifford run (``run`` in the metric's direction, i.e. negated for a distance).

    Stopped early: p = h/L and the calibrated score from the L values drawn (``permutations`` = L). Not
    stopped: the plain permutation p-value of all P, labelled "permutation".
    """
    sign = 1.0 if spec.higher_is_better else -1.0
    out = permutation_fields(spec, value, sign * run.null)
    if run.stopped:
        out["p_value"], out["p_method"] = run.p_value, stats.METHOD_SEQUENTIAL
    return out


def bound_fields(spec: MetricSpec, value: float, chance: float | None, null_sd: float | None,
                 permutations: int) -> ResultFields:
    """Cantelli's bound as the p-value when it is below 1/(P + 1), the best P permutations could show; else {}.

    The calibrated score then takes for τ Cantelli's bound on the null's 95% quantile, μ + σ·√19, at least the
    exact quantile, so the score is never above the one the exact permutation quantile gives.
    """
    if chance is None or null_sd is None:
        return {}
    sign = 1.0 if spec.higher_is_better else -1.0
    bound = stats.cantelli_bound(sign * value, sign * chance, null_sd)
    if bound is None or not bound < 1 / (permutations + 1):
        return {}
    out: ResultFields = {"p_value": bound, "p_method": stats.METHOD_BOUND, "permutations": 0}
    if np.isfinite(spec.best):
        tau = stats.cantelli_quantile(sign * chance, null_sd)
        out["calibrated"] = stats.calibrated_from_threshold(sign * value, tau, best=sign * spec.best)
    return out
