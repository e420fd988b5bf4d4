"""One Options object per run: built once from the CLI or the API keywords, validated once, then trusted."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from repalign.errors import UsageError
from repalign.metrics import CI_METHODS, Choice, parse_metrics
from repalign.neighbors import DISTANCES
from repalign.preprocess import PRESETS, Preprocessing
from repalign.results import UncertaintySettings

DEFAULT_K = 10
# Resamples and permutations are drawn one by one; beyond this many a run would take days, and the Monte
# Carlo error (about 1/sqrt(B)) is already far below the rounding of the report.
MAX_DRAWS = 1_000_000


@dataclass(frozen=True)
class Options:
    """Everything that decides the numbers of a compare, sweep or matrix run (not how they are shown)."""

    metrics: tuple[Choice, ...]
    """The selected metrics with their parameters, in order (ids unique)."""
    k: int
    distance: str
    preprocessing: Preprocessing
    uncertainty: UncertaintySettings
    ids: tuple[str | None, ...] = (None, None)
    """Id key per input (None: pair by row order unless another input names ids)."""
    require_all: bool = False
    max_rows: int | None = None
    layers: tuple[str | None, ...] = (None, None)
    """Layer selection per input (None: all)."""
    allow_external: bool = False
    formats: tuple[str | None, ...] = (None, None)
    """Input format per input, overriding its suffix (None: from the suffix or PATH@FORMAT)."""
    cache: str | None = None
    """Directory of cached neighbour lists (--cache, else REPALIGN_CACHE; None: no cache). It changes how
    the lists are obtained, never the numbers."""
    search: str = "auto"
    """Neighbour search: exact (certified), approx (IVF, recall measured) or auto (by predicted exact time)."""
    recall: float = 0.95
    """Target recall of approximate search (nprobe is raised until a tuning sample reaches it)."""
    workers: int | None = None
    """Worker processes of a Dask LocalCluster started for the run (--workers); None: no local cluster."""
    scheduler: str | None = None
    """Address of an existing Dask scheduler to run on (--scheduler). Neither changes the numbers."""

    @property
    def distributed(self) -> bool:
        """Whether the run's per-layer and per-pair work runs as Dask tasks."""
        return self.workers is not None or self.scheduler is not None

    @property
    def metric_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.metrics)

    def works(self, what: str) -> bool:
        """Whether any selected metric declares this shared work ('lists', 'ordered', 'cross', 'arrays')."""
        return any(getattr(c.spec.work, what) for c in self.metrics)

    @classmethod
    def build(cls, *, metrics=None, k: int | None = None, distance: str = "cosine", clip: float | None = None,
              normalize: bool | None = None, preset: str | None = None, resamples: int = 1000,
              confidence: float = 0.95, seed: int | None = None, ci_method: str = "auto",
              permutations: int | None = None, ids: tuple[str | None, ...] = (None, None),
              require_all: bool = False, max_rows: int | None = None,
              layers: tuple[str | None, ...] = (None, None), allow_external: bool = False,
              formats: tuple[str | None, ...] = (None, None), cache: str | None = None,
              id_options: str = "--ids, --ids-a or --ids-b", search: str = "auto", recall: float = 0.95,
              workers: int | None = None, scheduler: str | None = None) -> Options:
        """Fill unset values from the preset, then the defaults (explicit values win), and check them all.

        ``id_options``: how the command names its id options, for the message of --require-all without ids.
        """
        names = parse_metrics(metrics)
        base: dict = {}
        if preset is not None:
            if preset not in PRESETS:
                raise UsageError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
            base = PRESETS[preset]
        if distance not in DISTANCES:
            raise UsageError(f"unknown --distance '{distance}' (choose from {', '.join(DISTANCES)})")
        k = base.get("k", DEFAULT_K) if k is None else k
        if k < 1:
            raise UsageError(f"--k must be at least 1 (got {k})")
        clip = base.get("clip") if clip is None else clip
        normalize = base.get("normalize", False) if normalize is None else normalize
        pre = Preprocessing(clip=clip, normalize=bool(normalize), preset=preset)
        if require_all and all(key is None for key in ids):
            raise UsageError(f"--require-all needs ids ({id_options})")
        if max_rows is not None and max_rows < 1:
            raise UsageError(f"--max-rows must be at least 1 (got {max_rows})")
        u = _uncertainty(resamples, confidence, seed, ci_method, permutations)
        from repalign.io.selector import check_format_name

        for fmt in formats:
            check_format_name(fmt)
        _check_search(search, recall)
        _check_cluster(workers, scheduler)
        return cls(names, k, distance, pre, u, tuple(ids), require_all, max_rows, tuple(layers), allow_external,
                   tuple(formats), _cache_dir(cache), search, float(recall), workers, scheduler)


def _cache_dir(given: str | None) -> str | None:
    """--cache, else REPALIGN_CACHE. A given path that is a regular file is a clear mistake and an error; any
    other trouble with the directory (the variable's included) only costs the cache, with a note."""
    if given is None:
        return os.environ.get("REPALIGN_CACHE") or None
    if not given:
        raise UsageError("--cache needs a directory (got an empty path)")
    if os.path.isfile(given):
        raise UsageError(f"{given}: --cache names a regular file; give a directory (created if missing)")
    return given


def _check_search(search: str, recall: float) -> None:
    from repalign.search import SEARCH_METHODS

    if search not in SEARCH_METHODS:
        raise UsageError(f"unknown --search '{search}' (choose from {', '.join(SEARCH_METHODS)})")
    if not 0.0 < recall <= 1.0:
        raise UsageError(f"--recall must be greater than 0 and at most 1 (got {recall})")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _check_cluster(workers: int | None, scheduler: str | None) -> None:
    """--workers N (a local cluster of at most one process per CPU) or --scheduler ADDRESS, and dask installed."""
    if workers is not None and scheduler is not None:
        raise UsageError("give --workers (a local cluster) or --scheduler (an existing one), not both")
    if workers is not None:
        cpus = usable_cpus()
        if isinstance(workers, bool) or not isinstance(workers, int):
            raise UsageError(f"workers= must be a whole number of processes (got {workers!r})")
        if workers < 1:
            raise UsageError(f"--workers must be at least 1 (got {workers})")
        if workers > cpus:
            # More processes than CPUs only compete for them, each holding its own layers in memory.
            raise UsageError(f"--workers {workers}: this machine has {cpus} CPU{'s' if cpus > 1 else ''}, so at most "
                             f"{cpus} worker processes help; for more, start a cluster and pass --scheduler")
    if scheduler is not None and not scheduler.strip():
        raise UsageError("--scheduler needs an address (e.g. tcp://10.0.0.5:8786)")
    if workers is not None or scheduler is not None:
        from repalign.engine.distributed import check_available

        check_available()


def _uncertainty(resamples: int, confidence: float, seed: int | None, ci_method: str,
                 permutations: int | None) -> UncertaintySettings:
    """A missing seed is drawn once and reported, so any run can be repeated."""
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
    # "bootstrap" is a quantile interval for CKA (percentile or BCa), so it needs as many replicates.
    if resamples and resamples < 100 and ci_method in ("bootstrap", "percentile", "basic", "bca"):
        raise UsageError(f"--ci-method {ci_method} needs at least 100 resamples (got {resamples})")
    if seed is None:
        entropy = np.random.SeedSequence().entropy  # an int when drawn fresh
        seed = int(entropy) % (2**63)  # type: ignore[arg-type]  # numpy types it as int | Sequence[int] | None
    if seed < 0:
        raise UsageError(f"--seed must be 0 or more (got {seed})")
    return UncertaintySettings(resamples=resamples, confidence=confidence, seed=seed, ci_method=ci_method,
                               permutations=1000 if permutations is None else permutations,
                               permutations_explicit=permutations is not None)
