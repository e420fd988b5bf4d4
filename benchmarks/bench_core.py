#!/usr/bin/env python
"""Benchmark repalign's core metrics (mutual k-NN, linear CKA) on paired synthetic embeddings.

For every n it measures, each in a fresh subprocess that loads the inputs
first, so that the memory peak of one measurement never leaks into another:

* ``repalign.compare(X, Y, metrics="mknn", k=10, resamples=0, permutations=0)``
  (cosine; the metric alone), wall time and peak RSS, followed in the same
  process by the bare float32 GEMM X·Xᵀ, timed in row blocks;
* one ``repalign.neighbors.knn(X, 10)``;
* ``repalign.compare(X, Y, metrics="cka,cka-unbiased", resamples=0, permutations=0)``
  and, separately, ``repalign.metrics.cka.cross_stats(X, Y)`` (the pass both
  estimators share);
* the same two ``compare`` calls with compare()'s defaults (bootstrap
  intervals, permutation p-values; seed 0), --defaults-repeat times;
* at n ≤ --naive-max-n (default 10,000) the naive dense approach of the paper's
  reference code: full n×n float32 similarity, then top-k per row;
* with --profile, where one knn(X, 10) spends its time (smallest n).

Keyword arguments a given repalign version does not accept are left out, so the
script runs against older and newer versions of ``compare``.

Usage::

    python benchmarks/bench_core.py                       # n = 10000 and 50000, d = 768
    python benchmarks/bench_core.py --n 10000 --repeat 3 --profile --json benchmarks/out/bench.json

Only the standard library is needed in the parent process; the workers need
numpy, faiss and repalign (run it with the project's venv). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
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

# --------------------------------------------------------------------------------------------
# memory helpers (worker side)
# --------------------------------------------------------------------------------------------


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class _Measure:
    """Wall time, CPU time and peak RSS of one block of code, relative to the RSS when it starts."""

    def __enter__(self):
        import resource

        self.reset_ok = _reset_peak()
        st = status_kb()
        self.rss_before_kb = st["VmRSS"]
        self.hwm_before_kb = st["VmHWM"]
        self.ru_maxrss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.load_before = os.getloadavg()[0]
        self.cpu0 = cpu_seconds()
        self.sys0 = machine_busy_seconds()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import resource

        self.wall = time.perf_counter() - self.t0
        self.cpu = cpu_seconds() - self.cpu0
        busy, steal = machine_busy_seconds()
        # CPU seconds that other processes (and the hypervisor, as steal) took while we measured.
        self.other_cpu = max(0.0, busy - self.sys0[0] - self.cpu)
        self.steal = steal - self.sys0[1]
        st = status_kb()
        self.peak_kb = st["VmHWM"]
        self.rss_after_kb = st["VmRSS"]
        self.ru_maxrss_after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return False

    def as_dict(self) -> dict:
        return {
            "wall_s": self.wall,
            "cpu_s": self.cpu,
            "other_processes_cpu_s": self.other_cpu,
            "steal_s": self.steal,
            "rss_inputs_mb": self.rss_before_kb / 1024,
            "peak_mb": self.peak_kb / 1024,
            "peak_minus_inputs_mb": (self.peak_kb - self.rss_before_kb) / 1024,
            "rss_after_mb": self.rss_after_kb / 1024,
            "hwm_reset": self.reset_ok,
            "ru_maxrss_before_mb": self.ru_maxrss_before_kb / 1024,
            "ru_maxrss_after_mb": self.ru_maxrss_after_kb / 1024,
            "loadavg_1min_before": self.load_before,
        }


# --------------------------------------------------------------------------------------------
# worker tasks
# --------------------------------------------------------------------------------------------


def _generate(spec: dict) -> dict:
    """Write X, Y (n×d float32) = Z·A + σ·E to .npy files, block by block (seeded)."""
    import numpy as np

    n, d, r, sigma, seed = spec["n"], spec["d"], spec["r"], spec["sigma"], spec["seed"]
    rng = np.random.default_rng(seed)
    # A, B ~ N(0, 1/r): each coordinate of Z·A has unit variance, like each noise coordinate (σ = 1).
    A = (rng.standard_normal((r, d)) / np.sqrt(r)).astype(np.float32)
    B = (rng.standard_normal((r, d)) / np.sqrt(r)).astype(np.float32)
    X = np.lib.format.open_memmap(spec["x"], mode="w+", dtype=np.float32, shape=(n, d))
    Y = np.lib.format.open_memmap(spec["y"], mode="w+", dtype=np.float32, shape=(n, d))
    block = 8192
    for s in range(0, n, block):
        m = min(block, n - s)
        Z = rng.standard_normal((m, r), dtype=np.float32)
        X[s : s + m] = Z @ A + np.float32(sigma) * rng.standard_normal((m, d), dtype=np.float32)
        Y[s : s + m] = Z @ B + np.float32(sigma) * rng.standard_normal((m, d), dtype=np.float32)
    X.flush()
    Y.flush()
    del X, Y
    return {"ok": True}


def _load_inputs(spec: dict, both: bool = True):
    """Read the inputs fully into (anonymous) memory, as a caller holding numpy arrays would."""
    import numpy as np

    X = np.load(spec["x"])
    Y = np.load(spec["y"]) if both else None
    return X, Y


def _gemm_blocked(X, block: int) -> dict:
    """Time X·Xᵀ in float32 as row blocks (block × n), summing block times; output buffer reused."""
    import numpy as np

    n = X.shape[0]
    block = min(block, n)
    buf = np.empty((block, n), dtype=np.float32)
    buf.fill(0.0)  # touch the pages so the timing excludes first-touch page faults
    np.matmul(X[:256], X[:256].T)  # start the BLAS thread pool
    XT = X.T
    total = 0.0
    cpu0, sys0 = cpu_seconds(), machine_busy_seconds()[0]
    for s in range(0, n, block):
        m = min(block, n - s)
        out = buf[:m]
        t = time.perf_counter()
        np.matmul(X[s : s + m], XT, out=out)
        total += time.perf_counter() - t
    cpu = cpu_seconds() - cpu0
    other = max(0.0, machine_busy_seconds()[0] - sys0 - cpu)
    return {"gemm_s": total, "gemm_cpu_s": cpu, "gemm_other_processes_cpu_s": other, "gemm_block_rows": block,
            "gemm_blocks": -(-n // block), "gemm_buffer_mb": buf.nbytes / 2**20}


def _compare_kwargs(variant: str) -> dict:
    """Keyword arguments of ``repalign.compare`` for a variant, keeping only those this version accepts.

    ``core``: the metric alone, with intervals and permutation tests switched
    off (``resamples=0, permutations=0``). ``default``: compare's defaults
    (bootstrap intervals, permutation p-values where the version has them),
    seeded so runs repeat.
    """
    import inspect

    import repalign

    params = inspect.signature(repalign.compare).parameters
    wanted = {"resamples": 0, "permutations": 0} if variant == "core" else {"seed": 0}
    return {key: val for key, val in wanted.items() if key in params}


def _task_mknn(spec: dict) -> dict:
    import faiss  # noqa: F401  (imported before the baseline: knn imports it lazily)

    import repalign

    X, Y = _load_inputs(spec)
    kwargs = _compare_kwargs(spec["variant"])
    with _Measure() as m:
        res = repalign.compare(X, Y, metrics="mknn", k=spec["k"], distance="cosine", **kwargs)
    out = m.as_dict()
    out["compare_kwargs"] = kwargs
    out["value"] = res.metrics[0].value
    out["lib_timing"] = dict(res.timing)
    if spec.get("gemm"):
        # The bare GEMM in the same process, after the peak has been recorded.
        out.update(_gemm_blocked(X, spec["gemm_block"]))
    return out


def _task_knn(spec: dict) -> dict:
    import faiss  # noqa: F401

    from repalign.neighbors import knn

    X, _ = _load_inputs(spec, both=False)
    with _Measure() as m:
        nb = knn(X, spec["k"], distance="cosine")
    out = m.as_dict()
    out["shape"] = list(nb.shape)
    return out


def _task_cka(spec: dict) -> dict:
    import repalign

    X, Y = _load_inputs(spec)
    kwargs = _compare_kwargs(spec["variant"])
    with _Measure() as m:
        res = repalign.compare(X, Y, metrics="cka,cka-unbiased", **kwargs)
    out = m.as_dict()
    out["compare_kwargs"] = kwargs
    out["values"] = {r.name: r.value for r in res.metrics}
    out["lib_timing"] = dict(res.timing)
    return out


def _task_cross_stats(spec: dict) -> dict:
    from repalign.metrics.cka import biased_terms, cross_stats, ratio, unbiased_terms

    X, Y = _load_inputs(spec)
    with _Measure() as m:
        st = cross_stats(X, Y)
    out = m.as_dict()
    out["values"] = {"cka": ratio(biased_terms(st)), "cka-unbiased": ratio(unbiased_terms(st))}
    return out


def _naive_knn(X, k: int, use_argsort: bool):
    """The paper's reference approach in numpy/float32: normalise, full n×n similarity, top-k per row."""
    import numpy as np

    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Xn @ Xn.T  # n×n float32
    np.fill_diagonal(S, -np.inf)
    n = S.shape[0]
    if use_argsort:  # as in the reference code: argsort(descending=True)[:, :k]
        idx = np.argsort(-S, axis=1)[:, :k]
    else:  # top-k per row (unordered: enough for the overlap)
        idx = np.argpartition(S, n - k, axis=1)[:, n - k :]
    return np.ascontiguousarray(idx)


def _task_naive(spec: dict) -> dict:
    import numpy as np

    X, Y = _load_inputs(spec)
    k = spec["k"]
    with _Measure() as m:
        na = _naive_knn(X, k, spec["argsort"])
        nb = _naive_knn(Y, k, spec["argsort"])
        both = np.sort(np.concatenate([na, nb], axis=1), axis=1)
        value = float(np.count_nonzero(both[:, 1:] == both[:, :-1]) / (na.shape[0] * k))
    out = m.as_dict()
    out["value"] = value
    return out


def _task_profile(spec: dict) -> dict:
    """Where one knn(X, k) spends its time: FAISS search / float64 rescoring / fallback / the rest.

    The package is not changed: for this process only, the functions ``knn``
    calls through module globals (``faiss.knn``, ``_pair_scores``,
    ``_sort_lists``, ``exact_knn``, ``row_norms``) are wrapped with timers and
    row counters. A second, cProfile'd call lists the top functions by own time
    (to see what the "rest" is made of).
    """
    import cProfile
    import pstats

    import faiss

    import repalign.neighbors as nbmod

    X, _ = _load_inputs(spec, both=False)
    acc = {"faiss_search_s": 0.0, "pair_scores_float64_s": 0.0, "sort_lists_s": 0.0, "exact_knn_fallback_s": 0.0,
           "row_norms_s": 0.0}
    rows = {"rescored_rows": 0, "fallback_rows": 0}
    state = {"in_exact": False}

    def timed(fn, key, row_key=None, row_arg=None):
        def wrapper(*a, **kw):
            if state["in_exact"] and key != "exact_knn_fallback_s":
                return fn(*a, **kw)  # counted inside the fallback's time
            if row_key:
                r = kw.get(row_arg) if row_arg in kw else (a[2] if len(a) > 2 else None)
                rows[row_key] += (a[0].shape[0] if r is None else len(r))
            inner = key == "exact_knn_fallback_s"
            if inner:
                state["in_exact"] = True
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                acc[key] += time.perf_counter() - t
                if inner:
                    state["in_exact"] = False
        return wrapper

    patches = [(faiss, "knn", timed(faiss.knn, "faiss_search_s"))]
    for name, key, row_key in (("_pair_scores", "pair_scores_float64_s", "rescored_rows"),
                               ("_sort_lists", "sort_lists_s", None),
                               ("exact_knn", "exact_knn_fallback_s", "fallback_rows"),
                               ("row_norms", "row_norms_s", None)):
        if hasattr(nbmod, name):
            patches.append((nbmod, name, timed(getattr(nbmod, name), key, row_key, "rows")))
    originals = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]

    nbmod.knn(X[:1000], spec["k"])  # warm-up: thread pools, lazy imports
    for mod, name, w in patches:
        setattr(mod, name, w)
    try:
        t0 = time.perf_counter()
        nbmod.knn(X, spec["k"], distance="cosine")
        total = time.perf_counter() - t0
    finally:
        for mod, name, orig in originals:
            setattr(mod, name, orig)
    parts = dict(acc)
    parts["rest_s"] = total - sum(acc.values())
    out = {"total_s": total, **parts, **rows, "n": X.shape[0]}

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    nbmod.knn(X, spec["k"], distance="cosine")
    prof.disable()
    out["cprofile_total_s"] = time.perf_counter() - t0
    st = pstats.Stats(prof).stats
    top = sorted(st.items(), key=lambda kv: -kv[1][2])[:12]
    out["cprofile_top_tottime"] = [
        {"function": f"{os.path.basename(key[0])}:{key[1]}({key[2]})", "tottime_s": val[2], "cumtime_s": val[3],
         "calls": val[1]} for key, val in top]
    out.update(_gemm_blocked(X, spec["gemm_block"]))  # bare GEMM of the same size, for scale
    return out


def _task_machine(spec: dict) -> dict:
    import faiss
    import numpy as np

    import repalign

    info = {"numpy": np.__version__, "faiss": faiss.__version__, "repalign": repalign.__version__,
            "repalign_file": repalign.__file__, "python": platform.python_version()}
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {key: p.get(key) for key in ("internal_api", "num_threads", "version", "architecture", "filepath")}
            for p in threadpool_info()
        ]
    except Exception:  # threadpoolctl is optional
        pass
    try:
        info["faiss_compile_options"] = faiss.get_compile_options()
        info["faiss_omp_threads"] = faiss.omp_get_max_threads()
    except Exception:
        pass
    return info


TASKS = {
    "generate": _generate,
    "mknn": _task_mknn,
    "knn": _task_knn,
    "cka": _task_cka,
    "cross_stats": _task_cross_stats,
    "naive": _task_naive,
    "profile": _task_profile,
    "machine": _task_machine,
}


def _worker(spec_json: str) -> None:
    spec = json.loads(spec_json)
    result = TASKS[spec["task"]](spec)
    sys.stdout.flush()
    print("@@RESULT@@" + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------------------------


_WORKER_ENV: dict[str, str] = dict(os.environ)


def snapshot_package(dest: str) -> dict:
    """Copy the working tree's repalign/ to ``dest`` and make the workers import it from there.

    Other people may edit repalign/ while a long benchmark runs; the snapshot
    keeps every measurement of one run on the same code. Returns its description.
    """
    import hashlib

    src = os.path.join(REPO, "repalign")
    shutil.copytree(src, os.path.join(dest, "repalign"), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(os.path.join(dest, "repalign"))):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(root, f)
                h.update(os.path.relpath(path, dest).encode())
                with open(path, "rb") as fh:
                    h.update(fh.read())
    _WORKER_ENV["PYTHONPATH"] = dest + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    return {"snapshot_dir": dest, "snapshot_sha256_12": h.hexdigest()[:12]}


def run_worker(spec: dict, verbose: bool = True) -> dict:
    """Run one task in a fresh interpreter; return its JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO, env=_WORKER_ENV)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec['task']} failed with exit code {proc.returncode}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@")]
    result = json.loads(lines[-1][len("@@RESULT@@"):])
    if verbose:
        brief = result.get("wall_s", result.get("total_s"))
        extra = f" {brief:.2f} s" if isinstance(brief, float) else ""
        peak = result.get("peak_minus_inputs_mb")
        extra += f", peak−inputs {peak:.0f} MB" if peak is not None else ""
        print(f"  [{spec['task']:<11} n={spec.get('n')}] done in {time.perf_counter() - t0:.1f} s{extra}",
              file=sys.stderr, flush=True)
    return result


def wait_for_idle(max_wait: float, threshold: float = 0.25, window: float = 3.0) -> float:
    """Wait (at most ``max_wait`` s) until other processes use under ``threshold`` cores; return the wait."""
    t0 = time.perf_counter()
    while max_wait > 0:
        b0 = machine_busy_seconds()[0]
        time.sleep(window)
        busy = (machine_busy_seconds()[0] - b0) / window
        if busy < threshold or time.perf_counter() - t0 >= max_wait:
            break
    return time.perf_counter() - t0


def others_fraction(res: dict, cores: int) -> float:
    """Share of the machine's CPU that other processes took during a measurement (0 = quiet machine)."""
    others = res.get("other_processes_cpu_s", 0.0) + res.get("gemm_other_processes_cpu_s", 0.0)
    wall = res.get("wall_s", 0.0) + res.get("gemm_s", 0.0)
    return others / (wall * cores) if wall > 0 else 0.0


def machine_info(python_libs: dict) -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_gb = int(line.split()[1]) / 2**20
    except OSError:
        pass
    commit = dirty = None
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or None
        # read-only: --no-optional-locks keeps git from refreshing the index
        diff = subprocess.run(["git", "--no-optional-locks", "-C", REPO, "diff", "--stat", "HEAD", "--", "repalign"],
                              capture_output=True, text=True).stdout.strip()
        dirty = bool(diff)
    except OSError:
        pass
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "mem_total_gb": round(mem_gb, 1) if mem_gb else None,
        "kernel": platform.release(),
        "git_commit": commit,
        "repalign_dir_modified_vs_commit": dirty,
        **python_libs,
    }


def _med(vals):
    return statistics.median(vals) if vals else None


def _fmt_t(vals) -> str:
    if not vals:
        return "–"
    med = statistics.median(vals)
    if len(vals) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} ({min(vals):.2f}–{max(vals):.2f})"


def _fmt_mb(vals) -> str:
    return "–" if not vals else f"{max(vals):.0f}"


def _rows_for(results: dict) -> list[dict]:
    """Aggregate repeats of each measurement: times as median (min–max), memory as the worst repeat."""
    rows = []
    for n, per in results.items():
        order = [("mknn", "mknn, `compare(X, Y, metrics=\"mknn\", k=10, resamples=0, permutations=0)`, cosine"),
                 ("knn", "one `knn(X, 10)` (cosine)"),
                 ("cka", "linear CKA, both estimators, `compare(X, Y, metrics=\"cka,cka-unbiased\", resamples=0, "
                         "permutations=0)`"),
                 ("cross_stats", "`cross_stats(X, Y)` alone (the pass both CKA estimators share)"),
                 ("gemm", None),
                 ("mknn_default", "mknn with compare()'s defaults (bootstrap CI, 1000 permutations; seed 0)"),
                 ("cka_default", "linear CKA, both estimators, with compare()'s defaults (intervals; seed 0)"),
                 ("naive", "naive dense mknn (n×n float32 sim + argpartition top-k)"),
                 ("naive_argsort", "naive dense mknn (n×n float32 sim + full argsort, as reference code)")]
        for key, label in order:
            runs = per.get(key) or []
            if not runs:
                continue
            if key == "gemm":
                blk = runs[0]["gemm_block_rows"]
                nb = runs[0]["gemm_blocks"]
                label = (f"bare float32 GEMM X·Xᵀ (numpy/OpenBLAS, {nb} block{'s' if nb > 1 else ''} of {blk}×{n}, "
                         f"block times summed; run after mknn in the mknn process)")
                rows.append({"n": n, "what": label, "times": [r["gemm_s"] for r in runs],
                             "cpu": [r["gemm_cpu_s"] for r in runs],
                             "other": [r["gemm_other_processes_cpu_s"] for r in runs]})
                continue
            row = {"n": n, "what": label, "times": [r["wall_s"] for r in runs], "cpu": [r["cpu_s"] for r in runs],
                   "other": [r["other_processes_cpu_s"] for r in runs],
                   "rss_inputs": [r["rss_inputs_mb"] for r in runs], "peak": [r["peak_mb"] for r in runs],
                   "delta": [r["peak_minus_inputs_mb"] for r in runs]}
            if "value" in runs[0]:
                row["value"] = f"{runs[0]['value']:.4f}"
            elif "values" in runs[0]:
                row["value"] = " / ".join(f"{v:.4f}" for v in runs[0]["values"].values())
            rows.append(row)
        if per.get("mknn"):
            ratios = [r["wall_s"] / (2 * r["gemm_s"]) for r in per["mknn"]]
            rows.append({"n": n, "what": "**ratio** mknn time / (2 × GEMM time), per run", "ratio": ratios})
    return rows


def markdown_table(results: dict) -> str:
    head = ("| n | measurement | time s, median (min–max) | own CPU s | others' CPU s | RSS after inputs MB "
            "| peak RSS MB | peak − inputs MB | value |\n|---:|---|---:|---:|---:|---:|---:|---:|---|")
    lines = [head]
    for row in _rows_for(results):
        if "ratio" in row:
            r = row["ratio"]
            txt = f"{_med(r):.2f}" + (f" ({min(r):.2f}–{max(r):.2f})" if len(r) > 1 else "")
            lines.append(f"| {row['n']} | {row['what']} | {txt} | | | | | | |")
            continue
        cpu = f"{_med(row['cpu']):.1f}" if row.get("cpu") else "–"
        other = f"{_med(row['other']):.1f} (max {max(row['other']):.1f})" if row.get("other") else "–"
        lines.append(f"| {row['n']} | {row['what']} | {_fmt_t(row['times'])} | {cpu} | {other} "
                     f"| {_fmt_mb(row.get('rss_inputs'))} "
                     f"| {_fmt_mb(row.get('peak'))} | {_fmt_mb(row.get('delta'))} | {row.get('value', '')} |")
    return "\n".join(lines)


def targets_table(results: dict) -> str:
    lines = ["| target | median run | met (median)? | best run | met (best)? |", "|---|---:|---|---:|---|"]

    def add(name, med, best, ok_med, ok_best):
        yn = lambda ok: "yes" if ok else "**no**"  # noqa: E731
        lines.append(f"| {name} | {med} | {yn(ok_med)} | {best} | {yn(ok_best)} |")

    r10 = results.get(10000, {})
    r50 = results.get(50000, {})
    if r10.get("mknn"):
        ts = [r["wall_s"] for r in r10["mknn"]]
        add("mknn n=10k < 3 s", f"{_med(ts):.2f} s", f"{min(ts):.2f} s", _med(ts) < 3, min(ts) < 3)
        rs = [r["wall_s"] / (2 * r["gemm_s"]) for r in r10["mknn"]]
        add("mknn n=10k ≤ 1.5 × two bare GEMMs", f"{_med(rs):.2f} ×", f"{min(rs):.2f} ×", _med(rs) <= 1.5,
            min(rs) <= 1.5)
    if r50.get("mknn"):
        ts = [r["wall_s"] for r in r50["mknn"]]
        add("mknn n=50k < 60 s", f"{_med(ts):.1f} s", f"{min(ts):.1f} s", _med(ts) < 60, min(ts) < 60)
        dm = [r["peak_minus_inputs_mb"] for r in r50["mknn"]]
        add("mknn n=50k peak RSS < 1.5 GB beyond inputs", f"{_med(dm):.0f} MB", f"{min(dm):.0f} MB",
            _med(dm) < 1536, min(dm) < 1536)
    if r50.get("cka"):
        ts = [r["wall_s"] for r in r50["cka"]]
        add("linear CKA (both) n=50k < 5 s", f"{_med(ts):.2f} s", f"{min(ts):.2f} s", _med(ts) < 5, min(ts) < 5)
    return "\n".join(lines) if len(lines) > 2 else ""


def profile_table(profiles: list[dict]) -> str:
    keys = [("faiss_search_s", "FAISS exact search (`faiss.knn`: float32 GEMM + top-k heaps)"),
            ("pair_scores_float64_s", "float64 rescoring (`_pair_scores`: gather, widen, einsum)"),
            ("sort_lists_s", "`_sort_lists` (lexsort of the rescored candidates)"),
            ("exact_knn_fallback_s", "`exact_knn` fallback for rows still uncertain"),
            ("row_norms_s", "`row_norms` (float64)"),
            ("rest_s", "rest of `knn` (normalised float32 copy, float32 sort, certification test)")]
    total = _med([p["total_s"] for p in profiles])
    lines = ["| part of `knn(X, 10)` | seconds (median) | share |", "|---|---:|---:|"]
    for key, label in keys:
        v = _med([p[key] for p in profiles])
        lines.append(f"| {label} | {v:.3f} | {100 * v / total:.0f}% |")
    lines.append(f"| **total** | {total:.3f} | 100% |")
    g = _med([p["gemm_s"] for p in profiles])
    n = profiles[0]["n"]
    resc = sorted({p["rescored_rows"] for p in profiles})
    fb = sorted({p["fallback_rows"] for p in profiles})
    lines.append("")
    lines.append(f"Rows rescored in float64: {', '.join(map(str, resc))} of {n}; rows sent to the exact fallback: "
                 f"{', '.join(map(str, fb))}. Bare float32 GEMM X·Xᵀ in the same process: {g:.3f} s "
                 f"(FAISS search / GEMM = {_med([p['faiss_search_s'] for p in profiles]) / g:.2f}).")
    top = profiles[len(profiles) // 2].get("cprofile_top_tottime", [])[:6]
    if top:
        lines.append("")
        lines.append("Top functions by own time (cProfile, one run): " + "; ".join(
            f"`{t['function']}` {t['tottime_s']:.3f} s" for t in top))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10000, 50000], help="numbers of rows (default 10000 50000)")
    ap.add_argument("--d", type=int, default=768, help="dimensions of both inputs (default 768)")
    ap.add_argument("--r", type=int, default=32, help="rank of the shared signal Z (default 32)")
    ap.add_argument("--sigma", type=float, default=1.0, help="noise scale σ (signal coordinates have variance 1)")
    ap.add_argument("--k", type=int, default=10, help="neighbours for mknn/knn (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="fresh-process runs of each measurement (default 1)")
    ap.add_argument("--defaults-repeat", type=int, default=1,
                    help="runs of compare() with its default intervals (slow; default 1, at most --repeat)")
    ap.add_argument("--gemm-block", type=int, default=5000, help="rows per block of the bare GEMM (default 5000)")
    ap.add_argument("--naive-max-n", type=int, default=10000,
                    help="run the naive dense comparison only for n up to this (default 10000)")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive dense comparison")
    ap.add_argument("--naive-argsort", action="store_true",
                    help="also run the naive variant with a full argsort per row, as the reference code does")
    ap.add_argument("--profile", action="store_true", help="profile knn(X, k) at the smallest n")
    ap.add_argument("--only", default=None,
                    help="comma-separated subset of measurements: mknn,knn,cka,cross_stats,defaults,naive "
                         "(defaults = compare() with its default intervals/permutations)")
    ap.add_argument("--wait-idle", type=float, default=0.0,
                    help="before each measurement wait up to this many seconds for other processes to use "
                         "under 0.25 cores (default 0: don't wait)")
    ap.add_argument("--retry-busy", type=int, default=0,
                    help="redo a measurement up to this many times when other processes took more than "
                         "--max-busy of the CPU during it (default 0)")
    ap.add_argument("--max-busy", type=float, default=0.10,
                    help="share of the machine's CPU other processes may take before a run is redone (default 0.10)")
    ap.add_argument("--tmpdir", default=None, help="where to write the .npy inputs (default: system temp)")
    ap.add_argument("--no-snapshot", action="store_true",
                    help="import repalign/ live instead of from a copy taken at the start")
    ap.add_argument("--keep-data", action="store_true", help="keep the generated .npy files")
    ap.add_argument("--json", default=None, help="also write all raw measurements to this JSON file")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker is not None:
        _worker(args.worker)
        return 0

    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `kill` still removes the temp dir
    only = set((args.only or "mknn,knn,cka,cross_stats,defaults,naive").split(","))
    tmp = tempfile.mkdtemp(prefix="repalign-bench-", dir=args.tmpdir)
    snap = {} if args.no_snapshot else snapshot_package(os.path.join(tmp, "src"))
    libs = run_worker({"task": "machine"}, verbose=False)
    info = machine_info(libs)
    info.update(snap)
    info["params"] = {k: v for k, v in vars(args).items() if k not in ("worker",)}
    print(f"# repalign core benchmark — {info['date']}", file=sys.stderr)
    print(f"# {info['cpu_model']}, {info['cores']} cores, {info['mem_total_gb']} GB; numpy {info['numpy']}, "
          f"faiss {info['faiss']}, repalign {info['repalign']}", file=sys.stderr)

    results: dict[int, dict[str, list]] = {}
    discarded: list[dict] = []
    cores = os.cpu_count() or 1
    profiles: list[dict] = []
    try:
        for n in args.n:
            base = {"n": n, "d": args.d, "k": args.k, "gemm_block": args.gemm_block,
                    "x": os.path.join(tmp, f"X_{n}x{args.d}.npy"), "y": os.path.join(tmp, f"Y_{n}x{args.d}.npy")}
            t0 = time.perf_counter()
            run_worker({**base, "task": "generate", "r": args.r, "sigma": args.sigma, "seed": args.seed},
                       verbose=False)
            print(f"# n={n}: data generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            per: dict[str, list] = {key: [] for key in ("mknn", "gemm", "knn", "cka", "cross_stats", "mknn_default",
                                                         "cka_default", "naive", "naive_argsort")}
            naive = "naive" in only and not args.no_naive and n <= args.naive_max_n
            def measure(spec: dict) -> dict:
                """One measurement; redone (up to --retry-busy times) if other processes took the CPU."""
                for attempt in range(args.retry_busy + 1):
                    waited = wait_for_idle(args.wait_idle)
                    res = run_worker(spec)
                    res["waited_for_idle_s"] = waited
                    res["others_fraction"] = frac = others_fraction(res, cores)
                    if frac <= args.max_busy or attempt == args.retry_busy:
                        res["attempt"] = attempt + 1
                        return res
                    print(f"    discarded: other processes took {100 * frac:.0f}% of the CPU; retrying",
                          file=sys.stderr, flush=True)
                    discarded.append({"task": spec["task"], "n": spec["n"], **res})
                return res

            for rep in range(args.repeat):  # interleaved, so slow drifts in machine load hit every measurement
                if "mknn" in only:
                    res = measure({**base, "task": "mknn", "variant": "core", "gemm": True})
                    per["mknn"].append(res)
                    per["gemm"].append(res)
                if "knn" in only:
                    per["knn"].append(measure({**base, "task": "knn"}))
                if "cka" in only:
                    per["cka"].append(measure({**base, "task": "cka", "variant": "core"}))
                if "cross_stats" in only:
                    per["cross_stats"].append(measure({**base, "task": "cross_stats"}))
                if "defaults" in only and rep < args.defaults_repeat:
                    per["mknn_default"].append(measure({**base, "task": "mknn", "variant": "default"}))
                    per["cka_default"].append(measure({**base, "task": "cka", "variant": "default"}))
                if naive:
                    per["naive"].append(measure({**base, "task": "naive", "argsort": False}))
                    if args.naive_argsort:
                        per["naive_argsort"].append(measure({**base, "task": "naive", "argsort": True}))
            results[n] = per
            if args.profile and n == min(args.n):
                for _ in range(args.repeat):
                    wait_for_idle(args.wait_idle)
                    profiles.append(run_worker({**base, "task": "profile"}))
            for f in (base["x"], base["y"]):
                if not args.keep_data:
                    os.remove(f)
    finally:
        if not args.keep_data:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"# data kept in {tmp}", file=sys.stderr)

    print("## repalign core benchmark\n")
    print(f"- date: {info['date']}")
    print(f"- machine: {info['cpu_model']}, {info['cores']} cores, {info['mem_total_gb']} GB RAM, "
          f"Linux {info['kernel']}")
    print(f"- versions: repalign {info['repalign']} (git {info['git_commit']}"
          f"{', repalign/ modified vs that commit' if info['repalign_dir_modified_vs_commit'] else ''}"
          f"{', snapshot ' + info['snapshot_sha256_12'] if 'snapshot_sha256_12' in info else ''}), numpy {info['numpy']}, "
          f"faiss-cpu {info['faiss']}, Python {info['python']}")
    print(f"- data: X = Z·A + σ·E1, Y = Z·B + σ·E2, Z ~ N(0,1) n×{args.r}, A, B ~ N(0, 1/{args.r}) {args.r}×{args.d}, "
          f"σ = {args.sigma}, float32, seed {args.seed}; k = {args.k}; {args.repeat} fresh-process run(s) each")
    if discarded:
        print(f"- {len(discarded)} run(s) discarded and redone because other processes took more than "
              f"{100 * args.max_busy:.0f}% of the CPU (kept in the JSON)")
    print()
    print(markdown_table(results))
    tt = targets_table(results)
    if tt:
        print("\n" + tt)
    if profiles:
        print(f"\n### Where `knn(X, {args.k})` spends its time (n = {min(args.n)}, d = {args.d})\n")
        print(profile_table(profiles))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "results": {str(k): v for k, v in results.items()}, "profile": profiles,
                       "discarded_busy_runs": discarded}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
