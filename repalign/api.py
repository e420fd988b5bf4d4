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
from repalign.errors import InputError, UsageError
from repalign.metrics import REGISTRY, PairData, parse_metrics
from repalign.neighbors import DISTANCES
from repalign.results import ComparisonResult, InputInfo, UncertaintySettings
from repalign.validation import as_embedding, check_pair

DEFAULT_K = 10


@dataclass
class _Side:
    info: InputInfo
    array: np.ndarray
    notes: list[str]


def _load_side(x, label: str, allow_external: bool = False) -> _Side:
    """A file selector or an array → checked n×d float array plus its description."""
    if isinstance(x, (str, os.PathLike, _io.Selector)):
        loaded = _io.load(x, allow_external=allow_external)
        info = InputInfo(label, loaded.selector.path, loaded.key, loaded.format, tuple(loaded.array.shape),
                         loaded.stored_dtype)
        array = loaded.array
    else:
        array = np.asanyarray(x)
        info = InputInfo(label, None, None, "array", tuple(array.shape), str(array.dtype))
    array, notes = as_embedding(array, info.name)
    return _Side(info, array, notes)


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
            if ids_arr.size != side.array.shape[0]:
                raise InputError(f"{sel.path}:{key} has {ids_arr.size} ids but {side.info.name} has "
                                 f"{side.array.shape[0]} rows")
        rows_a, rows_b = _pairing.join(id_a, id_b, (f"{sel_a.path}:{found[0]}", f"{sel_b.path}:{found[1]}"),
                                       require_all=require_all)
        na, nb = side_rows = (sa.array.shape[0], sb.array.shape[0])
        pairing = _pairing.Pairing("id", found, side_rows, int(rows_a.size),
                                   (na - int(rows_a.size), nb - int(rows_b.size)))
        if rows_a.size == 0:
            raise InputError(f"{sel_a.path}:{found[0]} and {sel_b.path}:{found[1]} have no id in common")
    else:
        n = check_pair(sa.array, sb.array, sa.info.name, sb.info.name)
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


def _plan_memory(a, b, *, names, k, pre, u) -> None:
    """Refuse, before loading, a run that needs more memory than the machine has."""
    from repalign import memory

    plans = []
    for x in (a, b):
        if isinstance(x, (str, os.PathLike, _io.Selector)):
            plans.append(_io.describe(x))
        else:
            arr = np.asanyarray(x)
            plans.append((arr.shape, arr.dtype.itemsize, 0) if arr.ndim == 2 else None)
    if None in plans or plans[0][0][0] != plans[1][0][0]:
        return  # loading will report the problem precisely
    n = plans[0][0][0]
    neighbors = any(REGISTRY[m].needs_neighbors for m in names)
    depth = min(n - 1, max(3 * k, k + 10) if u.resamples else k)
    parts = memory.estimate(
        n, (plans[0][0][1], plans[1][0][1]), resident=(plans[0][2], plans[1][2]),
        work_itemsize=tuple(8 if p[1] == 8 else 4 for p in plans), preprocess=bool(pre.steps()),
        neighbors=neighbors, depth=max(depth, 1), k=k, cka=any(m.startswith("cka") for m in names),
        cka_permutations=u.permutations_explicit and u.permutations > 0, resamples=u.resamples)
    limit = memory.env_override()
    avail = memory.available_bytes()
    if limit is not None:
        avail = limit if avail is None else min(avail, limit)
    memory.check(parts, avail, f"comparing {n} items ({plans[0][0][1]} and {plans[1][0][1]} dimensions)")


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

    if resamples < 0:
        raise UsageError(f"--resamples must be 0 or more (got {resamples})")
    if permutations is not None and permutations < 0:
        raise UsageError(f"--permutations must be 0 or more (got {permutations})")
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
            max_rows: int | None = None, progress=None) -> ComparisonResult:
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
    ci_method : ``auto`` (each metric's validated default), ``percentile``,
        ``basic``, ``bca`` or ``normal``; a metric that cannot use the
        requested method keeps its default and reports which one ran.
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
    _plan_memory(a, b, names=names, k=k, pre=pre, u=u)
    if progress:
        progress("reading inputs")
    sa = _load_side(a, "a", allow_external)
    sb = _load_side(b, "b", allow_external)
    pairing, rows_a, rows_b = _pair(a, b, sa, sb, ids=ids, ids_a=ids_a, ids_b=ids_b, require_all=require_all,
                                    max_rows=max_rows, seed=u.seed, notes=sa.notes)
    n = pairing.max_rows or pairing.paired
    arr_a = sa.array if rows_a is None else sa.array[rows_a]
    arr_b = sb.array if rows_b is None else sb.array[rows_b]
    xa = _pre.apply(arr_a, pre, sa.info.name)
    xb = _pre.apply(arr_b, pre, sb.info.name)
    t_load = time.perf_counter()

    pair = PairData(xa, xb, k=k, distance=distance, labels=(sa.info.name, sb.info.name), uncertainty=u,
                    progress=progress)
    results = []
    timing = {"load_seconds": t_load - t0}
    for name in names:
        t = time.perf_counter()
        results.append(REGISTRY[name].compute(pair))
        timing[f"{name}_seconds"] = time.perf_counter() - t
    timing["total_seconds"] = time.perf_counter() - t0
    notes = sa.notes + sb.notes + pair.notes
    return ComparisonResult(
        inputs=(sa.info, sb.info), n=n, preprocessing=pre, metrics=tuple(results), notes=tuple(notes),
        uncertainty=u, pairing=pairing,
        version=__version__, timing={key: round(v, 6) for key, v in timing.items()},
    )
