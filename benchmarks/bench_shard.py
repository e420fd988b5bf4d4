#!/usr/bin/env python
"""Benchmark one ``compare`` whose searches are split into query-row shards (``--workers 2``) against the single
process, in one run, on the same files.

Two synthetic n × d float32 .npy inputs (a shared rank-32 signal plus noise) are written to a temporary
directory; then ``repalign.compare(a, b, metrics="mknn", search="exact", resamples=0, permutations=0, seed=0)``
runs in a fresh process without and with ``workers=2`` (cluster start-up included), alternating, ``--repeat``
times each. The reports must be identical apart from ``timing``, and the run with workers must have split its
searches (its progress stages say how). Each run's wall and CPU time (the whole process tree) and the load
average before and after are printed: other jobs on the machine skew the ratio.

Usage::

    python benchmarks/bench_shard.py                   # n = 100000, d = 768
    python benchmarks/bench_shard.py --n 20000 --d 128 --min-rows 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench_dask import report_speedup

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _generate(folder: str, n: int, d: int, seed: int) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 32)).astype(np.float32)
    paths = []
    for f in range(2):
        x = z @ rng.standard_normal((32, d)).astype(np.float32) + rng.standard_normal((n, d), dtype=np.float32)
        path = os.path.join(folder, f"m{f}.npy")
        np.save(path, x)
        paths.append(path)
    return paths


def _child(a: str, b: str, workers: int) -> None:
    """One compare in this process (the benchmark starts a fresh one per run): its report and stages as JSON."""
    import repalign

    stages: list[str] = []
    result = repalign.compare(a, b, metrics="mknn", search="exact", resamples=0, permutations=0, seed=0,
                              workers=workers or None, progress=stages.append)
    print(json.dumps({"report": result.to_dict(), "stages": stages}))


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run(paths: list[str], workers: int, min_rows: int | None) -> tuple[float, float, dict, list[str]]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", *paths, str(workers)]
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if min_rows is not None:
        env["REPALIGN_SHARD_MIN_ROWS"] = str(min_rows)
    cpu0, t0 = _children_cpu(), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr}")
    got = json.loads(out.stdout)
    return seconds, cpu, got["report"], got["stages"]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--min-rows", type=int, default=None, help="REPALIGN_SHARD_MIN_ROWS for the runs")
    args = p.parse_args()
    print(f"compare of two {args.n} × {args.d} float32 inputs, -m mknn --search exact --resamples 0 "
          f"--permutations 0 --seed 0; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        paths = _generate(tmp, args.n, args.d, seed=0)
        times: dict[str, list[float]] = {"single": [], "workers": []}
        reports: dict[str, dict] = {}
        for _ in range(args.repeat):
            for name, workers in (("single", 0), ("workers", args.workers)):
                before = _load()
                seconds, cpu, report, stages = _run(paths, workers, args.min_rows)
                print(f"  {name:8s} {seconds:8.2f} s wall, {cpu:8.2f} s CPU   load before {before}, after {_load()}",
                      flush=True)
                split = [s for s in stages if "shard" in s]
                if workers:
                    print(f"           {split[0] if split else 'searches NOT split'}")
                times[name].append(seconds)
                report.pop("timing")
                reports[name] = report
    report_speedup(times, reports, args.workers)


if __name__ == "__main__":
    main()
