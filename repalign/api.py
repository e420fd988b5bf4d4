"""The library entry points: validate once, compute, return a result object."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np

from repalign import __version__
from repalign import io as _io
from repalign import preprocess as _pre
from repalign import sweep as _sweep
from repalign.errors import InputError, UsageError
from repalign.metrics import REGISTRY, list_depth, parse_metrics
from repalign.neighbors import DISTANCES
from repalign.results import ComparisonResult, InputInfo, MatrixCell, MatrixResult, UncertaintySettings
from repalign.validation import as_embedding, check_pair

DEFAULT_K = 10
# A sweep keeps its layers in memory only up to this size; larger inputs are read layer by layer again for
# each pair, so memory stays at one layer pair plus the neighbour lists (issue: 13×13 layers at n=50,000).
_LAYER_CACHE_BYTES = 1 << 30
# Resamples and permutations are drawn one by one; beyond this many a run would take days, and the Monte
# Carlo error (about 1/sqrt(B)) is already far below the rounding of the report.
MAX_DRAWS = 1_000_000


@dataclass
class _Side:
    info: InputInfo
    source: object
    """A LayerSet (file) or ArrayLayers (in-memory array)."""
    notes: list[str]
    plan: tuple | None = None
    """(shape of one layer, bytes per value, bytes resident once read), from headers; None if unknown."""

    @property
    def n(self) -> int:
        return int(self.info.shape[0]) if self.info.shape else 0


def _open_side(x, label: str, allow_external: bool = False, layers: str | None = None,
               only_layered: bool = False) -> _Side:
    """A file selector or an array → its (selected) layers, its description and its memory plan; no values
    read yet (:func:`_read_side` reads a single array once the plan is accepted).

    ``only_layered``: apply ``layers`` to layered inputs and ignore it for single arrays (matrix --layers).
    """
    from repalign.sweep import ArrayLayers

    if isinstance(x, (str, os.PathLike, _io.Selector)):
        src = _io.open_layers(x, allow_external=allow_external)
        src = src.select(layers) if src.layered or not only_layered else src
        info = InputInfo(label, src.selector.path, src.key, src.format, tuple(src.shape), src.stored_dtype,
                         src.labels if src.layered else None)
        plan = _io.describe(_io.Selector(src.selector.path, src.keys[0]))
    else:
        src = ArrayLayers(x, f"array {label}")
        src = src.select(layers) if src.layered or not only_layered else src
        info = InputInfo(label, None, None, "array", src.shape, str(src.array.dtype),
                         src.labels if src.layered else None)
        arr = src.array
        plan = ((arr.shape[0], arr.shape[-1]), arr.dtype.itemsize, 0) if arr.ndim in (2, 3) else None
    return _Side(info, src, [], plan)


def _read_side(side: _Side) -> _Side:
    """Read and check a single array now, so that a bad file is reported before any pairing; layers are read
    later, one at a time."""
    if side.info.layers is not None:
        return side
    raw = side.source.read(0)
    info = dataclasses.replace(side.info, shape=tuple(raw.shape), dtype=str(raw.dtype))
    array, notes = as_embedding(raw, info.name)
    return _Side(info, _sweep.Checked(side.source, array), notes, side.plan)


def _pair(a, b, sa: _Side, sb: _Side, *, ids, ids_a, ids_b, require_all, max_rows, seed, notes):
    """Match rows (by order or by id) and subsample; returns the Pairing and row indices (None: all rows)."""
    from repalign import pairing as _pairing

    key_a = ids_a if ids_a is not None else ids
    key_b = ids_b if ids_b is not None else ids
    wanted = key_a is not None or key_b is not None
    if require_all and not wanted:
        raise UsageError("--require-all needs ids (--ids, --ids-a or --ids-b)")
    if max_rows is not None and max_rows < 1:
        raise UsageError(f"--max-rows must be at least 1 (got {max_rows})")
    files = _pairing.is_file(a) and _pairing.is_file(b)
    if wanted and not files:
        raise UsageError("--ids needs both inputs to be files (pass the arrays already aligned)")
    rows_a = rows_b = None
    found = (None, None)
    if files:
        sel_a, sel_b = (x if isinstance(x, _io.Selector) else _io.parse_selector(x) for x in (a, b))
        auto = lambda key: None if key in (None, "auto") else key  # noqa: E731
        found = (_pairing.find_ids(sel_a, auto(key_a)), _pairing.find_ids(sel_b, auto(key_b)))
    if wanted:
        for sel, key, label in ((sel_a, found[0], sa.info.name), (sel_b, found[1], sb.info.name)):
            if key is None:
                raise InputError(f"{sel.path}: no id array found (looked for {', '.join(_pairing.ID_NAMES)}); "
                                 "name it with --ids-a/--ids-b")
        id_a = _pairing.read_ids(sel_a.path, found[0])
        id_b = _pairing.read_ids(sel_b.path, found[1])
        for ids_arr, side, sel, key in ((id_a, sa, sel_a, found[0]), (id_b, sb, sel_b, found[1])):
            if ids_arr.size != side.n:
                raise InputError(f"{sel.path}:{key} has {ids_arr.size} ids but {side.info.name} has "
                                 f"{side.n} rows")
        rows_a, rows_b = _pairing.join(id_a, id_b, (f"{sel_a.path}:{found[0]}", f"{sel_b.path}:{found[1]}"),
                                       require_all=require_all)
        na, nb = side_rows = (sa.n, sb.n)
        pairing = _pairing.Pairing("id", found, side_rows, int(rows_a.size),
                                   (na - int(rows_a.size), nb - int(rows_b.size)))
        if rows_a.size == 0:
            raise InputError(f"{sel_a.path}:{found[0]} and {sel_b.path}:{found[1]} have no id in common")
    else:
        n = check_pair(sa.info.shape, sb.info.shape, sa.info.name, sb.info.name)
        pairing = _pairing.Pairing("row", (None, None), (n, n), n, (0, 0))
        if None not in found:
            # Both files carry ids: pairing by row order is only right if they agree row by row.
            id_a = _pairing.read_ids(sel_a.path, found[0])
            id_b = _pairing.read_ids(sel_b.path, found[1])
            if id_a.dtype.kind != id_b.dtype.kind or not np.array_equal(id_a, id_b):
                notes.append(f"both files carry ids ({found[0]}, {found[1]}) that differ row by row; rows were "
                             "paired by position; pass --ids auto to pair them by id")
    if max_rows is not None and max_rows < pairing.paired:
        pick = _pairing.subsample(pairing.paired, max_rows, seed)
        rows_a = pick if rows_a is None else rows_a[pick]
        rows_b = pick if rows_b is None else rows_b[pick]
        pairing = dataclasses.replace(pairing, max_rows=max_rows, subsample_seed=seed)
    elif max_rows is not None:
        pairing = dataclasses.replace(pairing, max_rows=None)
    return pairing, rows_a, rows_b


def _memory_limit() -> int | None:
    """The memory a run may plan for: what is free, capped by REPALIGN_MEMORY_LIMIT (checked even if unused)."""
    from repalign import memory

    limit = memory.env_override()
    avail = memory.available_bytes()
    if limit is not None:
        avail = limit if avail is None else min(avail, limit)
    return avail


def _plan_memory(sa: _Side, sb: _Side, *, names, k, pre, u) -> bool:
    """Refuse, before loading, a run that needs more memory than the machine has.

    Works from headers and metadata only (the sides' plans). Returns whether every selected layer can
    stay in memory during a sweep (else layers are read again for each pair they are in).
    """
    from repalign import memory

    avail = _memory_limit()
    plans = [sa.plan, sb.plan]
    if None in plans:
        _check_reads(sa, sb, avail)
        return True  # loading will report the problem precisely
    # Row counts may differ when ids pair the rows: at most the smaller count is compared.
    n = min(plans[0][0][0], plans[1][0][0])
    layers = (len(sa.source), len(sb.source))
    neighbors = any(REGISTRY[m].needs_neighbors for m in names)
    depth = list_depth(n, k, u.resamples)
    work = tuple(8 if p[1] == 8 else 4 for p in plans)
    parts = memory.estimate(
        n, (plans[0][0][1], plans[1][0][1]), resident=(plans[0][2], plans[1][2]),
        work_itemsize=work, preprocess=bool(pre.steps()),
        neighbors=neighbors, depth=max(depth, 1), k=k, cka=any(m.startswith("cka") for m in names),
        cka_permutations=u.permutations_explicit and u.permutations > 0, resamples=u.resamples, layers=layers)
    what = f"comparing {n} items ({plans[0][0][1]} and {plans[1][0][1]} dimensions"
    what += f", {layers[0]}×{layers[1]} layers)" if layers != (1, 1) else ")"
    memory.check(parts, avail, what)
    all_layers = sum(count * n * p[0][1] * w for count, p, w in zip(layers, plans, work))
    room = (avail - parts["total"]) if avail is not None else _LAYER_CACHE_BYTES
    return all_layers <= min(room // 2, _LAYER_CACHE_BYTES)


def _check_reads(sa: _Side, sb: _Side, avail: int | None) -> None:
    """Without a full plan, still refuse reading an input that alone cannot fit."""
    from repalign import memory

    for side in (sa, sb):
        if side.plan is not None:
            size = side.plan[2]
        elif side.info.path is not None and side.info.layers is None:
            size = _io.stored_bytes(_io.Selector(side.info.path, side.info.key)) or 0
        else:
            continue
        parts = {"base": memory._BASE, "inputs": size, "working": 0}  # noqa: SLF001
        parts["total"] = parts["base"] + size
        memory.check(parts, avail, f"reading {side.info.name}")


def resolve_options(*, k: int | None, clip: float | None, normalize: bool | None, preset: str | None,
                    distance: str) -> tuple[int, _pre.Preprocessing]:
    """Fill options left unset from the preset, then from the defaults; explicit values win."""
    base = {}
    if preset is not None:
        if preset not in _pre.PRESETS:
            raise UsageError(f"unknown preset '{preset}' (choose from {', '.join(_pre.PRESETS)})")
        base = _pre.PRESETS[preset]
    if distance not in DISTANCES:
        raise UsageError(f"unknown --distance '{distance}' (choose from {', '.join(DISTANCES)})")
    k = base.get("k", DEFAULT_K) if k is None else k
    if k < 1:
        raise UsageError(f"--k must be at least 1 (got {k})")
    clip = base.get("clip") if clip is None else clip
    normalize = base.get("normalize", False) if normalize is None else normalize
    return k, _pre.Preprocessing(clip=clip, normalize=bool(normalize), preset=preset)


def uncertainty_settings(*, resamples: int = 1000, confidence: float = 0.95, seed: int | None = None,
                         ci_method: str = "auto", permutations: int | None = None) -> UncertaintySettings:
    """Check the uncertainty options; a missing seed is drawn once and reported, so any run can be repeated."""
    from repalign.metrics import CI_METHODS

    if resamples < 0 or resamples == 1:
        # One replicate has no spread: every interval needs at least two.
        raise UsageError(f"--resamples must be 0 (no intervals) or at least 2 (got {resamples})")
    if resamples > MAX_DRAWS:
        raise UsageError(f"--resamples must be at most {MAX_DRAWS:,} (got {resamples:,})")
    if permutations is not None and not 0 <= permutations <= MAX_DRAWS:
        raise UsageError(f"--permutations must be between 0 and {MAX_DRAWS:,} (got {permutations:,})")
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"--confidence must be strictly between 0 and 1 (got {confidence})")
    if ci_method not in CI_METHODS:
        raise UsageError(f"unknown --ci-method '{ci_method}' (choose from {', '.join(CI_METHODS)})")
    if resamples and resamples < 100 and ci_method in ("percentile", "basic", "bca"):
        raise UsageError(f"--ci-method {ci_method} needs at least 100 resamples (got {resamples})")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**63))
    if seed < 0:
        raise UsageError(f"--seed must be 0 or more (got {seed})")
    return UncertaintySettings(resamples=resamples, confidence=confidence, seed=seed, ci_method=ci_method,
                               permutations=1000 if permutations is None else permutations,
                               permutations_explicit=permutations is not None)


def compare(a, b, *, metrics=None, k: int | None = None, distance: str = "cosine", clip: float | None = None,
            normalize: bool | None = None, preset: str | None = None, resamples: int = 1000,
            confidence: float = 0.95, seed: int | None = None, ci_method: str = "auto",
            permutations: int | None = None, allow_external: bool = False,
            ids: str | None = None, ids_a: str | None = None, ids_b: str | None = None, require_all: bool = False,
            max_rows: int | None = None, layer_a: str | None = None, layer_b: str | None = None,
            progress=None) -> ComparisonResult:
    """Score how alike two embeddings of the same items are.

    Parameters
    ----------
    a, b : file selectors (``"path"``, ``"path:key"``) or (n, d) float arrays;
        row i of both is the same item.
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
        the corrected jackknife for CKA), ``ij``, ``normal``, ``percentile``,
        ``basic`` or ``bca`` (mknn), or ``jackknife`` (CKA without the
        second-order correction); a metric that cannot use the requested
        method keeps its default and reports which one ran.
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
    progress : optional callable receiving a short description of each stage.

    Returns
    -------
    ComparisonResult
    """
    t0 = time.perf_counter()
    names = parse_metrics(metrics)
    k, pre = resolve_options(k=k, clip=clip, normalize=normalize, preset=preset, distance=distance)
    u = uncertainty_settings(resamples=resamples, confidence=confidence, seed=seed, ci_method=ci_method,
                             permutations=permutations)
    sa = _open_side(a, "a", allow_external, layer_a)
    sb = _open_side(b, "b", allow_external, layer_b)
    if permutations is None and len(sa.source) * len(sb.source) > 1:
        u = dataclasses.replace(u, permutations=_sweep.SWEEP_PERMUTATIONS)
    keep = _plan_memory(sa, sb, names=names, k=k, pre=pre, u=u)
    sa, sb = _read_side(sa), _read_side(sb)  # the first full read, once the plan is accepted
    if progress:
        progress("reading inputs")
    notes: list[str] = []
    pairing, rows_a, rows_b = _pair(a, b, sa, sb, ids=ids, ids_a=ids_a, ids_b=ids_b, require_all=require_all,
                                    max_rows=max_rows, seed=u.seed, notes=notes)
    n = pairing.max_rows or pairing.paired
    single = len(sa.source) == 1 and len(sb.source) == 1
    ra = _sweep.Representation(sa.source, "a", rows_a, pre, keep=keep or single)
    rb = _sweep.Representation(sb.source, "b", rows_b, pre, keep=keep or single)
    timing = {}
    results, sweep = _sweep.run(ra, rb, names, k=k, distance=distance, u=u, progress=progress, timing=timing)
    timing["total_seconds"] = time.perf_counter() - t0
    notes = sa.notes + sb.notes + ra.notes + rb.notes + notes
    if not keep and not single:
        notes.append("the layers did not all fit in memory; each was read again for every pair it is in")
    return ComparisonResult(
        inputs=(sa.info, sb.info), n=n, preprocessing=pre, metrics=results, notes=tuple(notes),
        uncertainty=u, pairing=pairing, sweep=sweep,
        version=__version__, timing={key: round(v, 6) for key, v in timing.items()},
    )


def _pair_many(xs, sides: list[_Side], *, ids, require_all, max_rows, seed):
    """Rows of every input for a matrix: by row order (equal counts) or joined on ids present in all."""
    from repalign import pairing as _pairing

    if require_all and ids is None:
        raise UsageError("--require-all needs ids (--ids)")
    if max_rows is not None and max_rows < 1:
        raise UsageError(f"--max-rows must be at least 1 (got {max_rows})")
    counts = tuple(s.n for s in sides)
    if ids is not None:
        if not all(_pairing.is_file(x) for x in xs):
            raise UsageError("--ids needs every input to be a file")
        sels = [x if isinstance(x, _io.Selector) else _io.parse_selector(x) for x in xs]
        keys = [_pairing.find_ids(sel, None if ids == "auto" else ids) for sel in sels]
        for sel, key in zip(sels, keys):
            if key is None:
                raise InputError(f"{sel.path}: no id array found (looked for {', '.join(_pairing.ID_NAMES)}); "
                                 "name it with --ids")
        id_arrays = [_pairing.read_ids(sel.path, key) for sel, key in zip(sels, keys)]
        for arr, side, sel, key in zip(id_arrays, sides, sels, keys):
            if arr.size != side.n:
                raise InputError(f"{sel.path}:{key} has {arr.size} ids but {side.info.name} has {side.n} rows")
        rows = _pairing.join_many(id_arrays, [f"{sel.path}:{key}" for sel, key in zip(sels, keys)],
                                  require_all=require_all)
        paired = int(rows[0].size)
        if paired == 0:
            raise InputError(f"{sels[0].path}:{keys[0]}: no id is present in every input")
        pairing = _pairing.Pairing("id", tuple(keys), counts, paired, tuple(c - paired for c in counts))
    else:
        for side in sides[1:]:
            check_pair(sides[0].info.shape, side.info.shape, sides[0].info.name, side.info.name)
        rows = [None] * len(sides)
        pairing = _pairing.Pairing("row", (None,) * len(sides), counts, counts[0], (0,) * len(sides))
    if max_rows is not None and max_rows < pairing.paired:
        pick = _pairing.subsample(pairing.paired, max_rows, seed)
        rows = [pick if r is None else r[pick] for r in rows]
        pairing = dataclasses.replace(pairing, max_rows=max_rows, subsample_seed=seed)
    return pairing, rows


def matrix(inputs, *, reference=None, metrics=None, k: int | None = None, distance: str = "cosine",
           clip: float | None = None, normalize: bool | None = None, preset: str | None = None,
           resamples: int = 1000, confidence: float = 0.95, seed: int | None = None, ci_method: str = "auto",
           permutations: int | None = None, allow_external: bool = False, ids: str | None = None,
           require_all: bool = False, max_rows: int | None = None, layers: str | None = None,
           progress=None) -> MatrixResult:
    """Score every pair of several inputs (or each against a reference), each representation's work done once.

    Parameters are those of :func:`compare`; ``inputs`` is a list of file
    selectors or arrays (at least two, or one with ``reference``), ``layers``
    selects layers of every layered input, and ``ids`` joins the items present
    in every input. A pair of layered inputs scores its best layer pair (see
    :func:`compare`). Every metric is symmetric, so each unordered pair is
    computed once. Neighbour lists and CKA statistics are computed once per
    layer of each input and reused by every pair it is in.

    Returns
    -------
    MatrixResult
    """
    t0 = time.perf_counter()
    inputs = list(inputs)
    names = parse_metrics(metrics)
    k, pre = resolve_options(k=k, clip=clip, normalize=normalize, preset=preset, distance=distance)
    u = uncertainty_settings(resamples=resamples, confidence=confidence, seed=seed, ci_method=ci_method,
                             permutations=permutations)
    xs = ([reference] if reference is not None else []) + inputs
    if len(xs) < 2:
        raise UsageError("repalign matrix needs at least two inputs (or one and --reference)")
    sides = [_open_side(x, str(i), allow_external, layers, only_layered=True) for i, x in enumerate(xs)]
    keep = all(_plan_memory(sides[0], s, names=names, k=k, pre=pre, u=u) for s in sides[1:])
    if keep:  # every input's layers at once, not only one pair's
        keep = _fits_all(sides, pre)
    sides = [_read_side(s) for s in sides]  # the first full read, once the plan is accepted

    pairing, rows = _pair_many(xs, sides, ids=ids, require_all=require_all, max_rows=max_rows, seed=u.seed)
    n = pairing.max_rows or pairing.paired
    reps = [_sweep.Representation(s.source, s.info.label, r, pre, keep=keep) for s, r in zip(sides, rows)]
    if reference is not None:
        todo = [(0, q) for q in range(1, len(reps))]
    else:
        todo = [(p, q) for p in range(len(reps)) for q in range(p + 1, len(reps))]
    cells = []
    for number, (p, q) in enumerate(todo, 1):
        if progress:
            progress(f"pair {number}/{len(todo)}: {sides[p].info.name} vs {sides[q].info.name}")
        results, _ = _sweep.run(reps[p], reps[q], names, k=k, distance=distance, u=u, progress=progress)
        cells.append(MatrixCell(p, q, results))
    diagonal = ()
    if reference is None:
        diagonal = tuple(MatrixCell(p, p, _sweep.self_scores(reps[p], names, k=k, distance=distance, u=u))
                         for p in range(len(reps)))
    else:
        first = names[0]
        cells.sort(key=lambda c: (c.metric(first).value is None, -(c.metric(first).value or 0.0), c.b))
    notes = []
    for s, r in zip(sides, reps):
        notes += [x for x in s.notes + r.notes if x not in notes]
    if not keep:
        notes.append("the inputs' layers did not all fit in memory; each was read again for every pair it is in")
    if layers is not None and not any(s.info.layers is not None for s in sides):
        notes.append(f"--layers {layers} selected nothing: no input has layers")
    timing = {"total_seconds": round(time.perf_counter() - t0, 6)}
    return MatrixResult(tuple(s.info for s in sides), n, pre, tuple(names), tuple(cells), diagonal,
                        0 if reference is not None else None, tuple(notes), u, __version__, timing,
                        pairing=pairing)


def _fits_all(sides: list[_Side], pre) -> bool:
    """Whether every layer of every input fits in half the free memory."""
    total = 0
    for s in sides:
        if s.plan is None:
            return True
        (n, d), itemsize, _ = s.plan
        total += len(s.source) * n * d * (8 if itemsize == 8 else 4)
    avail = _memory_limit()
    return total <= _LAYER_CACHE_BYTES and (avail is None or total <= avail // 2)
