#!/usr/bin/env python
"""Benchmark the neighbour-list cache: a whole ``repalign compare`` process, cold then warm, in one run.

    repalign compare a.npy b.npy -m mknn --resamples 0 --permutations 0 --cache DIR

is run twice on the same synthetic n×d float32 pair (``bench_core._generate``: shared low-rank signal plus
noise) and a fresh cache directory: the first run searches and writes the entries, the second reads them.
The target is warm ≤ 1/3 of cold. Both reports must agree (except the cache notes and the timing).

Usage::

    python benchmarks/bench_cache.py                 # n = 20000, d = 768
    python benchmarks/bench_cache.py --n 5000 --d 256
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
sys.path.insert(0, HERE)

from bench_core import _generate  # noqa: E402 - the benchmarks folder is not a package


def _compare(x: str, y: str, cache: str) -> tuple[float, dict]:
    """Wall time of one whole process, and its JSON report."""
    cmd = [sys.executable, "-m", "repalign", "compare", x, y, "-m", "mknn", "--resamples", "0",
           "--permutations", "0", "--seed", "0", "--cache", cache, "-f", "json"]
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - t0, json.loads(out.stdout)


def _bare(report: dict) -> dict:
    return {**{k: v for k, v in report.items() if k != "timing"},
            "notes": [n for n in report["notes"] if "cache" not in n]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--d", type=int, default=768)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        x, y = os.path.join(tmp, "a.npy"), os.path.join(tmp, "b.npy")
        _generate({"n": args.n, "d": args.d, "r": 32, "sigma": 1.0, "seed": 0, "x": x, "y": y})
        cache = os.path.join(tmp, "cache")
        cold, first = _compare(x, y, cache)
        warm, second = _compare(x, y, cache)
        stored = sum(os.path.getsize(os.path.join(cache, f)) for f in os.listdir(cache))
    hits = [n for n in second["notes"] if "read from the cache" in n]
    print(f"n={args.n} d={args.d}: cold {cold:.2f} s, warm {warm:.2f} s (ratio {warm / cold:.2f}, target ≤ 0.33); "
          f"{stored / 1e6:.1f} MB in the cache; {len(hits)} inputs served from it")
    print(f"same report: {_bare(first) == _bare(second)}")


if __name__ == "__main__":
    main()
