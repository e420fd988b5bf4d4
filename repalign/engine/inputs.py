"""The inputs of a run: open each one (headers only), plan memory, read, and pair their rows."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from repalign import io as _io
from repalign import memory
from repalign import pairing as _pairing
from repalign.errors import InputError, UsageError
from repalign.io import ArrayLayers, Checked, LayerSource
from repalign.io.coerce import as_array
from repalign.io.rows import RowSource
from repalign.metrics import list_depth
from repalign.options import Options
from repalign.results import InputInfo, UncertaintySettings
from repalign.validation import as_embedding, check_pair

# A sweep keeps its layers in memory only up to this size; larger inputs are read layer by layer again for
# each pair, so memory stays at one layer pair plus the neighbour lists (issue: 13×13 layers at n=50,000).
LAYER_CACHE_BYTES = 1 << 30

Plan = tuple[tuple[int, int], int, int]
"""(shape of one layer, bytes per value, bytes resident once read)."""


@dataclass
class Side:
    """One input as opened: its description, its layers (a LayerSet or an in-memory adapter) and its plan."""

    info: InputInfo
    source: LayerSource
    notes: list[str]
    plan: Plan | None = None
    """From headers only; None if it cannot be told cheaply."""
    stream: Streaming | None = None
    """Set by :func:`plan_memory` when this input is read block by block instead of whole."""

    @property
    def n(self) -> int:
        return int(self.info.shape[0] or 0) if self.info.shape else 0


def selectors(xs: list, formats: tuple[str | None, ...] = ()) -> list:
    """Each file input as a Selector, with its --format-a/--format-b applied (arrays are kept as given).

    Standard input can be read once: '-' may name one input only.
    """
    out = [x if not isinstance(x, (str, os.PathLike)) else
           _io.parse_selector(x, formats[i] if i < len(formats) else None) for i, x in enumerate(xs)]
    stdin = [x for x in out if isinstance(x, _io.Selector) and _io.selector.split_format(x.path)[0] == "-"]
    if len(stdin) > 1:
        raise UsageError("'-' (standard input) can be read once, so it may name one input only")
    return out


def open_side(x, label: str, allow_external: bool = False, layers: str | None = None,
              only_layered: bool = False) -> Side:
    """A file selector or an array → its (selected) layers, its description and its memory plan; no values
    read yet (:func:`read_side` reads a single array once the plan is accepted).

    ``only_layered``: apply ``layers`` to layered inputs and ignore it for single arrays (matrix --layers).
    """
    if isinstance(x, (str, os.PathLike, _io.Selector)):
        src = _io.open_layers(x, allow_external=allow_external)
        src = src.select(layers) if src.layered or not only_layered else src
        info = InputInfo(label, src.selector.path, src.key, src.format, tuple(src.shape), src.stored_dtype,
                         src.labels if src.layered else None)
        plan = _io.describe(_io.Selector(src.selector.path, src.keys[0]))
        notes = [f"{info.name}: bfloat16 values widened to float32"] if src.stored_dtype == "bfloat16" else []
        return Side(info, src, notes, plan)
    arr, coerced = as_array(x, f"array {label}")
    arr_src = ArrayLayers(arr, f"array {label}")
    arr_src = arr_src.select(layers) if arr_src.layered or not only_layered else arr_src
    info = InputInfo(label, None, None, "array", arr_src.shape, str(arr_src.array.dtype),
                     arr_src.labels if arr_src.layered else None)
    arr = arr_src.array
    array_plan = ((arr.shape[0], arr.shape[-1]), arr.dtype.itemsize, 0) if arr.ndim in (2, 3) else None
    return Side(info, arr_src, coerced, array_plan)


class Streaming:
    """A file's layers, planned to be read as row blocks (:class:`~repalign.engine.streamed.StreamedLayer`).

    The same interface as the source it wraps; ``budget`` is what the run planned for the neighbour search's
    float32 blocks, ``spare`` what a step may still materialise.
    """

    def __init__(self, source: LayerSource, budget: int, spare: int | None):
        self.source, self.budget, self.spare = source, budget, spare
        self.labels, self.layered, self.where, self.shape = source.labels, source.layered, source.where, source.shape

    def __len__(self) -> int:
        return len(self.source)

    def layer_name(self, i: int) -> str:
        return self.source.layer_name(i)

    def read(self, i: int) -> np.ndarray:
        return self.source.read(i)

    def rows(self, i: int) -> RowSource | None:
        return self.source.rows(i)

    def select(self, spec: str | None) -> LayerSource:
        return self if spec is None else Streaming(self.source.select(spec), self.budget, self.spare)


def read_side(side: Side) -> Side:
    """Read and check a single array now, so that a bad file is reported before any pairing; layers are read
    later, one at a time. A streamed input is read later too, a block at a time."""
    if side.stream is not None:
        blocks = side.stream.rows(0) if side.info.layers is None else None
        info = side.info if blocks is None else dataclasses.replace(side.info, shape=blocks.shape,
                                                                   dtype=str(blocks.dtype))
        return dataclasses.replace(side, info=info, source=side.stream)
    if side.info.layers is not None:
        return side
    raw = side.source.read(0)
    info = dataclasses.replace(side.info, shape=tuple(raw.shape), dtype=str(raw.dtype))
    array, notes = as_embedding(raw, info.name)
    return Side(info, Checked(side.source, array), side.notes + notes, side.plan)


# ---------------------------------------------------------------- memory


def memory_limit() -> int | None:
    """The memory a run may plan for: what is free, capped by REPALIGN_MEMORY_LIMIT (checked even if unused)."""
    limit = memory.env_override()
    avail = memory.available_bytes()
    if limit is not None:
        avail = limit if avail is None else min(avail, limit)
    return avail


def plan_memory(sides: list[Side], options: Options, u: UncertaintySettings) -> bool:
    """Refuse, before any full read, a run that needs more memory than the machine has, or plan it streamed.

    Every pair with the first input is planned (the largest of them bounds the run). A run whose in-memory
    plan does not fit, or would hold more than :data:`memory.STREAM_WORKING_BYTES` of working memory, reads
    its .npy, HDF5 and parquet inputs as row blocks instead (each such :class:`Side` gets ``stream``), when
    its metrics can work that way and the streamed plan fits. Returns whether every selected layer of every
    input can stay in memory (else layers are read again for each pair they are in).
    """
    verdicts = [_plan_pair(sides[0], s, options, u) for s in sides[1:]]
    streamed = [v for v in verdicts if isinstance(v, _Streamed)]
    if streamed:
        budget = min(v.budget for v in streamed)
        spare = min((v.spare for v in streamed if v.spare is not None), default=None)
        for side in sides:
            if _streams(side):
                side.stream = Streaming(side.source, budget, spare)
                side.notes.append(f"{side.info.name}: streamed from the file in row blocks "
                                  f"({streamed[0].why}; planned {memory.gb(streamed[0].total)})")
        # A streamed layer is a view kept for the whole run (its blocks are read when used), so the run takes
        # the same route as when every layer is in memory (e.g. the CKA Gram route), hence the same numbers.
        return all(_streams(side) for side in sides)
    return all(v is True for v in verdicts) and _fits_all(sides)


@dataclass(frozen=True)
class _Streamed:
    """A pair planned to stream: the search's block budget, what is left to spare, the plan and why."""

    budget: int
    spare: int | None
    total: int
    why: str


def _streams(side: Side) -> bool:
    """Whether the side's file can be read as row blocks (.npy, HDF5, parquet), from its format alone."""
    return side.info.path is not None and side.info.format in STREAMED_FORMATS


# The formats whose readers give row blocks (Reader.rows); every other one is read whole.
STREAMED_FORMATS = ("npy", "hdf5", "parquet")
# Metrics that read the arrays only through blocked kernels (CKA sums, jackknife rows), so they can stream.
STREAMED_ARRAY_METRICS = ("cka", "cka-unbiased")


def _plan_pair(sa: Side, sb: Side, options: Options, u: UncertaintySettings) -> bool | _Streamed:
    """Works from headers and metadata only (the sides' plans); True if both inputs' layers fit at once, a
    :class:`_Streamed` when the pair is read as row blocks."""
    avail = memory_limit()
    if sa.plan is None or sb.plan is None:
        _check_reads(sa, sb, avail)
        return True  # loading will report the problem precisely
    plans = (sa.plan, sb.plan)
    # Row counts may differ when ids pair the rows: at most the smaller count is compared.
    n = min(plans[0][0][0], plans[1][0][0])
    layers = (len(sa.source), len(sb.source))
    dims = (plans[0][0][1], plans[1][0][1])
    depth = max(list_depth(n, options.k, u.resamples), 1)
    work = (8 if plans[0][1] == 8 else 4, 8 if plans[1][1] == 8 else 4)
    approx = options.works("lists") and _may_approximate(options.search, n, max(dims))
    parts = memory.estimate(
        n, dims, resident=(plans[0][2], plans[1][2]),
        work_itemsize=work, preprocess=bool(options.preprocessing.steps()),
        neighbors=options.works("lists"), depth=depth, k=options.k, cka=options.works("cross"),
        cka_permutations=u.permutations_explicit and u.permutations > 0, resamples=u.resamples, layers=layers,
        metric_bytes=max(c.spec.memory(n, dims[0], dims[1], {**c.values, "k": options.k})
                         for c in options.metrics),
        approx_index=approx)
    what = f"comparing {n} items ({dims[0]} and {dims[1]} dimensions"
    what += f", {layers[0]}×{layers[1]} layers)" if layers != (1, 1) else ")"
    fits = avail is None or parts["total"] <= avail
    large = parts["working"] > memory.STREAM_WORKING_BYTES
    if not fits or large:
        streamed = _plan_streamed(sa, sb, options, u, n, dims, depth, approx, avail, what, must=not fits)
        if streamed is not None:
            return streamed
    memory.check(parts, avail, what)
    all_layers = sum(count * n * p[0][1] * w for count, p, w in zip(layers, plans, work))
    room = (avail - parts["total"]) if avail is not None else LAYER_CACHE_BYTES
    return all_layers <= min(room // 2, LAYER_CACHE_BYTES)


def _plan_streamed(sa: Side, sb: Side, options: Options, u: UncertaintySettings, n: int, dims: tuple[int, int],
                   depth: int, approx: bool, avail: int | None, what: str, must: bool) -> _Streamed | None:
    """The streamed plan of a pair, or None when the in-memory plan should be used (it fits, and streaming
    is not possible or gains nothing). ``must``: the in-memory plan does not fit, so a reason not to stream
    is an error (exit 2) naming it."""
    sides = (sa, sb)
    blockers = [f"{s.info.name} is {s.info.format}, which is read whole (stream .npy, HDF5 or parquet)"
                for s in sides if not _streams(s)]
    whole = [c.name for c in options.metrics if c.spec.work.arrays and c.name not in STREAMED_ARRAY_METRICS]
    if whole:
        blockers.append(f"{', '.join(dict.fromkeys(whole))} need{'s' if len(set(whole)) == 1 else ''} both "
                        "whole arrays in memory")
    if blockers:
        if must and whole:
            nbytes = n * (dims[0] + dims[1]) * 8
            raise InputError(f"{what}: {blockers[-1]} (about {memory.gb(nbytes)} in float64) but only "
                             f"{memory.gb(avail or 0)} is available; drop {', '.join(dict.fromkeys(whole))}, "
                             "compare fewer items (--max-rows) or raise REPALIGN_MEMORY_LIMIT")
        return None
    resident = tuple(0 if _streams(s) else (s.plan[2] if s.plan else 0) for s in sides)
    units = [s.source.rows(0) for s in sides]
    unit_bytes = sum((r.unit_rows if r is not None else 1) * d * 8 for r, d in zip(units, dims))
    parts = memory.estimate_streamed(
        n, dims, resident=(resident[0], resident[1]), neighbors=options.works("lists"), depth=depth,
        k=options.k, cka=options.works("cross"), resamples=u.resamples, layers=(len(sa.source), len(sb.source)),
        approx_index=approx, normalize=options.preprocessing.normalize, unit_bytes=unit_bytes)
    if avail is not None and parts["total"] > avail:
        if must:
            memory.check(parts, avail, what + ", even read in row blocks,")
        return None
    room = None if avail is None else avail - parts["total"]
    budget = memory.search_budget(n, max(dims), room)
    why = "the in-memory plan needs more than is available" if must else (
        f"in memory it would hold more than {memory.gb(memory.STREAM_WORKING_BYTES)} beyond the inputs")
    return _Streamed(budget, room, parts["total"], why)


def _may_approximate(method: str, n: int, d: int) -> bool:
    """Whether the search may build an approximate index for n×d layers (auto switches above its threshold)."""
    from repalign.search import AUTO_EXACT_SECONDS, predicted_exact_seconds

    return method == "approx" or (method == "auto" and predicted_exact_seconds(n, d) > AUTO_EXACT_SECONDS)


def _check_reads(sa: Side, sb: Side, avail: int | None) -> None:
    """Without a full plan, still refuse reading an input that alone cannot fit."""
    for side in (sa, sb):
        if side.plan is not None:
            size = side.plan[2]
        elif side.info.path is not None and side.info.layers is None:
            size = _io.stored_bytes(_io.Selector(side.info.path, side.info.key)) or 0
        else:
            continue
        parts = {"base": memory.BASE_BYTES, "inputs": size, "working": 0, "total": memory.BASE_BYTES + size}
        memory.check(parts, avail, f"reading {side.info.name}")


def _fits_all(sides: list[Side]) -> bool:
    """Whether every layer of every input fits in half the free memory.

    Only paired rows are kept, so the smallest row count bounds them (for two inputs this is implied by
    :func:`_plan_pair`, whose estimate also counts the working memory).
    """
    if any(s.plan is None for s in sides):
        return True
    n = min(s.plan[0][0] for s in sides if s.plan is not None)
    total = 0
    for s in sides:
        assert s.plan is not None
        (_, d), itemsize, _ = s.plan
        total += len(s.source) * n * d * (8 if itemsize == 8 else 4)
    avail = memory_limit()
    return total <= LAYER_CACHE_BYTES and (avail is None or total <= avail // 2)


# ---------------------------------------------------------------- pairing


@dataclass(frozen=True)
class _Wording:
    """How compare and matrix name their id options in messages."""

    ids: str
    files: str


_WORDING = {True: _Wording("--ids-a/--ids-b", "--ids needs both inputs to be files (pass the arrays already aligned)"),
            False: _Wording("--ids", "--ids needs every input to be a file")}


def pair_rows(xs: list, sides: list[Side], options: Options, seed: int, notes: list[str], *,
              compare: bool) -> tuple[_pairing.Pairing, list[np.ndarray | None]]:
    """Rows of every input: by row order (equal counts) or joined on ids present in all; then subsampled.

    ``compare``: two inputs of ``repalign compare``, whose files' ids are also checked when rows are paired by
    position (a warning if they disagree).
    """
    wording = _WORDING[compare]
    wanted = any(key is not None for key in options.ids)
    files = all(_pairing.is_file(x) for x in xs)
    if wanted and not files:
        raise UsageError(wording.files)
    sels = [x if isinstance(x, _io.Selector) else _io.parse_selector(x) for x in xs] if files else []
    found: list[str | None] = [None] * len(xs)
    if files and (wanted or compare):
        found = [_pairing.find_ids(sel, None if key in (None, "auto") else key) for sel, key in zip(sels, options.ids)]
    if wanted:
        pairing, rows = _join_ids(sels, found, sides, options.require_all, wording, compare)
    else:
        pairing, rows = _by_position(sides)
        if compare and None not in found:
            _warn_if_ids_differ(sels, found, notes)
    return _subsample(pairing, rows, options.max_rows, seed)


def _join_ids(sels, found, sides, require_all: bool, wording: _Wording, compare: bool):
    for sel, key in zip(sels, found):
        if key is None:
            raise InputError(f"{sel.path}: no id array found (looked for {', '.join(_pairing.ID_NAMES)}); "
                             f"name it with {wording.ids}")
    ids = [_pairing.read_ids(sel.path, key) for sel, key in zip(sels, found)]
    for arr, side, sel, key in zip(ids, sides, sels, found):
        if arr.size != side.n:
            raise InputError(f"{sel.path}:{key} has {arr.size} ids but {side.info.name} has {side.n} rows")
    wheres = [f"{sel.path}:{key}" for sel, key in zip(sels, found)]
    if compare:
        rows = list(_pairing.join(ids[0], ids[1], (wheres[0], wheres[1]), require_all=require_all))
    else:
        rows = _pairing.join_many(ids, wheres, require_all=require_all)
    counts = tuple(s.n for s in sides)
    paired = int(rows[0].size)
    pairing = _pairing.Pairing("id", tuple(found), counts, paired, tuple(c - int(r.size) for c, r in zip(counts, rows)))
    if paired == 0:
        if compare:
            raise InputError(f"{wheres[0]} and {wheres[1]} have no id in common")
        raise InputError(f"{wheres[0]}: no id is present in every input")
    return pairing, rows


def _by_position(sides: list[Side]) -> tuple[_pairing.Pairing, list[np.ndarray | None]]:
    for side in sides[1:]:
        check_pair(sides[0].info.shape, side.info.shape, sides[0].info.name, side.info.name)
    n = sides[0].n
    m = len(sides)
    return _pairing.Pairing("row", (None,) * m, (n,) * m, n, (0,) * m), [None] * m


def _warn_if_ids_differ(sels, found, notes: list[str]) -> None:
    """Both files carry ids: pairing by row order is only right if they agree row by row."""
    id_a = _pairing.read_ids(sels[0].path, found[0])
    id_b = _pairing.read_ids(sels[1].path, found[1])
    if id_a.dtype.kind != id_b.dtype.kind or not np.array_equal(id_a, id_b):
        notes.append(f"both files carry ids ({found[0]}, {found[1]}) that differ row by row; rows were "
                     "paired by position; pass --ids auto to pair them by id")


def _subsample(pairing: _pairing.Pairing, rows: list, max_rows: int | None, seed: int):
    if max_rows is not None and max_rows < pairing.paired:
        pick = _pairing.subsample(pairing.paired, max_rows, seed)
        rows = [pick if r is None else r[pick] for r in rows]
        pairing = dataclasses.replace(pairing, max_rows=max_rows, subsample_seed=seed)
    return pairing, rows
