"""Scoring one pair of representations: every layer pair, then each metric's best pair with its full uncertainty."""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from repalign import stats as _stats
from repalign.engine.representation import Representation, cross, gram_numerators, gram_route_pays
from repalign.metrics import Choice, PairData, list_depth
from repalign.metrics import cka as _cka
from repalign.metrics.base import ResultFields, permutation_fields, sequential_fields
from repalign.metrics.spec import MetricSpec
from repalign.options import Options
from repalign.results import MetricResult, Sweep, UncertaintySettings
from repalign.seeds import Streams
from repalign.validation import check_k

# Default permutations behind a best-over-layers p-value: each costs La·n·k table lookups (about 20 ms for
# 13×13 layers at n = 5000), so 1000 would cost more than the sweep's searches; 200 resolve p down to 0.005.
SWEEP_PERMUTATIONS = 200

Cells = dict[str, list[list[MetricResult]]]
"""Choice id → La×Lb results."""


def _silent(stage: str) -> None:
    """The progress callback when nobody listens."""


@dataclass
class _Job:
    """What every step of scoring one (a, b) pair needs: the two sides, the options and the shared work."""

    ra: Representation
    rb: Representation
    options: Options
    u: UncertaintySettings
    """The run's uncertainty settings (a sweep's default permutation count already applied)."""
    progress: Callable[[str], None]
    timing: dict
    n: int = 0
    depth: int = 0
    shared: dict = field(default_factory=dict)
    """One PairData per layer pair whose full result is computed, so metrics with the same best pair share it."""

    @property
    def choices(self) -> tuple[Choice, ...]:
        return self.options.metrics

    def needs(self, what: str) -> bool:
        return self.options.works(what)

    @property
    def pairs(self) -> int:
        return len(self.ra) * len(self.rb)

    def lists(self, i: int, j: int) -> dict:
        if not self.needs("lists"):
            return {}
        o, ordered = self.options, self.needs("ordered")
        return {"a": self.ra.lists(i, self.depth, o.distance, o.k, ordered),
                "b": self.rb.lists(j, self.depth, o.distance, o.k, ordered)}

    def counts(self, i: int, j: int) -> tuple | None:
        if not self.needs("lists"):
            return None
        o, ordered = self.options, self.needs("ordered")
        return (self.ra.counts(i, o.k, self.depth, o.distance, ordered),
                self.rb.counts(j, o.k, self.depth, o.distance, ordered))


class _LayerPairs:
    """The layer pairs of one job as a max-over-pairs null sees them (:class:`repalign.metrics.spec.LayerPairs`)."""

    def __init__(self, job: _Job, defined: set[tuple[int, int]]):
        self.job = job
        self.k = job.options.k
        self.shape = (len(job.ra), len(job.rb))
        self.defined = defined

    def lists(self, side: str, i: int) -> np.ndarray:
        o, r = self.job.options, self.job.ra if side == "a" else self.job.rb
        return r.lists(i, self.job.depth, o.distance, o.k, self.job.needs("ordered"))

    def pair(self, i: int, j: int) -> PairData:
        job, o = self.job, self.job.options
        quiet = UncertaintySettings(resamples=0, permutations=0, seed=job.u.seed)
        return PairData(job.ra.layer(i), job.rb.layer(j), k=o.k, distance=o.distance,
                        labels=(job.ra.name(i), job.rb.name(j)), uncertainty=quiet, lists=job.lists(i, j),
                        counts=job.counts(i, j), ordered=job.needs("ordered"))


def _compute(c: Choice, pd: PairData) -> MetricResult:
    """One metric's result, named by its id when the user gave parameters."""
    res = c.spec.compute(pd, c.values)
    return dataclasses.replace(res, label=c.id) if c.given else res


def score_pair(ra: Representation, rb: Representation, options: Options, u: UncertaintySettings | None = None,
               progress: Callable[[str], None] | None = None, timing: dict | None = None
               ) -> tuple[tuple[MetricResult, ...], Sweep | None]:
    """Score every (layer of a, layer of b) pair; full uncertainty for each metric's best pair.

    Returns the best pair's result per metric and, when either side has
    several layers, the whole matrix. With one layer on each side this is
    exactly ``compare`` of the two arrays.
    """
    job = _Job(ra, rb, options, u or options.uncertainty, progress or _silent, {} if timing is None else timing)
    gram = _per_layer_work(job)
    if job.pairs == 1:  # a plain comparison: no matrix, the full result is the only cell
        return tuple(_timed(job, c, functools.partial(_full, job, c, (0, 0))) for c in job.choices), None
    t = time.perf_counter()
    cells = _all_cells(job, gram)
    job.timing["pairs_seconds"] = time.perf_counter() - t
    best_at = {c.id: _best(c, cells[c.id]) for c in job.choices}
    results = tuple(_timed(job, c, functools.partial(_best_result, job, c, cells[c.id], best_at[c.id]))
                    for c in job.choices)
    sweep = None
    if ra.layered or rb.layered:
        sweep = Sweep(ra.labels, rb.labels, {c.id: tuple(tuple(row) for row in cells[c.id]) for c in job.choices},
                      best_at)
    return results, sweep


def _timed(job: _Job, c: Choice, compute: Callable[[], MetricResult]) -> MetricResult:
    t = time.perf_counter()
    result = compute()
    job.timing[f"{c.id}_seconds"] = time.perf_counter() - t
    return result


def _per_layer_work(job: _Job) -> bool:
    """Load, check k and each metric's shape limits, and do each layer's own work once (lists, CKA
    statistics); returns whether the CKA numerators take the Gram route."""
    t = time.perf_counter()
    ra, rb, o = job.ra, job.rb, job.options
    job.n = ra.layer(0).shape[0]
    d1, d2 = ra.layer(0).shape[1], rb.layer(0).shape[1]
    job.timing["load_seconds"] = time.perf_counter() - t
    _check_choices(job.choices, o.k, job.n, (d1, d2), (ra.source.where, rb.source.where))
    job.depth = list_depth(job.n, o.k, job.u.resamples)
    t = time.perf_counter()
    cross_sums = job.needs("cross")
    gram = cross_sums and gram_route_pays(ra, rb, job.n)
    for r, side in ((ra, "a"), (rb, "b")):
        for i in range(len(r)):
            if job.needs("lists"):
                job.progress(f"{side}: layer {i + 1}/{len(r)}: {job.depth} nearest neighbours of {job.n} items")
                r.counts(i, o.k, job.depth, o.distance, job.needs("ordered"))
            if cross_sums and job.pairs > 1:  # a single pair computes its CKA sums in one pass (cross_stats)
                r.cka(i, with_sxx=not gram)
    if job.pairs > 1:
        job.timing["layers_seconds"] = time.perf_counter() - t
    return gram


def _check_choices(choices: tuple[Choice, ...], k: int, n: int, dims: tuple[int, int],
                   labels: tuple[str, str]) -> None:
    """Refuse, before any work, a k or a parameter that the data's shape cannot serve."""
    knn = [c for c in choices if c.spec.work.lists]
    if knn:
        check_k(k, n, knn[0].name, labels)
    for c in choices:
        if c.spec.check is not None:
            c.spec.check(c.values, n, dims[0], dims[1], k, labels)


def _all_cells(job: _Job, gram: bool) -> Cells:
    """Every layer pair's value and exact null (no intervals, no permutations): the sweep's matrix."""
    ra, rb, o = job.ra, job.rb, job.options
    La, Lb = len(ra), len(rb)
    quiet = UncertaintySettings(resamples=0, permutations=0, seed=job.u.seed)
    cells: Cells = {c.id: [[] for _ in range(La)] for c in job.choices}
    cross_sums = job.needs("cross")
    arrays = job.needs("arrays")
    grams = gram_numerators(ra, rb, job.progress) if gram else None
    for i in range(La):
        xc = _cka.centred(ra.layer(i), ra.cka(i).mean) if cross_sums and grams is None else None
        for j in range(Lb):
            job.progress(f"scoring layer pair {i * Lb + j + 1}/{job.pairs}")
            pd = PairData(ra.layer(i) if arrays else None, rb.layer(j) if arrays else None, k=o.k,
                          distance=o.distance, labels=(ra.name(i), rb.name(j)), uncertainty=quiet,
                          lists=job.lists(i, j), cross=_cka_sums(job, i, j, grams, xc) if cross_sums else None,
                          counts=job.counts(i, j), n=job.n, ordered=job.needs("ordered"))
            for c in job.choices:
                cells[c.id][i].append(_compute(c, pd))
    return cells


def _cka_sums(job: _Job, i: int, j: int, grams: tuple | None, xc: np.ndarray | None) -> _cka.CrossStats:
    """The CKA sums of layer pair (i, j), from the Gram numerators or one cross-product."""
    if grams is None:
        return cross(job.ra, i, job.rb, j, xc=xc)
    sa, sb = job.ra.cka(i, with_sxx=False), job.rb.cka(j, with_sxx=False)
    sxy = 0.0 if sa.constant or sb.constant else float(grams[0][i, j])
    sxx = 0.0 if sa.constant else float(grams[1][i])
    syy = 0.0 if sb.constant else float(grams[2][j])
    return _cka.CrossStats(job.n, sxy, sxx, syy, sa.a, sb.a)


def _best(c: Choice, cells: list[list[MetricResult]]) -> tuple[int, int] | None:
    """Row-major first best of the defined values, in the metric's direction."""
    best: float | None = None
    where = None
    for i, row in enumerate(cells):
        for j, m in enumerate(row):
            if m.value is not None and (best is None or c.spec.better(m.value, best)):
                best, where = m.value, (i, j)
    return where


def _best_result(job: _Job, c: Choice, cells: list[list[MetricResult]], at: tuple[int, int] | None) -> MetricResult:
    if at is None:  # undefined everywhere: report the first pair's reason
        return cells[0][0]
    defined = {(i, j) for i, row in enumerate(cells) for j, r in enumerate(row) if r.value is not None}
    return _full(job, c, at, defined)


def _pair_data(job: _Job, at: tuple[int, int]) -> PairData:
    """The full PairData of one layer pair, made once and shared by the metrics whose best pair it is."""
    pd = job.shared.get(at)
    if pd is None:
        i, j = at
        u, o = job.u, job.options
        # Bonferroni over all pairs: if every pair's interval covers at once (probability ≥ the level), the
        # chosen pair's does too, whichever pair the data made best.
        level = 1.0 - (1.0 - u.confidence) / job.pairs
        ub = dataclasses.replace(u, confidence=level)
        if job.pairs > 1:  # a sweep's p-value is the max-over-pairs one (_max_p_value)
            ub = dataclasses.replace(ub, permutations=0, permutations_explicit=False)
        pd = job.shared[at] = PairData(job.ra.layer(i), job.rb.layer(j), k=o.k, distance=o.distance,
                                       labels=(job.ra.name(i), job.rb.name(j)), uncertainty=ub,
                                       progress=job.progress, lists=job.lists(i, j), counts=job.counts(i, j),
                                       ordered=job.needs("ordered"))
    return pd


def _full(job: _Job, c: Choice, at: tuple[int, int], defined: set | None = None) -> MetricResult:
    """The best pair of one metric with its interval and (in a sweep) its max-corrected p-value.

    ``defined``: the layer pairs where this metric has a value, the pairs its max is taken over.
    """
    pd = _pair_data(job, at)
    res = _compute(c, pd)
    job.ra.notes.extend(note for note in pd.notes if note not in job.ra.notes)
    changes: dict = {}
    if job.pairs > 1 and defined is not None:
        changes.update(_max_p_value(job, c, res, defined))
    changes.update(_sweep_labels(job, c, res, at))
    return dataclasses.replace(res, **changes)


def _max_p_value(job: _Job, c: Choice, res: MetricResult, defined: set) -> ResultFields:
    """p-value and calibrated score against the best over all layer pairs under each permutation.

    One permutation is applied to every layer pair and the same best (max, or min for a distance) is taken,
    so the p-value accounts for the choice of the best pair (formulas.md §4). Cantelli's bound does not apply
    (the exact moments are those of one pair, not of the max), so a metric with exact moments runs its
    permutations with Besag–Clifford stopping instead, which is valid for any statistic, the max included.
    """
    u, spec = job.u, c.spec
    wants = u.permutations > 0 and spec.permutation_null is not None and (spec.cheap_null or u.permutations_explicit)
    if not wants or res.value is None or spec.permutation_null is None:
        return {}
    count = u.permutations if u.permutations_explicit else min(u.permutations, SWEEP_PERMUTATIONS)
    stream = _stats.permutations(Streams.from_seed(u.seed).perm, job.n, count)  # the stream compare uses
    pairs = _LayerPairs(job, defined)
    if spec.moment_bound:
        job.progress(f"{c.id}: up to {count} permutations over {job.pairs} layer pairs, stopping after "
                     f"{_stats.STOP_AFTER} at least as large as the observed best")
        sign = 1.0 if spec.higher_is_better else -1.0

        def draw(m: int) -> np.ndarray:
            return sign * _max_null(spec, pairs, c.values, [next(stream) for _ in range(m)])

        # Batches of 50: each batch prepares every layer pair again (pairs are not kept, to bound memory).
        run = _stats.sequential_p_value(draw, sign * res.value, count, batch=50)
        return sequential_fields(spec, res.value, run)
    job.progress(f"{c.id}: {count} permutations over {job.pairs} layer pairs")
    return permutation_fields(spec, res.value, _max_null(spec, pairs, c.values, list(stream)))


def _max_null(spec: MetricSpec, pairs: _LayerPairs, params: dict, perms: list[np.ndarray]) -> np.ndarray:
    """The best over the defined layer pairs of the metric's value under each permutation."""
    assert spec.permutation_null is not None
    if spec.max_null is not None:
        return spec.max_null(pairs, params, perms)
    pick = np.maximum if spec.higher_is_better else np.minimum
    null = None
    for i, j in sorted(pairs.defined):
        one = spec.permutation_null(pairs.pair(i, j), params, perms)
        null = one if null is None else pick(null, one)
    assert null is not None, "the best pair is defined, so at least one pair is"
    return null


def _sweep_labels(job: _Job, c: Choice, res: MetricResult, at: tuple[int, int]) -> dict:
    """The chosen layers in the parameters, and the interval's Bonferroni widening in its description."""
    changes: dict = {}
    ra, rb = job.ra, job.rb
    if ra.layered or rb.layered:
        params = dict(res.params)
        if ra.layered:
            params["layer_a"] = ra.labels[at[0]]
        if rb.layered:
            params["layer_b"] = rb.labels[at[1]]
        changes["params"] = params
    if job.pairs > 1 and res.ci_low is not None:
        changes["ci_method"] = f"{res.ci_method}, Bonferroni over {job.pairs} layer pairs"
        changes["ci_covers"] = (f"{res.ci_covers}, at the chosen layer pair; simultaneous over all {job.pairs} "
                                "pairs, so it stays valid for the pair chosen as best")
    return changes


def self_scores(r: Representation, options: Options, u: UncertaintySettings) -> tuple[MetricResult, ...]:
    """An input against itself (a matrix diagonal): its first layer with itself, from the cached work."""
    k, distance = options.k, options.distance
    x = r.layer(0)
    n = x.shape[0]
    depth = list_depth(n, k, u.resamples)
    _check_choices(options.metrics, k, n, (x.shape[1], x.shape[1]), (r.source.where, r.source.where))
    lists, counts, sums = None, None, None
    if options.works("lists"):
        ordered = options.works("ordered")
        lists = {"a": r.lists(0, depth, distance, k, ordered), "b": r.lists(0, depth, distance, k, ordered)}
        counts = (r.counts(0, k, depth, distance, ordered),) * 2
    if options.works("cross"):
        st = r.cka(0)
        sums = _cka.CrossStats(n, st.sxx, st.sxx, st.sxx, st.a, st.a)
    quiet = UncertaintySettings(resamples=0, permutations=0, seed=u.seed)
    arrays = options.works("arrays")
    pd = PairData(x if arrays else None, x if arrays else None, k=k, distance=distance, labels=(r.name(0), r.name(0)),
                  uncertainty=quiet, lists=lists, cross=sums, counts=counts, n=n, ordered=options.works("ordered"))
    return tuple(dataclasses.replace(_compute(c, pd), ci_reason="an input compared with itself")
                 for c in options.metrics)
