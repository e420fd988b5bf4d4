"""The library entry points: build the Options once, run the engine, return a frozen result object."""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Mapping, Sequence, TypeVar, cast

from repalign import __version__
from repalign import engine as _engine
from repalign.engine import distributed as _distributed
from repalign.errors import UsageError
from repalign.options import Options
from repalign.results import ComparisonResult, InputInfo, MatrixCell, MatrixResult
from repalign.search import accuracy as _accuracy

F = TypeVar("F", bound=Callable[..., Any])


def _progress_option(fn: F) -> F:
    """``progress=True``: the CLI's spinner on stderr, shown even when stderr is not a terminal (a notebook)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if kwargs.get("progress") is not True:
            return fn(*args, **kwargs)
        from repalign.console import Progress

        spinner = Progress(quiet=False, always=True)
        try:
            return fn(*args, **{**kwargs, "progress": spinner})
        finally:
            spinner.close()

    return cast(F, wrapper)

@_progress_option
def compare(a, b, *, metrics=None, k: int | None = None, distance: str = "cosine", clip: float | None = None,
            normalize: bool | None = None, preset: str | None = None, resamples: int = 1000,
            confidence: float = 0.95, seed: int | None = None, ci_method: str = "auto",
            permutations: int | None = None, allow_external: bool = False,
            ids: str | None = None, ids_a: str | None = None, ids_b: str | None = None, require_all: bool = False,
            max_rows: int | None = None, layer_a: str | None = None, layer_b: str | None = None,
            progress: Callable[[str], None] | bool | None = None, options: Options | None = None,
            labels: Sequence[str | None] | None = None, cache: str | None = None, search: str = "auto",
            recall: float = 0.95, workers: int | None = None, scheduler: str | None = None) -> ComparisonResult:
    """Score how alike two embeddings of the same items are.

    Parameters
    ----------
    a, b : file selectors (``"path"``, ``"path:key"``) or arrays: numpy,
        anything with ``__array__`` or ``__dlpack__``, torch tensors (also
        ones that require grad; bfloat16 is widened to float32), pandas or
        polars Series of vectors, lists of lists; row i of both is the same item.
    metrics : names or a comma-separated string; default ``("mknn", "cka")``.
    k : neighbours for k-NN metrics (default 10, or the preset's).
    distance : ``cosine`` (default), ``ip`` or ``l2`` for the neighbour search.
    clip : clamp |values| at this quantile of all entries before anything else.
    normalize : L2-normalise rows before every metric.
    preset : ``"prh"`` for the paper's pipeline (clip 0.95, normalise, k=10);
        explicitly given options override it.
    resamples : bootstrap replicates for intervals (0 switches intervals off).
    confidence : two-sided level of the intervals.
    seed : seed of all random draws (drawn and reported when None).
    ci_method : ``auto`` (each metric's validated default: ``ij`` for mknn,
        the corrected jackknife for CKA), ``bootstrap`` (each metric's
        validated bootstrap flavour; mknn: normal), ``percentile``,
        ``basic``, ``bca`` or ``normal`` (mknn and CKA), ``ij`` (mknn), or
        ``jackknife`` (CKA without the second-order correction); a metric
        that cannot use the requested method keeps its default, and the
        result's ``ci_method`` names what ran.
    permutations : permutations for p-values and calibrated scores. By
        default 1000 for k-NN metrics, where each costs O(n·k); given
        explicitly, CKA gets them too, at O(n·d1·d2) each.
    allow_external : follow HDF5 external links and virtual datasets that
        read other files (refused by default).
    ids, ids_a, ids_b : pair items by these id arrays (``"auto"``: the one
        array named id, ids, key or name) instead of by row order; rows are
        inner-joined and the report counts what was dropped.
    require_all : with ids, make any unpaired row an error.
    max_rows : evaluate on this many randomly chosen paired items (seeded).
    layer_a, layer_b : layers to use from an n×L×d array or a glob key:
        ``all`` (default), an index (negative from the end), a slice
        ``0:12:2`` or a list ``1,3,-1``. When either side has several layers,
        every pair is scored (``result.sweep``) and ``result.metrics`` holds
        each metric's best pair, its interval Bonferroni-widened over the
        pairs and its p-value from the max over pairs under each permutation.
    progress : True to show the CLI's stages on stderr (a spinner after a second, in a terminal or a
        notebook), or a callable receiving a short description of each stage.
    options : an :class:`~repalign.options.Options` built already (the CLI's);
        the other keyword arguments are then ignored.
    labels : names for a and b (a pair; None keeps one's path), shown in
        tables instead of paths and kept in the JSON report as ``name``.
    cache : a directory keeping each layer's neighbour lists for later runs
        (default: the environment variable ``REPALIGN_CACHE``, else none);
        the results are the same with or without it, and the notes say
        which lists it served.
    search : neighbour search: ``"exact"`` (certified exact lists),
        ``"approx"`` (FAISS IVF-Flat; recall and each list metric's shift
        measured on a seeded sample and reported in ``result.search``) or
        ``"auto"`` (default: exact unless its predicted time exceeds
        :data:`repalign.search.auto.AUTO_EXACT_SECONDS`).
    recall : target recall of approximate search, in (0, 1].
    workers : run each layer's work (read, preprocess, neighbour search,
        statistics) and the scoring as tasks on a Dask ``LocalCluster`` of
        this many worker processes, started and closed by the call (needs
        ``pip install 'repalign[dask]'``). Inputs must be files: workers open
        the paths given; arrays are refused. Same results as without.
    scheduler : the address of an existing Dask scheduler to run on instead
        (e.g. ``"tcp://10.0.0.5:8786"``); every worker must see the input
        paths and run the same repalign version.

    Returns
    -------
    ComparisonResult
    """
    t0 = time.perf_counter()
    stages = progress if callable(progress) else None  # True became a spinner in _progress_option
    if options is None:
        options = Options.build(
            metrics=metrics, k=k, distance=distance, clip=clip, normalize=normalize, preset=preset,
            resamples=resamples, confidence=confidence, seed=seed, ci_method=ci_method, permutations=permutations,
            ids=(ids_a if ids_a is not None else ids, ids_b if ids_b is not None else ids), require_all=require_all,
            max_rows=max_rows, layers=(layer_a, layer_b), allow_external=allow_external, cache=cache, search=search,
            recall=recall, workers=workers, scheduler=scheduler)
    names = _names(labels, 2, "labels= of compare")
    if options.distributed:
        _distributed.check_inputs([a, b])
    run = _engine.prepare([a, b], options, compare=True, progress=stages)
    timing: dict = {}
    if options.distributed:
        done = _distributed.score(run, [a, b], options, [(0, 1)], compare=True, diagonal=False, progress=stages)
        run = dataclasses.replace(run, reps=done.reps, cache=done.cache)
        results, sweep = done.pairs[0].results, done.pairs[0].sweep
        timing.update(done.pairs[0].timing)
    else:
        results, sweep = _engine.score_pair(run.reps[0], run.reps[1], options, run.uncertainty, progress=stages,
                                            timing=timing)
    sa, sb = run.sides
    ra, rb = run.reps
    timing["total_seconds"] = time.perf_counter() - t0
    notes = (sa.notes + sb.notes + ra.notes + rb.notes + run.notes + ra.search.notes + rb.search.notes
             + (run.cache.notes() if run.cache else []))
    searched = _accuracy.summarise([ra, rb], [(0, 1, results)], options, run.uncertainty)
    notes += _accuracy.unmeasured_notes(searched, [m.name for m in results])
    if not run.keep and not (len(sa.source) == 1 and len(sb.source) == 1):
        notes.append("the layers did not all fit in memory; each was read again for every pair it is in")
    return ComparisonResult(
        inputs=(_named(sa.info, names[0]), _named(sb.info, names[1])), n=run.n,
        preprocessing=options.preprocessing, metrics=results,
        notes=tuple(notes), uncertainty=run.uncertainty, pairing=run.pairing, sweep=sweep,
        version=__version__, timing={key: round(v, 6) for key, v in timing.items()}, search=searched,
    )


@_progress_option
def matrix(inputs, *, reference=None, metrics=None, k: int | None = None, distance: str = "cosine",
           clip: float | None = None, normalize: bool | None = None, preset: str | None = None,
           resamples: int = 1000, confidence: float = 0.95, seed: int | None = None, ci_method: str = "auto",
           permutations: int | None = None, allow_external: bool = False, ids: str | None = None,
           require_all: bool = False, max_rows: int | None = None, layers: str | None = None,
           progress: Callable[[str], None] | bool | None = None, options: Options | None = None,
           labels: Sequence[str | None] | None = None, cache: str | None = None, search: str = "auto",
           recall: float = 0.95, workers: int | None = None, scheduler: str | None = None) -> MatrixResult:
    """Score every pair of several inputs (or each against a reference), each representation's work done once.

    Parameters are those of :func:`compare`; ``inputs`` is a list of file
    selectors or arrays (at least two, or one with ``reference``), or a dict
    of them whose keys name them (``{"llm": X, "lvm": Y}``); ``labels`` names
    them too (one per input, the reference first when there is one); ``layers``
    selects layers of every layered input, and ``ids`` joins the items present
    in every input; ``cache``, ``workers`` and ``scheduler`` are compare's (on a
    cluster, each input layer's work is one task and each pair one task). A
    pair of layered inputs scores its best layer pair (see :func:`compare`).
    Every metric is symmetric, so each unordered pair is computed once.
    Neighbour lists and CKA statistics are computed once per layer of each
    input and reused by every pair it is in.

    Returns
    -------
    MatrixResult
    """
    t0 = time.perf_counter()
    stages = progress if callable(progress) else None  # True became a spinner in _progress_option
    if isinstance(inputs, Mapping):
        if labels is not None:
            raise UsageError("give names either as the keys of a dict of inputs or as labels=, not both")
        labels = ([None] if reference is not None else []) + [str(key) for key in inputs]
        inputs = list(inputs.values())
    xs = ([reference] if reference is not None else []) + list(inputs)
    names = _names(labels, len(xs), "labels= of matrix")
    if options is None:
        options = Options.build(
            metrics=metrics, k=k, distance=distance, clip=clip, normalize=normalize, preset=preset,
            resamples=resamples, confidence=confidence, seed=seed, ci_method=ci_method, permutations=permutations,
            ids=(ids,) * len(xs), require_all=require_all, max_rows=max_rows, layers=(layers,) * len(xs),
            allow_external=allow_external, cache=cache, id_options="--ids", search=search, recall=recall,
            workers=workers, scheduler=scheduler)
    if len(xs) < 2:
        raise UsageError("repalign matrix needs at least two inputs (or one and --reference)")
    if options.distributed:
        _distributed.check_inputs(xs)
    run = _engine.prepare(xs, options, compare=False, progress=stages)
    todo = _pairs_to_score(len(run.reps), reference is not None)
    diagonal: tuple[MatrixCell, ...] = ()
    if options.distributed:
        done = _distributed.score(run, xs, options, todo, compare=False, diagonal=reference is None,
                                  progress=stages)
        run = dataclasses.replace(run, reps=done.reps, cache=done.cache)
        cells = [MatrixCell(p, q, o.results) for (p, q), o in zip(todo, done.pairs)]
        diagonal = tuple(MatrixCell(p, p, results) for p, results in enumerate(done.diagonal))
    else:
        cells = _score_pairs(run, options, todo, stages)
        if reference is None:
            diagonal = tuple(MatrixCell(p, p, _engine.self_scores(r, options, run.uncertainty))
                             for p, r in enumerate(run.reps))
    if reference is not None:
        first = options.metrics[0]
        sign = -1.0 if first.spec.higher_is_better else 1.0  # best first, in the first metric's direction
        cells.sort(key=lambda c: (c.metric(first.id).value is None, sign * (c.metric(first.id).value or 0.0), c.b))
    notes: list[str] = []
    for s, r in zip(run.sides, run.reps):
        notes += [x for x in s.notes + r.notes + r.search.notes if x not in notes]
    searched = _accuracy.summarise(run.reps, [(c.a, c.b, c.metrics) for c in cells], options, run.uncertainty)
    notes += _accuracy.unmeasured_notes(searched, [m.name for c in cells for m in c.metrics])
    if not run.keep:
        notes.append("the inputs' layers did not all fit in memory; each was read again for every pair it is in")
    if run.cache is not None:
        notes += run.cache.notes()
    selection = options.layers[0]
    if selection is not None and not any(s.info.layers is not None for s in run.sides):
        notes.append(f"--layers {selection} selected nothing: no input has layers")
    timing = {"total_seconds": round(time.perf_counter() - t0, 6)}
    infos = tuple(_named(s.info, name) for s, name in zip(run.sides, names))
    return MatrixResult(infos, run.n, options.preprocessing, options.metric_ids,
                        tuple(cells), diagonal, 0 if reference is not None else None, tuple(notes), run.uncertainty,
                        __version__, timing, pairing=run.pairing, search=searched)


def _pairs_to_score(m: int, against_reference: bool) -> list[tuple[int, int]]:
    """Every unordered pair once (a < b: an asymmetric metric is reported in that order only), or each input
    against the first (the reference)."""
    return [(0, q) for q in range(1, m)] if against_reference else [(p, q) for p in range(m) for q in range(p + 1, m)]


def _score_pairs(run: _engine.Prepared, options: Options, todo: list[tuple[int, int]],
                 progress: Callable[[str], None] | None) -> list[MatrixCell]:
    cells = []
    for number, (p, q) in enumerate(todo, 1):
        if progress:
            progress(f"pair {number}/{len(todo)}: {run.sides[p].info.name} vs {run.sides[q].info.name}")
        results, _ = _engine.score_pair(run.reps[p], run.reps[q], options, run.uncertainty, progress=progress)
        cells.append(MatrixCell(p, q, results))
    return cells


def _names(labels: Sequence[str | None] | None, count: int, what: str) -> list[str | None]:
    """One name (or None) per input, checked: as many as inputs, each a non-empty string, no two alike."""
    if labels is None:
        return [None] * count
    if isinstance(labels, str) or len(labels) != count:
        given = "a string" if isinstance(labels, str) else f"{len(labels)}"
        raise UsageError(f"{what}: expected {count} names (one per input), got {given}")
    names = [None if x is None else str(x) for x in labels]
    if any(x is not None and not x.strip() for x in names):
        raise UsageError(f"{what}: a name is empty")
    given_names = [x for x in names if x is not None]
    if len(set(given_names)) != len(given_names):
        raise UsageError(f"{what}: two inputs have the same name")
    return names


def _named(info: InputInfo, name: str | None) -> InputInfo:
    return info if name is None else dataclasses.replace(info, given_name=name)
