#!/usr/bin/env python
"""Benchmark ``repalign matrix --workers 2`` against the single-process run, in one run, on the same files.

Six synthetic layered inputs (n × 4 layers × d float32 .npy, a shared rank-32 signal plus noise that grows with
the layer) are written to a temporary directory; then

    repalign matrix m0.npy ... m5.npy -f json --seed 0 [--metrics/--resamples/--permutations as given]

runs as a whole process without and with ``--workers 2`` (cluster start-up included), alternating, ``--repeat``
times each. The reports must be identical apart from ``timing``; the speed-up is single / workers (best of the
repeats). Each run's CPU time (the whole process tree) is printed too: unlike the wall time it barely depends on
other jobs, so it shows what the cluster costs in extra work. The load average before and after each run is
printed: other jobs on the machine skew the ratio. ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` in the
environment makes the single process run one thread, as each worker does.

Usage::

    python benchmarks/bench_dask.py                    # n = 20000, d = 256, 6 inputs × 4 layers
    python benchmarks/bench_dask.py --n 3000 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _generate(folder: str, inputs: int, layers: int, n: int, d: int, seed: int) -> list[str]:
    """Layered inputs that share one signal: layer l of input f = Z·A_fl + (0.5 + 0.25·l)·noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 32)).astype(np.float32)
    paths = []
    for f in range(inputs):
        stack = np.empty((n, layers, d), dtype=np.float32)
        for layer in range(layers):
            a = rng.standard_normal((32, d)).astype(np.float32)
            stack[:, layer] = z @ a + (0.5 + 0.25 * layer) * rng.standard_normal((n, d), dtype=np.float32)
        path = os.path.join(folder, f"m{f}.npy")
        np.save(path, stack)
        paths.append(path)
    return paths


def _children_cpu() -> float:
    """User + system CPU seconds of every finished child process and the descendants it waited for (the
    local cluster's nanny and worker processes included)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _matrix(paths: list[str], extra: list[str]) -> tuple[float, float, dict]:
    """Wall time and CPU time of one whole process, and its JSON report."""
    cmd = [sys.executable, "-m", "repalign", "matrix", *paths, "-f", "json", "--seed", "0", "--quiet", *extra]
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cpu0, t0 = _children_cpu(), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr}")
    return seconds, cpu, json.loads(out.stdout)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report_speedup(times: dict[str, list[float]], reports: dict[str, dict], worker_count: int) -> None:
    """Print the best single-process and --workers times and their ratio; exit 1 unless the two reports (timing
    removed) are identical."""
    same = json.dumps(reports["single"], sort_keys=True) == json.dumps(reports["workers"], sort_keys=True)
    single, workers = min(times["single"]), min(times["workers"])
    print(f"single process {single:.2f} s, --workers {worker_count} {workers:.2f} s: speed-up {single / workers:.2f}×")
    print(f"identical JSON (timing excluded): {same}")
    if not same:
        sys.exit(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--inputs", type=int, default=6)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--metrics", default="mknn,cka")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--permutations", type=int, default=None,
                   help="[default: repalign's: 1000 for mknn, none for CKA]")
    args = p.parse_args()
    extra = ["-m", args.metrics, "--resamples", str(args.resamples)]
    if args.permutations is not None:
        extra += ["--permutations", str(args.permutations)]
    print(f"{args.inputs} inputs × {args.layers} layers, n = {args.n}, d = {args.d}, float32; "
          f"options {' '.join(extra)} --seed 0; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        paths = _generate(tmp, args.inputs, args.layers, args.n, args.d, seed=0)
        times: dict[str, list[float]] = {"single": [], "workers": []}
        reports: dict[str, dict] = {}
        for _ in range(args.repeat):
            for name, more in (("single", []), ("workers", ["--workers", str(args.workers)])):
                before = _load()
                seconds, cpu, report = _matrix(paths, extra + more)
                print(f"  {name:8s} {seconds:8.2f} s wall, {cpu:8.2f} s CPU   load before {before}, after {_load()}",
                      flush=True)
                times[name].append(seconds)
                report.pop("timing")
                if name in reports and reports[name] != report:
                    sys.exit(f"{name}: two runs with the same seed gave different reports")
                reports[name] = report
    report_speedup(times, reports, args.workers)


if __name__ == "__main__":
    main()
