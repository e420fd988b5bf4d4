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
from repalign.metrics import REGISTRY, PairData, list_depth
from repalign.metrics import cka as _cka
from repalign.options import Options
from repalign.results import MetricResult, Sweep, UncertaintySettings
from repalign.seeds import Streams
from repalign.validation import check_k

# Default permutations behind a best-over-layers p-value: each costs La·n·k table lookups (about 20 ms for
# 13×13 layers at n = 5000), so 1000 would cost more than the sweep's searches; 200 resolve p down to 0.005.
SWEEP_PERMUTATIONS = 200

Cells = dict[str, list[list[MetricResult]]]


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
    def names(self) -> tuple[str, ...]:
        return self.options.metrics

    @property
    def knn_metrics(self) -> list[str]:
        return [m for m in self.names if REGISTRY[m].needs_neighbors]

    @property
    def cka_metrics(self) -> list[str]:
        return [m for m in self.names if not REGISTRY[m].needs_neighbors]

    @property
    def pairs(self) -> int:
        return len(self.ra) * len(self.rb)

    def lists(self, i: int, j: int) -> dict:
        o = self.options
        return {"a": self.ra.lists(i, self.depth, o.distance, o.k), "b": self.rb.lists(j, self.depth, o.distance, o.k)}

    def counts(self, i: int, j: int) -> tuple:
        o = self.options
        return self.ra.counts(i, o.k, self.depth, o.distance), self.rb.counts(j, o.k, self.depth, o.distance)


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
        return tuple(_timed(job, m, functools.partial(_full, job, m, (0, 0))) for m in job.names), None
    t = time.perf_counter()
    cells = _all_cells(job, gram)
    job.timing["pairs_seconds"] = time.perf_counter() - t
    best_at = {m: _best(cells[m]) for m in job.names}
    results = tuple(_timed(job, m, functools.partial(_best_result, job, m, cells[m], best_at[m])) for m in job.names)
    sweep = None
    if ra.layered or rb.layered:
        sweep = Sweep(ra.labels, rb.labels, {m: tuple(tuple(row) for row in cells[m]) for m in job.names}, best_at)
    return results, sweep


def _timed(job: _Job, m: str, compute: Callable[[], MetricResult]) -> MetricResult:
    t = time.perf_counter()
    result = compute()
    job.timing[f"{m}_seconds"] = time.perf_counter() - t
    return result


def _per_layer_work(job: _Job) -> bool:
    """Load, check k, and do each layer's own work once (lists, CKA statistics); returns whether the CKA
    numerators take the Gram route."""
    t = time.perf_counter()
    ra, rb, o = job.ra, job.rb, job.options
    job.n = ra.layer(0).shape[0]
    rb.layer(0)
    job.timing["load_seconds"] = time.perf_counter() - t
    if job.knn_metrics:
        check_k(o.k, job.n, job.knn_metrics[0], (ra.source.where, rb.source.where))
    job.depth = list_depth(job.n, o.k, job.u.resamples)
    t = time.perf_counter()
    gram = bool(job.cka_metrics) and gram_route_pays(ra, rb, job.n)
    for r, side in ((ra, "a"), (rb, "b")):
        for i in range(len(r)):
            if job.knn_metrics:
                job.progress(f"{side}: layer {i + 1}/{len(r)}: {job.depth} nearest neighbours of {job.n} items")
                r.counts(i, o.k, job.depth, o.distance)
            if job.cka_metrics and job.pairs > 1:  # a single pair computes its CKA sums in one pass (cross_stats)
                r.cka(i, with_sxx=not gram)
    if job.pairs > 1:
        job.timing["layers_seconds"] = time.perf_counter() - t
    return gram


def _all_cells(job: _Job, gram: bool) -> Cells:
    """Every layer pair's value and exact null (no intervals, no permutations): the sweep's matrix."""
    ra, rb, o = job.ra, job.rb, job.options
    La, Lb = len(ra), len(rb)
    quiet = UncertaintySettings(resamples=0, permutations=0, seed=job.u.seed)
    cells: Cells = {m: [[] for _ in range(La)] for m in job.names}
    grams = gram_numerators(ra, rb, job.progress) if gram else None
    for i in range(La):
        xc = _cka.centred(ra.layer(i), ra.cka(i).mean) if job.cka_metrics and grams is None else None
        for j in range(Lb):
            job.progress(f"scoring layer pair {i * Lb + j + 1}/{job.pairs}")
            knn = bool(job.knn_metrics)
            pd = PairData(None, None, k=o.k, distance=o.distance, labels=(ra.name(i), rb.name(j)), uncertainty=quiet,
                          lists=job.lists(i, j) if knn else {}, cross=_cka_sums(job, i, j, grams, xc),
                          counts=job.counts(i, j) if knn else None, n=job.n)
            for m in job.names:
                cells[m][i].append(REGISTRY[m].compute(pd))
    return cells


def _cka_sums(job: _Job, i: int, j: int, grams: tuple | None, xc: np.ndarray | None) -> _cka.CrossStats | None:
    """The CKA sums of layer pair (i, j), from the Gram numerators or one cross-product."""
    if not job.cka_metrics:
        return None
    if grams is None:
        return cross(job.ra, i, job.rb, j, xc=xc)
    sa, sb = job.ra.cka(i, with_sxx=False), job.rb.cka(j, with_sxx=False)
    sxy = 0.0 if sa.constant or sb.constant else float(grams[0][i, j])
    sxx = 0.0 if sa.constant else float(grams[1][i])
    syy = 0.0 if sb.constant else float(grams[2][j])
    return _cka.CrossStats(job.n, sxy, sxx, syy, sa.a, sb.a)


def _best(cells: list[list[MetricResult]]) -> tuple[int, int] | None:
    """Row-major first argmax of the defined values."""
    best: float | None = None
    where = None
    for i, row in enumerate(cells):
        for j, m in enumerate(row):
            if m.value is not None and (best is None or m.value > best):
                best, where = m.value, (i, j)
    return where


def _best_result(job: _Job, m: str, cells: list[list[MetricResult]], at: tuple[int, int] | None) -> MetricResult:
    if at is None:  # undefined everywhere: report the first pair's reason
        return cells[0][0]
    defined = {(i, j) for i, row in enumerate(cells) for j, c in enumerate(row) if c.value is not None}
    return _full(job, m, at, defined)


def _pair_data(job: _Job, at: tuple[int, int]) -> PairData:
    """The full PairData of one layer pair, made once and shared by the metrics whose best pair it is."""
    pd = job.shared.get(at)
    if pd is None:
        i, j = at
        u, o = job.u, job.options
        # Bonferroni over all pairs: if every pair's interval covers at once (probability ≥ the level), the
        # chosen pair's does too, whichever pair the data made best.
        level = 1.0 - (1.0 - u.confidence) / job.pairs
        ub = dataclasses.replace(u, confidence=level, permutations=0, permutations_explicit=False)
        knn = bool(job.knn_metrics)
        pd = job.shared[at] = PairData(job.ra.layer(i), job.rb.layer(j), k=o.k, distance=o.distance,
                                       labels=(job.ra.name(i), job.rb.name(j)), uncertainty=ub,
                                       progress=job.progress, lists=job.lists(i, j) if knn else {},
                                       counts=job.counts(i, j) if knn else None)
    return pd


def _full(job: _Job, m: str, at: tuple[int, int], defined: set | None = None) -> MetricResult:
    """The best pair of one metric with its interval and its max-corrected p-value.

    ``defined``: the layer pairs where this metric has a value (None: all), the pairs its max is taken over.
    """
    pd = _pair_data(job, at)
    res = REGISTRY[m].compute(pd)
    job.ra.notes.extend(note for note in pd.notes if note not in job.ra.notes)
    changes: dict = {}
    changes.update(_max_p_value(job, m, res, defined))
    changes.update(_sweep_labels(job, m, res, at))
    return dataclasses.replace(res, **changes)


def _max_p_value(job: _Job, m: str, res: MetricResult, defined: set | None) -> dict:
    """p-value and calibrated score against the max over all layer pairs under each permutation."""
    u, pairs = job.u, job.pairs
    wants_perm = u.permutations > 0 and (REGISTRY[m].needs_neighbors or u.permutations_explicit)
    if not wants_perm or res.value is None:
        return {}
    count = u.permutations if u.permutations_explicit or pairs == 1 else min(u.permutations, SWEEP_PERMUTATIONS)
    perm_seed = Streams.from_seed(u.seed).perm  # the stream compare uses
    perms = list(_stats.permutations(perm_seed, job.n, count))
    job.progress(f"{m}: {count} permutations over {pairs} layer pair{'s' if pairs > 1 else ''}")
    if REGISTRY[m].needs_neighbors:
        o = job.options
        null = _stats.knn_max_permutation_null(
            [job.ra.lists(a, job.depth, o.distance, o.k)[:, :o.k] for a in range(len(job.ra))],
            [job.rb.lists(b, job.depth, o.distance, o.k)[:, :o.k] for b in range(len(job.rb))], perms)
    else:
        null = _cka_max_null(m, job.ra, job.rb, perms, defined)
    return {"p_value": _stats.p_value(res.value, null), "calibrated": _stats.calibrated_score(res.value, null),
            "permutations": count}


def _sweep_labels(job: _Job, m: str, res: MetricResult, at: tuple[int, int]) -> dict:
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
        changes["ci_covers"] = (f"{REGISTRY[m].covers}, at the chosen layer pair; simultaneous over all {job.pairs} pairs, "
                                "so it stays valid for the pair chosen as best")
    return changes


def _cka_max_null(m: str, ra: Representation, rb: Representation, perms, defined: set | None) -> np.ndarray:
    """Max over the layer pairs where CKA is defined of CKA with B's rows permuted, one permutation for all.

    Pairs without a value (a layer without variance) are left out, as they are of the observed max.
    """
    out = None
    for i in range(len(ra)):
        for j in range(len(rb)):
            if defined is not None and (i, j) not in defined:
                continue
            x, y = ra.layer(i), rb.layer(j)
            st = _cka.cross_stats(x, y)
            null = _stats.cka_permutation_null(x, y, st, perms, unbiased=m == "cka-unbiased")
            out = null if out is None else np.maximum(out, null)
    assert out is not None, "the best pair is defined, so at least one pair is"
    return out


def self_scores(r: Representation, options: Options, u: UncertaintySettings) -> tuple[MetricResult, ...]:
    """An input against itself (a matrix diagonal): its first layer with itself, from the cached work."""
    names, k, distance = options.metrics, options.k, options.distance
    n = r.layer(0).shape[0]
    depth = list_depth(n, k, u.resamples)
    knn = any(REGISTRY[m].needs_neighbors for m in names)
    cka = any(not REGISTRY[m].needs_neighbors for m in names)
    lists, counts, sums = None, None, None
    if knn:
        check_k(k, n, "mknn", (r.source.where, r.source.where))
        lists = {"a": r.lists(0, depth, distance, k), "b": r.lists(0, depth, distance, k)}
        counts = (r.counts(0, k, depth, distance),) * 2
    if cka:
        st = r.cka(0)
        sums = _cka.CrossStats(n, st.sxx, st.sxx, st.sxx, st.a, st.a)
    quiet = UncertaintySettings(resamples=0, permutations=0, seed=u.seed)
    pd = PairData(None, None, k=k, distance=distance, labels=(r.name(0), r.name(0)), uncertainty=quiet,
                  lists=lists, cross=sums, counts=counts, n=n)
    return tuple(dataclasses.replace(REGISTRY[m].compute(pd), ci_reason="an input compared with itself")
                 for m in names)
