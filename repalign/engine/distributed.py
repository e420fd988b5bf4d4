"""Running a matrix or a sweep on a Dask cluster: one task per input layer, one per pair; paths shipped, not arrays.

Data flow (see docs/architecture.md, "On a cluster"):

1. the driver opens, plans and pairs the inputs as in a local run (:func:`repalign.engine.prepare`) and checks
   every pair's k and shape limits before anything is submitted;
2. one *layer task* per (input, layer) opens the input on its worker from the path given, reads that layer,
   pairs and preprocesses its rows and does the layer's own work (neighbour lists through the run's search
   backend and ``--cache``, CKA statistics) exactly as :class:`~.representation.Representation` does locally;
   a layer of at least ``REPALIGN_SHARD_MIN_ROWS`` rows (100,000) has its search's query rows split into
   *shard tasks*, two per worker thread, which the layer task submits and waits for (seceded): each re-reads
   the layer from the path and searches its rows against the whole layer (:mod:`repalign.search.sharded`);
3. one *pair task* per pair of inputs reads its two inputs' layers and scores them with
   :func:`~.scoring.score_pair`, the layer tasks' lists and statistics passed in (it never searches); one
   *self task* per input gives a matrix's diagonal;
4. the driver gathers the results and merges, in the local run's order, each input's notes, the search
   backends' records (for the report's ``search`` object) and the cache's notes.

Every number is computed by the same code as in a local run, in one thread per worker, so the report is the
same as a single-process run's apart from its timings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from repalign import __version__
from repalign import io as _io
from repalign import search as _search
from repalign.engine.cache import ListCache
from repalign.engine.representation import Representation
from repalign.errors import ClusterError, RepalignError, UsageError
from repalign.metrics import cka as _cka
from repalign.metrics import list_depth
from repalign.options import Options
from repalign.preprocess import Preprocessing
from repalign.results import MetricResult, Sweep, UncertaintySettings
from repalign.search.sharded import SHARD_MIN_ROWS, Shards, shard_count

EXTRA_HINT = "pip install 'repalign[dask]'"
# How long to wait for --scheduler to answer: long enough for a busy scheduler on a cluster's network, short
# enough that a wrong address fails while the user is still looking.
CONNECT_TIMEOUT_SECONDS = 10.0
# Tests only: kill the worker process running a layer task, or a search shard (see _maybe_die).
KILL_HOOK = "REPALIGN_TEST_KILL_WORKER"
SHARD_KILL_HOOK = "REPALIGN_TEST_KILL_SHARD"
# Read by the driver only (the value is shipped in LayerPlan): layers of at least this many rows are searched
# in shards when the cluster has two or more worker threads (default search.sharded.SHARD_MIN_ROWS).
SHARD_ROWS_ENV = "REPALIGN_SHARD_MIN_ROWS"


# ---------------------------------------------------------------- what is shipped


@dataclass(frozen=True)
class InputSpec:
    """Everything a worker needs to open one input as the driver did: its path and options, never its values."""

    path: str
    """The path as the driver resolved it (absolute), which every worker must see."""
    shown: str
    """The path as given, which names the input in notes and messages exactly as in a local run."""
    key: str | None
    label: str
    name: str
    """How the cache's notes name the input (the driver's InputInfo.name)."""
    layers: str | None
    only_layered: bool
    allow_external: bool
    rows: np.ndarray | None
    """The paired (and subsampled) rows, or None for all rows in order."""
    pre: Preprocessing
    keep: bool

    def source(self) -> _io.LayerSource:
        """The input's selected layers, opened from the absolute path but named by the path as given."""
        from repalign.io import Checked
        from repalign.validation import as_embedding

        try:
            src = _io.open_layers(_io.Selector(self.path, self.key), allow_external=self.allow_external)
        except RepalignError as exc:
            raise ClusterError(f"worker {_worker_name()} cannot read {self.path} ({exc}); workers open the input "
                               "paths themselves, so every worker must see them at the same path") from None
        src = dataclasses.replace(src, selector=_io.Selector(self.shown, self.key))
        src = src.select(self.layers) if src.layered or not self.only_layered else src
        if src.layered:
            return src
        array, _ = as_embedding(src.read(0), self.name)  # its notes are the driver's already
        return Checked(src, array)

    def representation(self, options: Options, seed: int, shards: Shards | None = None
                       ) -> Representation:
        """The input as a local run's Representation, with the run's search backend and cache; its query rows
        searched by ``shards`` when given."""
        cache = ListCache(options.cache) if options.cache is not None else None
        search: Any = _search.make(options.search, options.recall, seed, options.k)
        if shards is not None:
            search = _search.ShardedSearch(search, shards)
        return Representation(self.source(), self.label, self.rows, self.pre, keep=self.keep, cache=cache,
                              name=self.name, search=search)

    def layer(self, i: int) -> np.ndarray:
        """Layer i read, paired and preprocessed as its layer task reads it (the same code, so the same array)."""
        return Representation(self.source(), self.label, self.rows, self.pre, keep=False, name=self.name).layer(i)

    def seeded(self, work: list[LayerWork]) -> Seeded:
        return Seeded(self.source(), self.label, self.rows, self.pre, keep=self.keep, name=self.name, work=work)


@dataclass(frozen=True)
class LayerPlan:
    """The per-layer work a run needs, the same for every layer (n is the paired row count)."""

    depth: int
    k: int
    distance: str
    ordered: bool
    lists: bool
    cka: bool
    shards: int = 1
    """Query-row shards of each layer's search (1: searched whole in its layer task); chosen by the driver
    (:func:`_shards`) from n and the cluster's worker threads."""


@dataclass(frozen=True)
class LayerWork:
    """What a layer task sends back: the layer's lists and statistics, and what its search and cache noted."""

    layer: int
    lists: np.ndarray | None
    ordered: bool
    cka: _cka.LayerStats | None
    notes: tuple[str, ...]
    search: Any
    """The worker's search backend after this layer (its records and notes are merged on the driver)."""
    cache: ListCache | None
    shards: int = 1
    """How many shard tasks searched this layer (1: its layer task alone)."""


@dataclass(frozen=True)
class PairOutcome:
    """What a pair task sends back: what ``score_pair`` returned and timed, and the notes it added."""

    results: tuple[MetricResult, ...]
    sweep: Sweep | None
    notes: tuple[tuple[str, ...], tuple[str, ...]]
    """Each side's notes after scoring (a local run adds them to its Representations)."""
    timing: dict


@dataclass(frozen=True)
class Scored:
    """A distributed run's results, and its inputs as the driver now sees them (lists, notes, records merged)."""

    reps: list[Representation]
    cache: ListCache | None
    pairs: list[PairOutcome]
    diagonal: list[tuple[MetricResult, ...]]


class _NoSearch:
    """The search backend of a pair task: its layer tasks searched already, so a search here would be a bug."""

    method = "none"

    def __init__(self) -> None:
        self.notes: list[str] = []

    def lists(self, X: np.ndarray, depth: int, distance: str, ordered: bool, label: str) -> np.ndarray:
        raise RuntimeError(f"{label}: neighbour lists were not computed by its layer task")

    def describe(self) -> dict:
        return {}


class Seeded(Representation):
    """A Representation whose layers' lists and CKA statistics came from the layer tasks.

    Anything else (layers, counts, statistics a layer task did not compute) is computed as usual.
    """

    def __init__(self, source: _io.LayerSource, label: str, rows: np.ndarray | None, pre: Preprocessing,
                 keep: bool, name: str, work: list[LayerWork], search: Any = None):
        super().__init__(source, label, rows, pre, keep=keep, cache=None, name=name,
                         search=_NoSearch() if search is None else search)
        self.work = {w.layer: w for w in work}

    def lists(self, i: int, depth: int, distance: str, k: int, ordered: bool = False) -> np.ndarray:
        w = self.work.get(i)
        if w is not None and w.lists is not None and w.lists.shape[1] == depth and (w.ordered or not
                                                                                   (ordered or depth > k)):
            return w.lists
        return super().lists(i, depth, distance, k, ordered)

    def cka(self, i: int, with_sxx: bool = True) -> _cka.LayerStats:
        w = self.work.get(i)
        return w.cka if w is not None and w.cka is not None else super().cka(i, with_sxx)


# ---------------------------------------------------------------- the tasks (run on workers)


def _layer_task(spec: InputSpec, i: int, plan: LayerPlan, options: Options, u: UncertaintySettings,
                version: str) -> LayerWork:
    _check_version(version)
    _maybe_die(KILL_HOOK)
    shards = (Shards(plan.shards, _ShardTasks(spec, i, options, version))
              if plan.shards > 1 and plan.lists else None)
    r = spec.representation(options, u.seed, shards)
    if i > 0:
        r.layer(0)  # a local run reads layer 0 first: a layer of another shape is reported against it
    x = r.layer(i)
    lists = r.lists(i, plan.depth, plan.distance, plan.k, plan.ordered) if plan.lists else None
    # Statistics of a layer wider than n are not used by cross(), whose Gram route then needs no per-layer work.
    stats = r.cka(i) if plan.cka and x.shape[1] <= x.shape[0] else None
    return LayerWork(i, lists, plan.ordered or plan.depth > plan.k, stats, tuple(r.notes),
                     _search.unsharded(r.search), r.cache, plan.shards if shards is not None and shards.runs else 1)


@dataclass(frozen=True)
class _ShardTasks:
    """Runs a search's row job as one Dask task per row range, from inside a layer task.

    ``worker_client`` secedes the layer task from its worker's thread while it waits, so that worker can run
    shards too (a one-thread worker would otherwise wait on itself). Shards are submitted with a higher
    priority than layer tasks still queued, so freed threads take shards first and fewer layers are held at
    once.
    """

    spec: InputSpec
    layer: int
    options: Options
    version: str

    def __call__(self, job: Any, ranges: list[tuple[int, int]], label: str) -> list[tuple[np.ndarray, int]]:
        from distributed import KilledWorker, worker_client

        tag = uuid.uuid4().hex[:8]
        with worker_client() as client:
            futures = [client.submit(_shard_task, self.spec, self.layer, job, start, stop, self.version,
                                     pure=False, priority=1, key=f"repalign-shard-{self.layer}-{s}-{tag}")
                       for s, (start, stop) in enumerate(ranges)]
            try:
                return client.gather(futures)
            except KilledWorker as exc:
                raise ClusterError(f"{_where(self.options)}: a search shard of {label} killed its worker "
                                   f"{exc.allowed_failures + 1} times (last {exc.last_worker.address}); usually out "
                                   "of memory (each shard holds the whole layer); nothing was written") from None


def _shard_task(spec: InputSpec, i: int, job: Any, start: int, stop: int, version: str) -> tuple[np.ndarray, int]:
    """Rows start..stop−1 of layer i searched by ``job`` against the whole layer, re-read from the input's path."""
    from repalign.neighbors import _float32_copy
    from repalign.validation import row_norms

    _check_version(version)
    _maybe_die(SHARD_KILL_HOOK)
    x = spec.layer(i)
    norms = row_norms(x)
    return job(x, _float32_copy(x, norms, job.distance), norms, np.arange(start, stop, dtype=np.int64))


def _pair_task(a: InputSpec, work_a: list[LayerWork], b: InputSpec, work_b: list[LayerWork], options: Options,
               u: UncertaintySettings, version: str) -> PairOutcome:
    from repalign.engine.scoring import score_pair

    _check_version(version)
    ra, rb = a.seeded(work_a), b.seeded(work_b)
    timing: dict = {}
    results, sweep = score_pair(ra, rb, options, u, timing=timing)
    return PairOutcome(results, sweep, (tuple(ra.notes), tuple(rb.notes)), timing)


def _self_task(spec: InputSpec, work: LayerWork, options: Options, u: UncertaintySettings,
               version: str) -> tuple[MetricResult, ...]:
    from repalign.engine.scoring import self_scores

    _check_version(version)
    return self_scores(spec.seeded([work]), options, u)


def _check_version(version: str) -> None:
    """A worker of a shared cluster may run another repalign: its numbers could differ, so refuse it."""
    if version != __version__:
        raise ClusterError(f"worker {_worker_name()} runs repalign {__version__}, this run needs {version}: install "
                           "the same version on every worker")


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "(local)"


def _maybe_die(name: str) -> None:
    """Tests only: ``REPALIGN_TEST_KILL_WORKER=always`` kills every worker that runs a layer task
    (``REPALIGN_TEST_KILL_SHARD``: a search shard); a directory kills only the first (it leaves a mark there),
    so a retried task then succeeds."""
    hook = os.environ.get(name)
    if not hook:
        return
    if hook != "always":
        try:
            os.close(os.open(os.path.join(hook, "killed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os._exit(1)


# ---------------------------------------------------------------- the driver


def check_available() -> None:
    """--workers and --scheduler need dask.distributed (an optional extra)."""
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise UsageError(f"--workers and --scheduler need dask.distributed: {EXTRA_HINT}")


def check_inputs(xs: list) -> None:
    """Workers open every input from its path: refuse arrays and standard input before anything is read."""
    for number, x in enumerate(xs, 1):
        if not isinstance(x, (str, os.PathLike, _io.Selector)):
            raise UsageError(f"input {number} is an in-memory array, but workers read their inputs from files: "
                             "save it (e.g. numpy.save) on storage every worker sees, or run without workers")
        path = x.path if isinstance(x, _io.Selector) else os.fspath(x)
        if path == _io.selector.STDIN or path.startswith((_io.selector.STDIN + "@", _io.selector.STDIN + ":")):
            raise UsageError("'-' (standard input) cannot be read by workers: save it to a file on storage every "
                             "worker sees, or run without --workers/--scheduler")


def score(run: Any, xs: list, options: Options, todo: list[tuple[int, int]], *, compare: bool, diagonal: bool,
          progress: Callable[[str], None] | None = None) -> Scored:
    """Score the pairs ``todo`` (and each input against itself when ``diagonal``) of a prepared run on the
    cluster that ``options`` names; ``xs`` and ``compare`` as given to :func:`repalign.engine.prepare`."""
    from repalign.engine import inputs as _inputs
    from repalign.engine.scoring import _check_choices

    say = progress or (lambda stage: None)
    u = run.uncertainty
    n = run.n
    for p, q in todo:  # before anything is submitted, as a local run checks before any search
        ra, rb = run.reps[p], run.reps[q]
        _check_choices(options.metrics, options.k, n, (_width(run.sides[p]), _width(run.sides[q])),
                       (ra.source.where, rb.source.where))
    sels = _inputs.selectors(xs, options.formats if compare else ())
    layers = options.layers if compare else (options.layers[0],) * len(xs)
    specs = [_spec(sel, r, layer, options, only_layered=not compare)
             for sel, r, layer in zip(sels, run.reps, layers)]
    if options.cache is not None:  # workers of an existing cluster have their own working directory
        options = dataclasses.replace(options, cache=os.path.abspath(options.cache))
    plan = LayerPlan(list_depth(n, options.k, u.resamples), options.k, options.distance, options.works("ordered"),
                     options.works("lists"), options.works("cross"))
    min_rows = _shard_min_rows()
    unsplit: str | None = None
    with _client(options, say) as client:
        if plan.lists:
            shards, unsplit = _shards(client, options, n, min_rows, max(_width(side) for side in run.sides),
                                      sum(len(r) for r in run.reps))
            plan = dataclasses.replace(plan, shards=shards)
        tag = uuid.uuid4().hex[:8]
        layer_futures = [[client.submit(_layer_task, spec, i, plan, options, u, __version__, pure=False,
                                        key=f"repalign-layer-{p}-{i}-{tag}")
                          for i in range(len(r))] for p, (spec, r) in enumerate(zip(specs, run.reps))]
        pair_futures = [client.submit(_pair_task, specs[p], layer_futures[p], specs[q], layer_futures[q], options,
                                      u, __version__, pure=False, key=f"repalign-pair-{p}-{q}-{tag}")
                        for p, q in todo]
        self_futures = ([client.submit(_self_task, spec, layer_futures[p][0], options, u, __version__, pure=False,
                                       key=f"repalign-self-{p}-{tag}") for p, spec in enumerate(specs)]
                        if diagonal else [])
        count = sum(len(r) for r in run.reps)
        say(f"cluster: {count} layer tasks, {len(todo)} pair tasks")
        works = _gather(client, layer_futures, options, "a layer task")
        split = [w for input_works in works for w in input_works if w.shards > 1]
        if split:
            say(f"cluster: {len(split)} layer searches split into {plan.shards} shard tasks each")
        say(f"cluster: {count} layer tasks done; scoring {len(todo)} pairs")
        pairs = _gather(client, pair_futures, options, "a pair task")
        selves = _gather(client, self_futures, options, "a self task") if diagonal else []
    reps = [_merged(r, w, _pair_notes(p, todo, pairs)) for p, (r, w) in enumerate(zip(run.reps, works))]
    if unsplit is not None:  # how the searches ran: a search note, which every report lists
        reps[0].search.notes.append(unsplit)
    cache = run.cache
    if cache is not None:  # in input and layer order, as a local run's searches fill it
        for w in (w for input_works in works for w in input_works):
            if w.cache is not None:
                cache.merge(w.cache)
    return Scored(reps, cache, pairs, selves)


def _shard_min_rows() -> int:
    """The smallest layer searched in shards: REPALIGN_SHARD_MIN_ROWS, read here on the driver only (tests, and
    clusters so large that smaller searches pay to split), else search.sharded.SHARD_MIN_ROWS."""
    given = os.environ.get(SHARD_ROWS_ENV, "").strip()
    if not given:
        return SHARD_MIN_ROWS
    try:
        rows = int(given)
    except ValueError:
        rows = 0
    if rows < 1:
        raise UsageError(f"{SHARD_ROWS_ENV}={given}: expected a whole number of rows of at least 1 (layers with "
                         f"that many rows are searched in shards; unset, {SHARD_MIN_ROWS:,})")
    return rows


def _shards(client: Any, options: Options, n: int, min_rows: int, width: int, layer_tasks: int
            ) -> tuple[int, str | None]:
    """Shards per layer search (two per worker thread the cluster has now, for layers of at least
    ``min_rows``), and a note when a split was not made.

    On a local cluster this machine's memory is known: every worker may run a shard (the whole layer and its
    float32 copy) while as many seceded layer tasks hold their layers, so a split that cannot fit here is not
    made. An existing cluster's workers have memory the driver cannot see: it splits, and a shard that runs its
    worker out of memory is retried, then reported.
    """
    threads = sum(client.nthreads().values()) if options.scheduler is not None else int(options.workers or 1)
    count = shard_count(n, threads, min_rows)
    if count == 1 or options.scheduler is not None:
        return count, None
    from repalign import memory
    from repalign.engine.inputs import memory_limit

    need = threads * _shard_bytes(n, width) + min(threads, layer_tasks) * n * width * 8
    avail = memory_limit()
    if avail is not None and need > avail:
        return 1, (f"neighbour searches not split across the {threads} workers: {threads} search shards and their "
                   f"layer tasks would hold {memory.gb(need)} at once here, {memory.gb(avail)} is free")
    return count, None


def _shard_bytes(n: int, d: int) -> int:
    """What one search shard holds: the layer (float64 at most), its float32 copy and FAISS's candidate lists."""
    return n * d * (8 + 4) + 2**26


def _pair_notes(p: int, todo: list[tuple[int, int]], pairs: list[PairOutcome]) -> list[tuple[str, ...]]:
    """Input p's notes after each pair it is in, in the order the pairs are scored."""
    return [outcome.notes[0 if p == a else 1] for (a, b), outcome in zip(todo, pairs) if p in (a, b)]


def _width(side: Any) -> int:
    shape = side.info.shape
    return int(shape[-1]) if shape else 0


def _spec(sel: Any, r: Representation, layers: str | None, options: Options, only_layered: bool) -> InputSpec:
    return InputSpec(os.path.abspath(sel.path), sel.path, sel.key, r.label, r.shown_name, layers, only_layered,
                     options.allow_external, r.rows, r.pre, r.keep)


def _merged(r: Representation, works: list[LayerWork], pair_notes: list[tuple[str, ...]]) -> Representation:
    """The driver's view of one input: the layer tasks' lists and statistics, their search records, and the
    notes in a local run's order (each layer's, then what scoring its pairs added)."""
    search = r.search
    notes: list[str] = []
    for w in works:
        _absorb(search, w.search)
        notes += [x for x in w.notes if x not in notes]
    for more in pair_notes:
        notes += [x for x in more if x not in notes]
    seeded = Seeded(r.source, r.label, r.rows, r.pre, keep=r.keep, name=r.shown_name, work=works, search=search)
    seeded.notes = notes
    return seeded


def _absorb(into: Any, other: Any) -> None:
    """Merge what a worker's search backend recorded into the driver's (each layer task had its own): records
    and choices by layer, notes once each, in layer order as a local run adds them."""
    for name, value in vars(other).items():
        mine = getattr(into, name, None)
        if isinstance(value, dict) and isinstance(mine, dict):
            mine.update(value)
        elif isinstance(value, list) and isinstance(mine, list):
            mine.extend(v for v in value if v not in mine)
        elif hasattr(value, "__dict__") and type(value) is type(mine):
            _absorb(mine, value)


def _gather(client: Any, futures: list, options: Options, what: str) -> list:
    """The futures' results; a worker that kept dying or a lost scheduler become one-line errors."""
    from distributed import KilledWorker

    try:
        return client.gather(futures)
    except KilledWorker as exc:
        raise ClusterError(f"{_where(options)}: {what} killed its worker {exc.allowed_failures + 1} times (last "
                           f"{exc.last_worker.address}); usually out of memory; nothing was written") from None
    except (OSError, TimeoutError, _cancelled()) as exc:
        raise ClusterError(f"{_where(options)}: lost contact while running {what} "
                           f"({type(exc).__name__}: {exc}); nothing was written") from None


def _cancelled() -> type[BaseException]:
    """What a future raises when the scheduler cancelled it (its own class since distributed 2024.x)."""
    import concurrent.futures

    from distributed import client

    found = getattr(client, "FutureCancelledError", concurrent.futures.CancelledError)
    return found if isinstance(found, type) else concurrent.futures.CancelledError


def _where(options: Options) -> str:
    if options.scheduler is not None:
        return f"the scheduler at {options.scheduler}"
    return f"the local cluster of {options.workers} worker{'s' if options.workers != 1 else ''}"


def _check_address(address: str) -> None:
    """A scheme Dask knows and a location, before connecting (a Client that fails to parse leaves a noisy
    half-made object behind)."""
    from distributed.comm import parse_address
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
    except ValueError as exc:
        raise UsageError(f"--scheduler {address}: not a Dask scheduler address ({exc}); expected e.g. "
                         "tcp://10.0.0.5:8786") from None
    if not location:
        raise UsageError(f"--scheduler {address}: the address has no host; expected e.g. tcp://10.0.0.5:8786")


@contextlib.contextmanager
def _client(options: Options, say: Callable[[str], None]) -> Iterator[Any]:
    """A client of --scheduler, or of a LocalCluster of --workers processes started here and closed after."""
    from distributed import Client, LocalCluster

    if options.scheduler is not None:
        _check_address(options.scheduler)
        say(f"connecting to {options.scheduler}")
        try:
            client = Client(options.scheduler, timeout=CONNECT_TIMEOUT_SECONDS, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"--scheduler {options.scheduler}: no scheduler answered within "
                               f"{CONNECT_TIMEOUT_SECONDS:g} s ({type(exc).__name__}); check the address and that "
                               "the scheduler runs and is reachable from here") from None
        with contextlib.closing(client):
            yield client
        return
    say(f"starting {options.workers} worker processes")
    # One thread per worker: the parallelism is the processes', and BLAS and FAISS run single-threaded (Dask's
    # nanny sets OMP_NUM_THREADS=1 etc.), as the single-process run's results do not depend on it anyway.
    cluster = LocalCluster(n_workers=options.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.CRITICAL)
    with contextlib.closing(cluster), contextlib.closing(Client(cluster, set_as_default=False)) as client:
        yield client
