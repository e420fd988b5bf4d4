"""Speed of cycle-knn, jaccard, lcs-knn and edit-knn from stored lists, against the floor of two X·Xᵀ products.

Run: ``PYTHONPATH=. python benchmarks/bench_neighbour_family.py [--n 10000] [--d 768] [--k 10] [--perms 1000]``.
Best of 3 for the value and one permutation; one run for the many permutations. Timings on a shared machine
are noisy: run it when the machine is quiet.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from repalign.linalg import matmul
from repalign.metrics import PairData, cycle_knn, edit_knn, jaccard, lcs_knn
from repalign.neighbors import knn
from repalign.results import UncertaintySettings

SPECS = (cycle_knn.SPEC, jaccard.SPEC, lcs_knn.SPEC, edit_knn.SPEC)


def best_of(f, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--perms", type=int, default=1000)
    args = ap.parse_args()
    n, d, k = args.n, args.d, args.k
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)).astype(np.float32)
    R = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)
    Y = X @ R + rng.standard_normal((n, d)).astype(np.float32)
    floor = best_of(lambda: (matmul(X, X.T), matmul(Y, Y.T)), repeats=2)
    t = time.perf_counter()
    lists = {"a": knn(X, k, "cosine", ordered=True), "b": knn(Y, k, "cosine", ordered=True)}
    search = time.perf_counter() - t
    print(f"n={n} d={d} k={k}: floor (two X·Xᵀ GEMMs) {floor:.2f} s; both exact ordered searches {search:.2f} s")
    total = 0.0
    for spec in SPECS:
        def pair() -> PairData:
            return PairData(None, None, k=k, distance="cosine", labels=("a", "b"), lists=lists, n=n, ordered=True,
                            uncertainty=UncertaintySettings(resamples=0, permutations=0))
        value = best_of(lambda: spec.compute(pair(), {}))
        perms = [rng.permutation(n) for _ in range(args.perms)]
        one = best_of(lambda: spec.permutation_null(pair(), {}, perms[:1]))
        total += value
        line = f"{spec.name:10s} value {value * 1e3:7.1f} ms   one permutation {one * 1e3:6.1f} ms"
        if spec.cheap_null:
            t = time.perf_counter()
            spec.permutation_null(pair(), {}, perms)
            line += f"   {args.perms} permutations {time.perf_counter() - t:6.2f} s"
        print(line)
    print(f"four values together {total * 1e3:.1f} ms = {total / floor:.3f} × the floor")


if __name__ == "__main__":
    main()
