#!/usr/bin/env python
"""Benchmark the metric family (issue 10's targets), each measurement in a fresh process, side by side.

* the floor: two bare float32 GEMMs X·Xᵀ and Y·Yᵀ (row blocks), timed in the same run;
* the whole process ``repalign compare x.npy y.npy -m <the six neighbour metrics>`` with ``--resamples 0``,
  once with ``--permutations 0`` (values and exact chance levels) and once with the default permutations
  (1000 for every metric whose permutation is cheap);
* each feature-space and O(n²) metric alone through ``repalign.compare`` (its own seconds from the
  result's timing, so loading is not counted), wall time and peak RSS of the process.

Usage::

    python benchmarks/bench_metrics.py                 # n = 10000, d = 768
    python benchmarks/bench_metrics.py --n 2000 --json benchmarks/results/metrics.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

NEIGHBOUR = "mknn,cycle-knn,lcs-knn,edit-knn,jaccard,cknna"
SINGLE = ("svcca", "svcca:var=0.99", "pwcca", "procrustes", "linear-r2", "linear-r2:folds=0", "rsa", "cka-rbf")

_FLOOR = """
import sys, time, numpy as np
sys.path.insert(0, {here!r})
from bench_core import _gemm_blocked
X = np.load({x!r}); Y = np.load({y!r})
print(_gemm_blocked(X, 2048)["gemm_s"] + _gemm_blocked(Y, 2048)["gemm_s"])
"""

_ONE = """
import json, resource, time, numpy as np, repalign
X = np.load({x!r}); Y = np.load({y!r})
t = time.perf_counter()
r = repalign.compare(X, Y, metrics={m!r}, resamples=0, permutations=0, seed=0)
wall = time.perf_counter() - t
m = r.metrics[0]
print(json.dumps({{"seconds": r.timing.get(m.id + "_seconds"), "wall": wall, "value": m.value,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def _whole_process(x: str, y: str, extra: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(["repalign", "compare", x, y, "-m", NEIGHBOUR, "-f", "json", "--seed", "0", "--resamples", "0",
                    *extra], check=True, capture_output=True)
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--json", help="write the numbers here too")
    args = ap.parse_args(argv)
    from bench_core import _generate

    out: dict = {"n": args.n, "d": args.d, "machine": f"{platform.node()} {os.cpu_count()} cpus",
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with tempfile.TemporaryDirectory() as tmp:
        x, y = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
        _generate({"n": args.n, "d": args.d, "r": 32, "sigma": 1.0, "seed": 0, "x": x, "y": y})
        out["floor_s"] = float(_python(_FLOOR.format(here=HERE, x=x, y=y)))
        print(f"floor (X·Xᵀ + Y·Yᵀ, float32): {out['floor_s']:.2f} s", flush=True)
        for label, extra in (("values", ["--permutations", "0"]), ("default_permutations", [])):
            s = _whole_process(x, y, extra)
            out[f"neighbour_{label}_s"] = s
            print(f"six neighbour metrics, whole process, {label}: {s:.2f} s = {s / out['floor_s']:.2f}× floor",
                  flush=True)
        for m in SINGLE:
            res = json.loads(_python(_ONE.format(x=x, y=y, m=m)))
            out[m] = res
            print(f"{m}: {res['seconds']:.2f} s (compare call {res['wall']:.2f} s, peak RSS {res['peak_mb']:.0f} MB, "
                  f"value {res['value']:.4f})", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
