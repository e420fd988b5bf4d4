#!/usr/bin/env python
"""Wall time of `repalign compare` with its defaults on all three metrics: 1000 resamples, 1000 mknn permutations.

Each size runs in a fresh process (so peak RSS is the run's own); data are a shared rank-32 signal plus
noise, float32, d = 768 on both sides, written to .npy files and read through the CLI's own code path.

    python benchmarks/bench_uncertainty.py            # n = 1024 and 10000
    python benchmarks/bench_uncertainty.py --n 1024

Issue 13's "cheaper defaults" (mknn alone against the two-GEMM floor, both measured in this run)::

    python benchmarks/bench_uncertainty.py --floor --n 10000 [--before /path/to/other/checkout]

prints, each in a fresh process: the floor (X·Xᵀ + Y·Yᵀ, float32, bench_core._gemm_blocked); ``python -m repalign
compare x.npy y.npy -m mknn`` with the defaults (1000 resamples, 1000 permutations); the same with
``--resamples 0 --permutations 0`` (the point estimate); and with ``--before`` the default command run on that
checkout (PYTHONPATH), so before and after share the machine's state. The cost of the interval and the null at
sizes too large to search here, from synthetic neighbour lists::

    python benchmarks/bench_uncertainty.py --synthetic-lists 1000000
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


def make(path: str, n: int, d: int, seed: int = 0, unrelated: bool = False) -> tuple[str, str]:
    """Rank-32 shared signal plus noise in each space; ``unrelated``: b draws its own latent (no signal)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 32)).astype(np.float32)
    zb = rng.standard_normal((n, 32)).astype(np.float32) if unrelated else z
    a = z @ rng.standard_normal((32, d)).astype(np.float32) + rng.standard_normal((n, d)).astype(np.float32)
    b = zb @ rng.standard_normal((32, d)).astype(np.float32) + rng.standard_normal((n, d)).astype(np.float32)
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


HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

_FLOOR = """
import sys, numpy as np
sys.path.insert(0, {here!r})
from bench_core import _gemm_blocked
X = np.load({x!r}); Y = np.load({y!r})
print(_gemm_blocked(X, 2048)["gemm_s"] + _gemm_blocked(Y, 2048)["gemm_s"])
"""


def _timed_cli(root: str, pa: str, pb: str, extra: list[str]) -> tuple[float, dict]:
    """Wall time of a whole `python -m repalign compare` process on the checkout ``root``, and its JSON."""
    env = dict(os.environ, PYTHONPATH=root)
    t = time.perf_counter()
    # cwd=root: `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH.
    out = subprocess.run([sys.executable, "-m", "repalign", "compare", pa, pb, "-m", "mknn", "-f", "json",
                          "--seed", "1", *extra], capture_output=True, text=True, check=True, env=env, cwd=root)
    return time.perf_counter() - t, json.loads(out.stdout)


def floor_ratio(ns: list[int], d: int, repeat: int, before: str | None, unrelated: bool = False) -> None:
    """mknn with the default intervals and p-value, against the two-GEMM floor measured in the same run."""
    print(f"# {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, load {os.getloadavg()[0]:.2f}; "
          f"each number the minimum of {repeat} fresh processes")
    with tempfile.TemporaryDirectory() as tmp:
        for n in ns:
            pa, pb = make(tmp, n, d, unrelated=unrelated)
            floor = min(float(subprocess.run([sys.executable, "-c", _FLOOR.format(here=HERE, x=pa, y=pb)],
                                             capture_output=True, text=True, check=True).stdout)
                        for _ in range(repeat))
            runs = {"defaults": (ROOT, []), "point estimate": (ROOT, ["--resamples", "0", "--permutations", "0"])}
            if before:
                runs["defaults, before"] = (before, [])
            print(f"| {n} | floor | {floor:.2f} s | 1.00× | load {os.getloadavg()[0]:.2f} |")
            for label, (root, extra) in runs.items():
                best = min((_timed_cli(root, pa, pb, extra) for _ in range(repeat)), key=lambda r: r[0])
                m = best[1]["metrics"][0]
                print(f"| {n} | {label} | {best[0]:.2f} s | {best[0] / floor:.2f}× | mknn {m['value']:.4f} "
                      f"[{m['ci_low']}, {m['ci_high']}] p {m['p_value']} ({m['p_method']}), "
                      f"load {os.getloadavg()[0]:.2f} |", flush=True)


def cka_bootstrap(ns: list[int], d: int, repeat: int, unrelated: bool = False) -> None:
    """Whole `compare -m cka,cka-unbiased --ci-method bootstrap` processes (B = 1000): wall time and peak RSS."""
    import resource

    print(f"# {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, load {os.getloadavg()[0]:.2f}; d = {d}, "
          f"{'unrelated' if unrelated else 'shared signal'}; wall: the minimum of {repeat} fresh processes")
    with tempfile.TemporaryDirectory() as tmp:
        for n in ns:
            pa, pb = make(tmp, n, d, unrelated=unrelated)
            walls = []
            for _ in range(repeat):
                t = time.perf_counter()
                out = subprocess.run([sys.executable, "-m", "repalign", "compare", pa, pb, "-m", "cka,cka-unbiased",
                                      "--ci-method", "bootstrap", "--resamples", "1000", "--seed", "1", "-f", "json"],
                                     capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=ROOT),
                                     cwd=ROOT)
                walls.append(time.perf_counter() - t)
            # ru_maxrss of the children: the largest so far, so it is this n's (the sizes grow).
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            ms = json.loads(out.stdout)["metrics"]
            cells = "; ".join(f"{m['name']} {m['value']:.4f} [{m['ci_low']:.4f}, {m['ci_high']:.4f}] {m['ci_method']}"
                              for m in ms)
            print(f"| {n} | {min(walls):.2f} s | {peak:.0f} MB | {cells} | load {os.getloadavg()[0]:.2f} |", flush=True)


def synthetic_lists(n: int, K: int = 30, k: int = 10, shared: float = 0.5, seed: int = 0) -> None:
    """Seconds of the default interval (IJ and its calibration) and of the jackknife at n, from synthetic lists.

    Lists: K distinct rows other than i (offsets below n/2, in random order); side b keeps each of side a's
    entries with probability ``shared``, else takes a row at an offset above n/2 (so no row repeats), so matches
    exist at every depth as in real data. No search is timed.
    """
    from repalign import stats

    rng = np.random.default_rng(seed)
    rows = np.arange(n)[:, None]

    def offsets(start: int) -> np.ndarray:  # K distinct offsets in [start, start + n/2), shuffled per row
        off = start + np.cumsum(rng.integers(1, max(2, n // (2 * K)), size=(n, K)), axis=1)
        return np.take_along_axis(off, np.argsort(rng.random((n, K)), axis=1), axis=1)

    la = (rows + offsets(0)) % n
    lb = np.where(rng.random((n, K)) < shared, la, (rows + offsets(n // 2)) % n)
    print(f"# {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, load {os.getloadavg()[0]:.2f}; n = {n}, K = {K}, "
          f"k = {k}; budgets (observed, per calibration pairing) = {stats.ij_budgets(n, 1000)}")

    def full_list(side: str, i: int, depth: int) -> np.ndarray:  # deeper lists: only when a resample exhausts K
        lst = la[i] if side == "a" else lb[i]
        extra = np.setdiff1d((i + 1 + np.arange(depth)) % n, np.r_[lst, i])[: max(0, depth - K)]
        return np.r_[lst, extra]

    t = time.perf_counter()
    rs = stats.KnnResampler(la, lb, k, full_list=full_list)
    t1 = time.perf_counter()
    _, sd = stats.mknn_null(la[:, :k], lb[:, :k])
    t2 = time.perf_counter()
    ij = stats.knn_ij_variance(rs, np.random.SeedSequence(1), 1000, np.random.SeedSequence(2), sd)
    t3 = time.perf_counter()
    peak_interval = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the default path's peak
    rs.jackknife()
    t4 = time.perf_counter()
    null = stats.knn_permutation_null(la[:, :k], lb[:, :k], stats.permutations(np.random.SeedSequence(3), n, 10))
    t5 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"resampler setup {t1 - t:.1f} s; exact null {t2 - t1:.1f} s; IJ + calibration {t3 - t2:.1f} s "
          f"({ij.replicates.size} + 4 pairings; peak RSS so far {peak_interval:.0f} MB); jackknife (bca only) "
          f"{t4 - t3:.1f} s; one permutation {(t5 - t4) / null.size:.2f} s; peak RSS {peak:.0f} MB; "
          f"load {os.getloadavg()[0]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1024, 10000])
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--floor", action="store_true", help="mknn alone against the two-GEMM floor (issue 13)")
    ap.add_argument("--before", help="with --floor: also time the default command on this checkout")
    ap.add_argument("--unrelated", action="store_true", help="with --floor: spaces without shared signal")
    ap.add_argument("--cka-bootstrap", action="store_true",
                    help="CKA's bootstrap interval (B = 1000) in whole processes, wall time and peak RSS")
    ap.add_argument("--synthetic-lists", type=int, metavar="N", help="interval and null cost at n = N, no search")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    if args.floor:
        floor_ratio(args.n, args.d, args.repeat, args.before, args.unrelated)
        return
    if args.cka_bootstrap:
        cka_bootstrap(args.n, args.d, args.repeat, args.unrelated)
        return
    if args.synthetic_lists:
        synthetic_lists(args.synthetic_lists)
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
