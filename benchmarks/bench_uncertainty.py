#!/usr/bin/env python
"""Wall time of `repalign compare` with its defaults on all three metrics: 1000 resamples, 1000 mknn permutations.

Each size runs in a fresh process (so peak RSS is the run's own); data are a shared rank-32 signal plus
noise, float32, d = 768 on both sides, written to .npy files and read through the CLI's own code path.

    python benchmarks/bench_uncertainty.py            # n = 1024 and 10000
    python benchmarks/bench_uncertainty.py --n 1024
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def make(path: str, n: int, d: int, seed: int = 0) -> tuple[str, str]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 32)).astype(np.float32)
    a = z @ rng.standard_normal((32, d)).astype(np.float32) + rng.standard_normal((n, d)).astype(np.float32)
    b = z @ rng.standard_normal((32, d)).astype(np.float32) + rng.standard_normal((n, d)).astype(np.float32)
    pa, pb = os.path.join(path, f"a{n}.npy"), os.path.join(path, f"b{n}.npy")
    np.save(pa, a)
    np.save(pb, b)
    return pa, pb


def worker(pa: str, pb: str) -> None:
    import repalign

    t = time.perf_counter()
    # Defaults: 1000 resamples; 1000 permutations for mknn (CKA permutations run only when asked for).
    r = repalign.compare(pa, pb, metrics="mknn,cka,cka-unbiased", resamples=1000, seed=1)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "peak_mb": peak, "timing": r.timing,
                      "values": {m.name: [m.value, m.ci_low, m.ci_high] for m in r.metrics}}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1024, 10000])
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} load {os.getloadavg()[0]:.2f}; n, wall s (min of {args.repeat}), "
          "peak RSS MB, stage times")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            pa, pb = make(tmp, n, args.d)
            runs = []
            for _ in range(args.repeat):
                out = subprocess.run([sys.executable, __file__, "--worker", pa, pb], capture_output=True, text=True,
                                     check=True)
                runs.append(json.loads(out.stdout))
            best = min(runs, key=lambda r: r["wall"])
            stages = ", ".join(f"{k.removesuffix('_seconds')} {v:.2f}" for k, v in best["timing"].items())
            print(f"| {n} | {best['wall']:.2f} | {best['peak_mb']:.0f} | {stages} |")


if __name__ == "__main__":
    main()
