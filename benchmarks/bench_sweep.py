#!/usr/bin/env python
"""Benchmark repalign's layer sweep: all (layer of a, layer of b) pairs against the per-layer searches alone.

What it measures
----------------
The issue's target: for two 13-layer inputs at n = 5,000, d = 768, the full
sweep (mknn + cka, 13 × 13 = 169 layer pairs) must take less than 2 × the cost
of the 26 neighbour searches alone, measured in the same run, and it should be
reported next to the naive pair-by-pair loop. A sweep computes each layer's
neighbour lists and CKA statistics once and reuses them for every pair, so
beyond the searches each pair only costs one float64 CKA cross-product
(n×d by n×d) plus cheap list comparisons.

Every measurement runs in a fresh interpreter (``--worker``), so its peak RSS
is its own. The worker imports numpy, faiss, h5py and all of repalign, records
the RSS right after the imports, runs the measured code, and reports
``ru_maxrss`` (peak RSS) minus that RSS ("peak beyond imports"). The parent
process uses the standard library only, so it adds nothing to the children's
peaks. Measurements:

* ``searches (depth D)``: read each layer of both inputs from HDF5 and run
  ``repalign.neighbors.knn(layer, D, "cosine")``, 26 searches in all; the
  neighbour lists are kept, as the sweep keeps them. D = 10 (= k) is what a
  sweep searches with ``resamples=0``, D = 41 (list_depth with resampling, k = 10) what it
  searches with intervals on. The wall time counted is the searches only; the
  layer reads are timed separately (JSON ``read_s``).
* ``sweep-scores``: ``repalign.compare(a, b, metrics="mknn,cka", resamples=0,
  permutations=0, seed=0)``, every pair's point estimates. Its ratio is taken
  to the searches at depth 10: this is the issue's "sweep / searches".
* ``sweep-defaults``: the same with compare's default uncertainty (1000
  bootstrap resamples; 200 permutations for mknn, the sweep default, max over all pairs),
  seed 0; ratio to the searches at depth 30.
* ``naive``: the pair-by-pair loop: for each of the 169 pairs, read both layers
  and call ``repalign.compare(layer_i, layer_j, metrics="mknn,cka",
  resamples=0, permutations=0, seed=0)`` on the arrays, which redoes both
  searches for every pair. Pairs run in a fixed shuffled order; when not all of
  them are run (``--naive-pairs``, or ``--naive-budget`` exhausted) the time is
  extrapolated linearly to all pairs, and the table says so. The values of the
  pairs it ran are checked against the sweep's cells (they should be equal).

``--memory`` adds the memory check of the issue: a sweep at n = 50,000
(``--memory-n``), d = 768, 13 × 13 layers, from HDF5 (2 GB per side), must not
hold 26 layers of float32 at once; it should need about one layer pair plus
the neighbour lists. It reports the sweep's wall time and peak RSS beyond
imports next to both sizes. Expect 15–20 minutes on a 2-core machine. The disk
space is checked first (2.5 × the size of the two files must be free). repalign
keeps all layers in memory when they total at most 1 GiB and fit in half the
free memory, so below about n = 13,000 the sweep does not stream; pass
``--memory-limit 1G`` (sets REPALIGN_MEMORY_LIMIT for that child) to make a small
smoke run take the streaming path.

Data
----
Synthetic and seeded. Shared latents Z0, Z1 (n × r, r = ``--rank``, default 32)
and, per input, a private latent P. Layer l of an input, at depth t ∈ [0, 1]
(t = l/(L−1) for a, t = (l/(L−1))^0.6 for b, so b's layers move ahead of a's),
is X = (ρ·S(t) + √(1−ρ²)·P) · M_l + σ·E, with S(t) = cos(πt/2)·Z0 + sin(πt/2)·Z1,
a random r × d mixing M_l that rotates slowly from layer to layer, ρ = 0.9 and
σ = ``--sigma`` (default 1). Scores therefore vary smoothly across the layer
grid and stay well above chance. The two inputs are written as float32 HDF5
datasets ``emb`` of shape (n, L, d), chunked (min(n, 1024), 1, d), layer by
layer in row blocks (the generator never holds a whole input).

A frozen copy of ``repalign/`` (taken at start-up, hash printed) is what every
worker imports, so edits made to the tree during a long run cannot mix code
versions; ``--no-snapshot`` uses the live tree instead.

How to run
----------
Use the project's venv. The report (markdown) goes to stdout, progress to stderr::

    # the issue's measurement: n = 5000, d = 768, 13 layers, k = 10 (about 10–15 minutes on 2 cores;
    # --profile adds two runs that show where the sweep spends its time)
    .venv/bin/python benchmarks/bench_sweep.py --profile --wait-idle 60 --json benchmarks/out/bench_sweep.json \\
        > benchmarks/out/bench_sweep.md

    # the memory check alone (n = 50,000; 4 GB of HDF5 under benchmarks/out/; about 15–20 minutes)
    .venv/bin/python benchmarks/bench_sweep.py --memory --skip-main --json benchmarks/out/bench_sweep_mem.json

    # quick smoke run
    .venv/bin/python benchmarks/bench_sweep.py --n 1000 --layers 4 --naive-pairs 4

Options: ``--n --d --layers --k --rank --sigma --seed`` (data and k),
``--repeat`` (fresh-process runs of the searches and sweeps; the median is
shown), ``--naive-pairs``, ``--naive-budget``, ``--no-naive``, ``--no-defaults``,
``--profile`` (one more run of each sweep with timers hooked into repalign's
stages, in that process only, to show where the time goes),
``--memory``, ``--memory-n``, ``--memory-limit``, ``--skip-main``,
``--tmpdir``, ``--keep-data``, ``--wait-idle``, ``--json``. The machine may be
shared: the "others' CPU" column shows how much CPU other processes took
during each measurement (on a quiet machine, close to 0).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _procstats import cpu_seconds, machine_busy_seconds, status_kb

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
KEY = "emb"
RHO = 0.9  # weight of the shared latent in every layer
B_EXPONENT = 0.6  # layer l of b sits at depth (l/(L-1))**B_EXPONENT
MIX_DRIFT = 0.25  # radians the mixing matrix rotates per layer
_T0 = time.perf_counter()
_WHO = "bench_sweep"


def _log(msg: str) -> None:
    print(f"[{_WHO} {time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# worker side
# --------------------------------------------------------------------------------------------


def _import_all() -> int:
    """Import everything a measurement uses, so the baseline includes it; return the RSS (KB) after."""
    import faiss  # noqa: F401
    import h5py  # noqa: F401
    import numpy  # noqa: F401

    import repalign
    import repalign.api
    import repalign.engine  # noqa: F401

    return status_kb().get("VmRSS", 0)


class _Measure:
    """Wall time, CPU, others' CPU and peak RSS beyond the RSS after imports of one block of code."""

    def __init__(self, rss_imports_kb: int):
        self.rss_imports_kb = rss_imports_kb

    def __enter__(self):
        self.cpu0 = cpu_seconds()
        self.busy0 = machine_busy_seconds()[0]
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import resource

        self.wall = time.perf_counter() - self.t0
        self.cpu = cpu_seconds() - self.cpu0
        self.others = max(0.0, machine_busy_seconds()[0] - self.busy0 - self.cpu)
        self.ru_maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
        self.status = status_kb()
        return False

    def as_dict(self) -> dict:
        return {
            "wall_s": self.wall,
            "cpu_s": self.cpu,
            "others_cpu_s": self.others,
            "rss_after_imports_mb": self.rss_imports_kb / 1024,
            "ru_maxrss_mb": self.ru_maxrss_kb / 1024,
            "peak_beyond_imports_mb": (self.ru_maxrss_kb - self.rss_imports_kb) / 1024,
            "vmhwm_mb": self.status.get("VmHWM", 0) / 1024,
            "rss_at_end_mb": self.status.get("VmRSS", 0) / 1024,
        }


def _depths(spec: dict, side: int) -> list[float]:
    count = spec["layers"]
    ts = [i / (count - 1) for i in range(count)]
    return ts if side == 0 else [t**B_EXPONENT for t in ts]


def _task_generate(spec: dict) -> dict:
    """Write both layered inputs to HDF5, one layer at a time in row blocks (see the module docstring)."""
    import h5py
    import numpy as np

    n, L, d, r, sigma, seed = spec["n"], spec["layers"], spec["d"], spec["rank"], spec["sigma"], spec["seed"]
    block = 4096
    rng = np.random.default_rng([seed, 0])
    Z0 = rng.standard_normal((n, r), dtype=np.float32)
    Z1 = rng.standard_normal((n, r), dtype=np.float32)
    t0 = time.perf_counter()
    for side, path in enumerate(spec["paths"]):
        srng = np.random.default_rng([seed, 1 + side])
        P = srng.standard_normal((n, r), dtype=np.float32)
        M0 = srng.standard_normal((r, d), dtype=np.float32)
        M1 = srng.standard_normal((r, d), dtype=np.float32)
        with h5py.File(path, "w") as f:
            ds = f.create_dataset(KEY, shape=(n, L, d), dtype="f4", chunks=(min(n, 1024), 1, d))
            for layer, t in enumerate(_depths(spec, side)):
                c, s = math.cos(math.pi / 2 * t), math.sin(math.pi / 2 * t)
                th = MIX_DRIFT * layer
                M = ((math.cos(th) * M0 + math.sin(th) * M1) / math.sqrt(r)).astype(np.float32)
                for b0 in range(0, n, block):
                    b1 = min(n, b0 + block)
                    lat = RHO * (c * Z0[b0:b1] + s * Z1[b0:b1]) + math.sqrt(1 - RHO**2) * P[b0:b1]
                    noise = np.random.default_rng([seed, 1 + side, layer, b0]).standard_normal(
                        (b1 - b0, d), dtype=np.float32)
                    ds[b0:b1, layer, :] = (lat.astype(np.float32) @ M + np.float32(sigma) * noise)
                if spec.get("verbose"):
                    _log(f"generate: {'ab'[side]} layer {layer + 1}/{L} written")
    return {"generate_s": time.perf_counter() - t0, "bytes": [os.path.getsize(p) for p in spec["paths"]]}


def _task_info(spec: dict) -> dict:
    import faiss
    import h5py
    import numpy as np

    import repalign

    info = {"numpy": np.__version__, "faiss": faiss.__version__, "h5py": h5py.__version__,
            "repalign": repalign.__version__, "repalign_file": repalign.__file__,
            "python": platform.python_version()}
    try:
        info["faiss_omp_threads"] = faiss.omp_get_max_threads()
    except Exception as exc:  # noqa: BLE001 - optional detail
        info["faiss_omp_threads"] = f"unknown ({exc})"
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "num_threads", "version")}
                               for p in threadpool_info()]
    except Exception as exc:  # noqa: BLE001 - threadpoolctl is optional
        info["threadpools"] = f"unknown ({exc})"
    return info


def _task_searches(spec: dict) -> dict:
    """The 26 neighbour searches alone (lists kept, as a sweep keeps them); reads timed apart."""
    base = _import_all()
    import h5py

    from repalign.neighbors import knn

    read_s = search_s = 0.0
    per_layer = []
    lists = []
    with _Measure(base) as m:
        for side, path in enumerate(spec["paths"]):
            with h5py.File(path, "r") as f:
                ds = f[KEY]
                for layer in range(ds.shape[1]):
                    t = time.perf_counter()
                    x = ds[:, layer, :]
                    read_s += time.perf_counter() - t
                    t = time.perf_counter()
                    # As the sweep searches: the set of k certified when no resample reads the order.
                    lists.append(knn(x, spec["depth"], "cosine", label=f"{path} layer {layer}",
                                     ordered=spec["depth"] > spec["k"]))
                    dt = time.perf_counter() - t
                    search_s += dt
                    per_layer.append(dt)
                    del x
    out = m.as_dict()
    out.update(search_s=search_s, read_s=read_s, per_search_s=per_layer, searches=len(lists),
               depth=spec["depth"])
    return out


def _progress_printer(every: float):
    """A compare() progress callback printing to stderr, at most one line per ``every`` s (0: all)."""
    state = {"last": 0.0, "stage": None}

    def progress(msg: str) -> None:
        now = time.perf_counter()
        stage = msg.split(":")[0] if not msg.startswith("scoring") else "scoring"
        if every == 0 or stage != state["stage"] or now - state["last"] >= every:
            _log(f"  compare: {msg}")
            state["last"], state["stage"] = now, stage

    return progress


class _Profiler:
    """Exclusive wall time per hooked function (time in nested hooked calls is charged to those)."""

    def __init__(self):
        self.total: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.stack: list[list] = []  # [label, start, time in children]

    def wrap(self, fn, label: str):
        def wrapper(*a, **kw):
            frame = [label, time.perf_counter(), 0.0]
            self.stack.append(frame)
            try:
                return fn(*a, **kw)
            finally:
                self.stack.pop()
                spent = time.perf_counter() - frame[1]
                self.total[label] = self.total.get(label, 0.0) + spent - frame[2]
                self.calls[label] = self.calls.get(label, 0) + 1
                if self.stack:
                    self.stack[-1][2] += spent

        return wrapper


def _install_profiler() -> _Profiler:
    """Hook repalign's sweep stages in this process only (the package files are not changed)."""
    import dataclasses

    import repalign.engine.representation as rrep
    import repalign.engine.scoring as rscore
    import repalign.io as rio
    import repalign.metrics as rmetrics
    import repalign.metrics.cka as rcka
    import repalign.metrics.cka_jackknife as rjack
    import repalign.neighbors as rnb
    import repalign.stats as rstats
    import repalign.stats.nulls as rnulls

    prof = _Profiler()
    hooks = [
        (rio.LayerSet, "read", "read a layer (HDF5)"),
        (rrep, "as_embedding", "validate a layer"),
        (rnb, "knn", "neighbour search (knn)"),
        (rnulls, "graph_counts", "overlap counts per layer"),
        (rcka, "layer_stats", "CKA layer statistics"),
        (rcka, "cross_product", "CKA cross-product XcᵀYc (float64 GEMM)"),
        (rscore, "cross", "pair CKA sums, besides the cross-product"),
        (rcka, "cross_stats", "cross_stats (best pair, from scratch)"),
        (rjack, "jackknife", "CKA jackknife (best pair)"),
        (rstats, "knn_max_permutation_null", "mknn max-over-pairs permutation null"),
        (rscore, "_full", "best pair's uncertainty, rest"),
    ]
    for owner, attr, label in hooks:
        if hasattr(owner, attr):
            setattr(owner, attr, prof.wrap(getattr(owner, attr), label))
    for name, spec in list(rmetrics.REGISTRY.items()):
        rmetrics.REGISTRY[name] = dataclasses.replace(spec, compute=prof.wrap(spec.compute, f"metric {name}, rest"))
    return prof


def _task_sweep(spec: dict) -> dict:
    base = _import_all()
    import repalign

    prof = _install_profiler() if spec.get("profile") else None

    a, b = (f"{p}:{KEY}" for p in spec["paths"])
    kwargs = dict(metrics="mknn,cka", k=spec["k"], seed=0, **spec["compare_kwargs"])
    with _Measure(base) as m:
        res = repalign.compare(a, b, progress=_progress_printer(spec.get("progress_every", 10.0)), **kwargs)
    out = m.as_dict()
    out["compare_kwargs"] = kwargs
    out["timing"] = dict(res.timing)
    out["notes"] = list(res.notes)
    out["streamed"] = any("did not all fit in memory" in note for note in res.notes)
    if prof is not None:
        out["profile"] = {"exclusive_s": prof.total, "calls": prof.calls}
    out["best"] = {r.name: {"value": r.value, "ci": [r.ci_low, r.ci_high], "p_value": r.p_value,
                            "chance": r.chance, "layer_a": r.params.get("layer_a"),
                            "layer_b": r.params.get("layer_b")} for r in res.metrics}
    if res.sweep is not None:
        out["cells"] = {name: res.sweep.values(name) for name in res.sweep.cells}
        out["chance"] = {name: [[c.chance for c in row] for row in res.sweep.cells[name]]
                         for name in res.sweep.cells}
    return out


def _pair_order(la: int, lb: int) -> list[tuple[int, int]]:
    """All layer pairs in a fixed shuffled order, so that a partial naive run samples the whole grid."""
    import random

    pairs = [(i, j) for i in range(la) for j in range(lb)]
    random.Random(12345).shuffle(pairs)
    return pairs


def _task_naive(spec: dict) -> dict:
    """compare() on the two arrays of each layer pair, searches redone for every pair."""
    base = _import_all()
    import h5py

    import repalign

    fa, fb = (h5py.File(p, "r") for p in spec["paths"])
    da, db = fa[KEY], fb[KEY]
    order = _pair_order(da.shape[1], db.shape[1])
    limit, budget = spec["naive_pairs"], spec["naive_budget"]
    times, values = [], []
    with _Measure(base) as m:
        for number, (i, j) in enumerate(order, 1):
            elapsed = time.perf_counter() - m.t0
            if limit is not None and number > limit:
                break
            if limit is None and times and elapsed + statistics.mean(times) > budget:
                break
            t = time.perf_counter()
            x, y = da[:, i, :], db[:, j, :]
            res = repalign.compare(x, y, metrics="mknn,cka", k=spec["k"], resamples=0, permutations=0, seed=0)
            times.append(time.perf_counter() - t)
            values.append({"i": i, "j": j, **{r.name: r.value for r in res.metrics}})
            if number % 10 == 0 or number == 1:
                _log(f"  naive: pair {number}/{len(order)} ({times[-1]:.2f} s)")
            del x, y
    fa.close()
    fb.close()
    out = m.as_dict()
    done = len(times)
    out.update(pairs_run=done, pairs_total=len(order), pair_s=times, values=values,
               extrapolated=done < len(order),
               estimate_all_s=m.wall * len(order) / done if done else None)
    return out


TASKS = {"generate": _task_generate, "info": _task_info, "searches": _task_searches, "sweep": _task_sweep,
         "naive": _task_naive}


def _worker(spec_json: str) -> None:
    global _WHO
    spec = json.loads(spec_json)
    _WHO = f"  worker {spec['task']}"
    result = TASKS[spec["task"]](spec)
    sys.stdout.flush()
    print("@@RESULT@@" + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# parent side (standard library only)
# --------------------------------------------------------------------------------------------

_WORKER_ENV: dict[str, str] = dict(os.environ)


def snapshot_package(dest: str) -> str:
    """Copy repalign/ to ``dest`` and make the workers import it from there; return the copy's hash."""
    import hashlib

    shutil.copytree(os.path.join(REPO, "repalign"), os.path.join(dest, "repalign"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(os.path.join(dest, "repalign"))):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            h.update(os.path.relpath(path, dest).encode())
            with open(path, "rb") as fh:
                h.update(fh.read())
    old = os.environ.get("PYTHONPATH")
    _WORKER_ENV["PYTHONPATH"] = dest + (os.pathsep + old if old else "")
    return h.hexdigest()[:12]


def run_worker(spec: dict, env: dict | None = None) -> dict:
    """Run one task in a fresh interpreter and return its JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, text=True, cwd=REPO,
                          env={**_WORKER_ENV, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"worker '{spec['task']}' failed with exit code {proc.returncode} (see stderr)")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@")]
    return json.loads(lines[-1][len("@@RESULT@@"):])


def wait_for_idle(max_wait: float, threshold: float = 0.25, window: float = 3.0) -> float:
    """Wait (at most ``max_wait`` s) until other processes use under ``threshold`` cores; return the wait."""
    t0 = time.perf_counter()
    while max_wait > 0:
        b0 = machine_busy_seconds()[0]
        time.sleep(window)
        if (machine_busy_seconds()[0] - b0) / window < threshold or time.perf_counter() - t0 >= max_wait:
            break
    return time.perf_counter() - t0


def machine_info() -> dict:
    model = None
    try:
        out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.SubprocessError):
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "platform": platform.platform(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "cpu_model": model, "mem_total_gb": mem_gb,
            "loadavg_at_start": os.getloadavg()}


def check_disk(where: str, need: int) -> None:
    free = shutil.disk_usage(where).free
    if free < 2.5 * need:
        sys.exit(f"bench_sweep: not enough disk space in {where}: the inputs need {need / 2**30:.2f} GB and 2.5× "
                 f"that ({2.5 * need / 2**30:.2f} GB) must be free, but only {free / 2**30:.2f} GB is; "
                 "use --tmpdir elsewhere or a smaller --memory-n")


def generate(args, n: int, folder: str, verbose: bool) -> dict:
    paths = [os.path.join(folder, f"{side}_n{n}_L{args.layers}_d{args.d}.h5") for side in "ab"]
    need = 2 * n * args.layers * args.d * 4
    check_disk(folder, need)
    _log(f"generating 2 × ({n}, {args.layers}, {args.d}) float32 HDF5 ({need / 2**20:.0f} MB) in {folder}")
    spec = {"task": "generate", "n": n, "layers": args.layers, "d": args.d, "rank": args.rank, "sigma": args.sigma,
            "seed": args.seed, "paths": paths, "verbose": verbose}
    res = run_worker(spec)
    _log(f"generated in {res['generate_s']:.1f} s")
    return {"paths": paths, **res}


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _fmt_runs(vals: list[float], fmt: str = "{:.2f}") -> str:
    if not vals:
        return "–"
    if len(vals) == 1:
        return fmt.format(vals[0])
    return f"{fmt.format(_med(vals))} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"


def measure(args, spec: dict, label: str, env: dict | None = None, repeat: int = 1) -> list[dict]:
    runs = []
    for r in range(repeat):
        if args.wait_idle:
            waited = wait_for_idle(args.wait_idle)
            if waited > 4:
                _log(f"waited {waited:.0f} s for the machine to be idle")
        _log(f"{label}: run {r + 1}/{repeat} ...")
        res = run_worker(spec, env)
        shown = res.get("search_s", res["wall_s"])
        _log(f"{label}: {shown:.2f} s, peak beyond imports {res['peak_beyond_imports_mb']:.0f} MB, "
             f"others' CPU {res['others_cpu_s']:.1f} s")
        runs.append(res)
    return runs


def _time_of(run: dict) -> float:
    """The time a measurement is judged by: the searches alone for 'searches', else the whole wall time."""
    if "search_s" in run:
        return run["search_s"]
    if "estimate_all_s" in run:  # naive: all pairs, measured or extrapolated
        return run["estimate_all_s"]
    return run["wall_s"]


def run_main(args, folder: str) -> dict:
    data = generate(args, args.n, folder, verbose=False)
    L, k = args.layers, args.k
    pairs = L * L
    base = {"paths": data["paths"], "k": k, "layers": L}
    depth_u = min(args.n - 1, max(3 * k, k + 10))
    depth_0 = min(args.n - 1, k)
    out = {"data": data, "runs": {}}
    runs = out["runs"]
    runs[f"searches_depth{depth_0}"] = measure(args, {**base, "task": "searches", "depth": depth_0},
                                               f"searches depth {depth_0}", repeat=args.repeat)
    runs["sweep_scores"] = measure(args, {**base, "task": "sweep", "compare_kwargs": {"resamples": 0,
                                                                                       "permutations": 0}},
                                   "sweep-scores", repeat=args.repeat)
    if not args.no_defaults:
        runs[f"searches_depth{depth_u}"] = measure(args, {**base, "task": "searches", "depth": depth_u},
                                                   f"searches depth {depth_u}", repeat=args.repeat)
        runs["sweep_defaults"] = measure(args, {**base, "task": "sweep", "compare_kwargs": {"resamples": 1000}},
                                         "sweep-defaults", repeat=args.repeat)
    if args.profile:
        out["profiles"] = {}
        for name, kw in (("sweep_scores", {"resamples": 0, "permutations": 0}), ("sweep_defaults", {"resamples": 1000})):
            if name == "sweep_defaults" and args.no_defaults:
                continue
            res = measure(args, {**base, "task": "sweep", "compare_kwargs": kw, "profile": True},
                          f"{name} (profiled)")[0]
            out["profiles"][name] = res
    if not args.no_naive:
        runs["naive"] = measure(args, {**base, "task": "naive", "naive_pairs": args.naive_pairs,
                                       "naive_budget": args.naive_budget}, "naive")
    out["depths"] = {"scores": depth_0, "defaults": depth_u}
    out["pairs"] = pairs
    return out


def report_main(args, main: dict) -> str:
    runs, d0, du = main["runs"], main["depths"]["scores"], main["depths"]["defaults"]
    L = args.layers
    pairs = main["pairs"]
    lines = [(f"### Layer sweep vs. neighbour searches: n = {args.n}, d = {args.d}, {L} × {L} layers "
              f"({pairs} pairs), k = {args.k}"), ""]
    lines.append("| measurement | wall s | peak RSS beyond imports MB | ratio to matching searches | others' CPU s |")
    lines.append("|---|---:|---:|---:|---:|")
    t = {name: [_time_of(r) for r in rs] for name, rs in runs.items()}
    ratios = {}

    def row(name, label, ref):
        rs = runs.get(name)
        if not rs:
            return
        ratio = ""
        if ref and runs.get(ref):
            ratios[name] = _med(t[name]) / _med(t[ref])
            ratio = f"{ratios[name]:.2f} × (vs {ref.replace('_', ' ')})"
        mb = [r["peak_beyond_imports_mb"] for r in rs]
        others = [r["others_cpu_s"] for r in rs]
        lines.append(f"| {label} | {_fmt_runs(t[name])} | {_fmt_runs(mb, '{:.0f}')} | {ratio} | "
                     f"{_fmt_runs(others, '{:.1f}')} |")

    n_search = 2 * L
    row(f"searches_depth{d0}", f"searches: {n_search} × `knn(layer, {d0}, \"cosine\")` (searches only)", None)
    row(f"searches_depth{du}", f"searches: {n_search} × `knn(layer, {du}, \"cosine\")` (searches only)", None)
    row("sweep_scores", f"sweep-scores: `compare(a, b, \"mknn,cka\", resamples=0, permutations=0)`, {pairs} pairs",
        f"searches_depth{d0}")
    row("sweep_defaults", "sweep-defaults: `compare(a, b, \"mknn,cka\", seed=0)` (1000 resamples, "
        "200 max-over-pairs permutations for mknn, the sweep default)", f"searches_depth{du}")
    if runs.get("naive"):
        nv = runs["naive"][0]
        how = (f"{nv['pairs_run']} of {nv['pairs_total']} pairs run in {nv['wall_s']:.1f} s, **extrapolated "
               f"linearly** to {nv['pairs_total']}" if nv["extrapolated"] else f"all {nv['pairs_total']} pairs run")
        row("naive", f"naive pair-by-pair loop: `compare(layer_i, layer_j, ...)` per pair ({how})",
            f"searches_depth{d0}")
    lines.append("")
    if "sweep_scores" in ratios:
        ok = "met" if ratios["sweep_scores"] < 2 else "NOT met"
        lines.append(f"**sweep / searches = {ratios['sweep_scores']:.2f} (target < 2): {ok}** "
                     f"(sweep-scores vs the {n_search} searches at depth {d0}, medians)")
    if "sweep_defaults" in ratios:
        lines.append(f"sweep with default uncertainty / searches at depth {du} = {ratios['sweep_defaults']:.2f}")
    if "naive" in ratios and "sweep_scores" in ratios:
        lines.append(f"naive loop / sweep-scores = {_med(t['naive']) / _med(t['sweep_scores']):.1f} × "
                     f"(naive / searches = {ratios['naive']:.1f})")
    reads = [r["read_s"] for r in runs.get(f"searches_depth{d0}", [])]
    if reads:
        lines.append(f"(reading the {n_search} layers from HDF5, not counted in the searches: {_fmt_runs(reads)} s)")
    lines.append("")

    # timing breakdown of the sweeps
    keys = ["load_seconds", "layers_seconds", "pairs_seconds", "mknn_seconds", "cka_seconds", "total_seconds"]
    sweeps = [(name, runs[name]) for name in ("sweep_scores", "sweep_defaults") if runs.get(name)]
    if sweeps:
        lines.append("Sweep `timing` (seconds, median over runs):")
        lines.append("")
        lines.append("| run | " + " | ".join(k.replace("_seconds", "") for k in keys)
                     + " | pairs: ms per pair | layers − searches |")
        lines.append("|---|" + "---:|" * (len(keys) + 2))
        for name, rs in sweeps:
            cells = [_med([r["timing"].get(k) for r in rs]) for k in keys]
            ref = runs.get(f"searches_depth{d0 if name == 'sweep_scores' else du}")
            extra = "–"
            if ref and cells[1] is not None:
                extra = f"{cells[1] - _med([r['search_s'] for r in ref]):.2f}"
            per_pair = f"{1000 * cells[2] / pairs:.1f}" if cells[2] is not None else "–"
            lines.append(f"| {name} | " + " | ".join("–" if c is None else f"{c:.2f}" for c in cells)
                         + f" | {per_pair} | {extra} |")
        lines.append("")
        lines.append("(layers = all per-layer reads, searches, overlap counts and CKA layer statistics; pairs = "
                     "every pair's CKA cross-product and list comparisons; mknn/cka = the best pair's interval and "
                     "permutation p-value.)")
        lines.append("")

    for name, res in main.get("profiles", {}).items():
        prof = res["profile"]
        total = res["wall_s"]
        lines.append(f"Where {name} spends its time (separate profiled run: {total:.2f} s wall; exclusive time of "
                     "hooked repalign functions):")
        lines.append("")
        lines.append("| stage | calls | seconds | share of wall |")
        lines.append("|---|---:|---:|---:|")
        for label, sec in sorted(prof["exclusive_s"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {label} | {prof['calls'][label]} | {sec:.2f} | {100 * sec / total:.0f} % |")
        rest = total - sum(prof["exclusive_s"].values())
        lines.append(f"| everything else | | {rest:.2f} | {100 * rest / total:.0f} % |")
        lines.append("")

    # the scores, and the naive check
    sc = runs.get("sweep_scores")
    if sc and "cells" in sc[0]:
        res = sc[0]
        for name, grid in res["cells"].items():
            best = res["best"].get(name, {})
            chance = _med([c for row in res["chance"][name] for c in row])
            lines.append(f"{name} over the layer grid (rows: layers of a, columns: layers of b); best pair "
                         f"a{best.get('layer_a')}–b{best.get('layer_b')} = {best.get('value'):.4f}; "
                         f"median chance level {chance:.4f}" if chance is not None else "")
            lines.append("")
            lines.append("| a \\ b | " + " | ".join(str(j) for j in range(len(grid[0]))) + " |")
            lines.append("|---|" + "---:|" * len(grid[0]))
            for i, gr in enumerate(grid):
                lines.append(f"| {i} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in gr) + " |")
            lines.append("")
        if runs.get("naive"):
            worst = 0.0
            for v in runs["naive"][0]["values"]:
                for name, grid in res["cells"].items():
                    a, b = v.get(name), grid[v["i"]][v["j"]]
                    if a is not None and b is not None:
                        worst = max(worst, abs(a - b))
            lines.append(f"naive check: {len(runs['naive'][0]['values'])} naive pairs vs the sweep's cells, max |Δ| = "
                         f"{worst:.3g}")
            lines.append("")
    sd = runs.get("sweep_defaults")
    if sd:
        lines.append("sweep-defaults best pairs: " + "; ".join(
            f"{name} a{b['layer_a']}–b{b['layer_b']} = {b['value']:.4f} [{b['ci'][0]:.4f}, {b['ci'][1]:.4f}]"
            + (f", p = {b['p_value']:.4g}" if b["p_value"] is not None else "")
            for name, b in sd[0]["best"].items() if b["value"] is not None))
        lines.append("")
    return "\n".join(lines)


def run_memory(args, folder: str) -> dict:
    n, L, d, k = args.memory_n, args.layers, args.d, args.k
    data = generate(args, n, folder, verbose=True)
    env = {"REPALIGN_MEMORY_LIMIT": args.memory_limit} if args.memory_limit else None
    spec = {"task": "sweep", "paths": data["paths"], "k": k, "layers": L, "progress_every": 0,
            "compare_kwargs": {"resamples": 0, "permutations": 0}}
    _log(f"memory check: compare() sweep at n = {n} (progress follows)")
    res = measure(args, spec, "memory sweep", env=env)[0]
    res.pop("chance", None)
    return {"data": data, "run": res, "n": n,
            "all_layers_bytes": n * d * 4 * 2 * L,
            "one_pair_plus_lists_bytes": 2 * n * d * 4 + 2 * L * n * k * 8,
            "memory_limit_env": args.memory_limit}


def report_memory(args, mem: dict) -> str:
    r, n, L = mem["run"], mem["n"], args.layers
    all_mb, pair_mb = mem["all_layers_bytes"] / 2**20, mem["one_pair_plus_lists_bytes"] / 2**20
    peak = r["peak_beyond_imports_mb"]
    lines = [f"### Memory: {L} × {L} sweep at n = {n}, d = {args.d}, HDF5 input, mknn + cka, resamples=0", ""]
    if mem["memory_limit_env"]:
        lines.append(f"(child run with REPALIGN_MEMORY_LIMIT={mem['memory_limit_env']})")
        lines.append("")
    lines += [
        "| quantity | MB |",
        "|---|---:|",
        f"| peak RSS beyond imports (measured) | {peak:.0f} |",
        f"| {2 * L} layers of float32 (n·d·4·{2 * L}) | {all_mb:.0f} |",
        f"| one layer pair + neighbour lists (2·n·d·4 + {2 * L}·n·k·8) | {pair_mb:.0f} |",
        "",
        (f"wall time {r['wall_s']:.1f} s (others' CPU {r['others_cpu_s']:.1f} s); peak / {2 * L} layers = "
         f"{peak / all_mb:.2f}; peak / (one pair + lists) = {peak / pair_mb:.2f}"),
        f"layers streamed (read again per pair): {'yes' if r['streamed'] else 'no: all layers were kept in memory'}",
        "timing: " + ", ".join(f"{k.replace('_seconds', '')} {v:.1f} s" for k, v in r["timing"].items()),
    ]
    verdict = "below" if peak < all_mb else "NOT below"
    lines.append(f"**peak beyond imports {peak:.0f} MB is {verdict} {2 * L} layers of float32 ({all_mb:.0f} MB)**")
    if r["notes"]:
        lines.append("notes: " + " | ".join(r["notes"]))
    lines.append("")
    return "\n".join(lines)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("--n", type=int, default=5000, help="items (rows) of the main measurement")
    p.add_argument("--d", type=int, default=768, help="dimensions per layer")
    p.add_argument("--layers", type=int, default=13, help="layers per input (≥ 2)")
    p.add_argument("--k", type=int, default=10, help="neighbours for mknn")
    p.add_argument("--rank", type=int, default=32, help="rank of the shared latent")
    p.add_argument("--sigma", type=float, default=1.0, help="noise standard deviation")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    p.add_argument("--repeat", type=int, default=1,
                   help="fresh-process runs of the searches and sweep measurements (median reported)")
    p.add_argument("--naive-pairs", type=int, default=None,
                   help="time only this many naive pairs and extrapolate linearly (default: as many as fit in "
                        "--naive-budget, all if they fit)")
    p.add_argument("--naive-budget", type=float, default=600.0, help="seconds the naive loop may run")
    p.add_argument("--no-naive", action="store_true", help="skip the naive pair-by-pair loop")
    p.add_argument("--profile", action="store_true",
                   help="also run each sweep once more with timers hooked into repalign's stages, and show where "
                        "the time goes")
    p.add_argument("--no-defaults", action="store_true",
                   help="skip the sweep with default uncertainty and the depth-30 searches")
    p.add_argument("--skip-main", action="store_true", help="skip the main measurement (e.g. with --memory)")
    p.add_argument("--memory", action="store_true", help="also run the (slow) memory check")
    p.add_argument("--memory-n", type=int, default=50000, help="items of the memory check")
    p.add_argument("--memory-limit", default=None,
                   help="REPALIGN_MEMORY_LIMIT for the memory-check child, e.g. 1G to force layer streaming at "
                        "small --memory-n")
    p.add_argument("--tmpdir", default=None, help="where the data and the package snapshot go "
                                                  "(default: a new folder under benchmarks/out/)")
    p.add_argument("--keep-data", action="store_true", help="keep the generated HDF5 files")
    p.add_argument("--no-snapshot", action="store_true", help="workers import the live repalign/, not a copy")
    p.add_argument("--wait-idle", type=float, default=0.0,
                   help="before each measurement, wait up to this many seconds for the machine to be idle")
    p.add_argument("--json", default=None, help="write all raw numbers here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is None:
        if args.layers < 2:
            p.error("--layers must be at least 2 (a sweep needs several layers)")
        if args.n <= args.k + 1 or args.memory_n <= args.k + 1:
            p.error("--n and --memory-n must exceed k + 1")
        if args.skip_main and not args.memory:
            p.error("--skip-main without --memory leaves nothing to measure")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        _worker(args.worker)
        return 0
    out_root = os.path.join(HERE, "out")
    if args.tmpdir:
        os.makedirs(args.tmpdir, exist_ok=True)
        root = args.tmpdir
    else:
        os.makedirs(out_root, exist_ok=True)
        root = out_root
    folder = tempfile.mkdtemp(prefix="bench_sweep_", dir=root)
    result: dict = {"args": {k: v for k, v in vars(args).items() if k != "worker"}, "machine": machine_info()}
    try:
        if not args.no_snapshot:
            result["snapshot_sha256_12"] = snapshot_package(folder)
            _log(f"workers import a snapshot of repalign/ ({result['snapshot_sha256_12']}) from {folder}")
        result["versions"] = run_worker({"task": "info"})
        m = result["machine"]
        v = result["versions"]
        header = [
            "## repalign layer-sweep benchmark",
            "",
            f"- date: {m['date']}",
            f"- machine: {m['cpu_model']}, {m['cpu_count']} CPUs, {m['mem_total_gb']} GB RAM, {m['platform']}",
            f"- versions: repalign {v['repalign']}" + (f" (snapshot {result['snapshot_sha256_12']})"
                                                      if "snapshot_sha256_12" in result else " (live tree)")
            + f", numpy {v['numpy']}, faiss {v['faiss']}, h5py {v['h5py']}, Python {v['python']}",
            (f"- data: seed {args.seed}, rank {args.rank}, σ = {args.sigma}, ρ = {RHO}, float32 HDF5 (n, L, d), "
             f"chunks (min(n, 1024), 1, d); k = {args.k}; {args.repeat} fresh-process run(s) per measurement"),
            "",
        ]
        print("\n".join(header), flush=True)
        if not args.skip_main:
            result["main"] = run_main(args, folder)
            print(report_main(args, result["main"]), flush=True)
        if args.memory:
            result["memory"] = run_memory(args, folder)
            print(report_memory(args, result["memory"]), flush=True)
    finally:
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, "w") as fh:
                json.dump(result, fh, indent=1)
            _log(f"raw numbers written to {args.json}")
        if args.keep_data:
            _log(f"data kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
