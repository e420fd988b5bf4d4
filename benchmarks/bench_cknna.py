#!/usr/bin/env python
"""Time cknna's value and one permutation of its null from precomputed neighbour lists (n = 10,000, d = 768).

Data: X standard normal (float32), Y = X·R/√d + 0.7·noise, k = 10, cosine. The lists are searched once
(repalign.neighbors.knn) and handed to PairData, so the timings are the metric's own work. Usage::

    python benchmarks/bench_cknna.py [--n 10000] [--d 768] [--k 10] [--repeat 3] [--perms 20]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from repalign.metrics import PairData, parse_metrics
from repalign.neighbors import knn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--perms", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n, d, k = args.n, args.d, args.k
    X = rng.standard_normal((n, d)).astype(np.float32)
    Y = X @ (rng.standard_normal((d, d)).astype(np.float32) / np.sqrt(d)) + 0.7 * rng.standard_normal((n, d)).astype(np.float32)
    t = time.perf_counter()
    lists = {"a": knn(X, k, "cosine", label="a"), "b": knn(Y, k, "cosine", label="b")}
    print(f"neighbour lists (both sides): {time.perf_counter() - t:.2f} s")
    (choice,) = parse_metrics("cknna")
    for _ in range(args.repeat):
        p = PairData(X, Y, k=k, distance="cosine", labels=("a", "b"), lists=lists, ordered=True)
        tracemalloc.start()
        t = time.perf_counter()
        res = choice.spec.compute(p, choice.values)
        value_s = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        perms = [rng.permutation(n) for _ in range(args.perms)]
        t = time.perf_counter()
        choice.spec.permutation_null(p, choice.values, perms)
        perm_s = (time.perf_counter() - t) / args.perms
        print(f"value {res.value:.6f}: {value_s:.3f} s, peak traced {peak / 1e6:.0f} MB; "
              f"one permutation {perm_s * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
