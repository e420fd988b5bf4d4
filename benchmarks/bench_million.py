#!/usr/bin/env python
"""A million rows from disk (issue 11): `repalign compare a.npy b.npy -m mknn,cka --search auto`, peak RSS vs inputs.

Writes two float32 .npy files of a shared-signal pair into DIR, block by block (never holding either whole):
a clustered 64-dimensional latent z (200 centres, as real embeddings are clustered; IVF on isotropic noise
would measure nothing useful), X = z·Wx + noise and Y = (z + noise)·R·Wy + noise, R a random rotation of the
latent. Then runs the compare as a subprocess under ``/usr/bin/time -v`` (falling back to the child's own
rusage) and records wall time, peak RSS, the input bytes, the search's reported recall@10 and every score.

The target: at n = 1,000,000, d = 768 (6.1 GB of inputs) peak RSS ≤ inputs + 2 GB with no environment
variable, in ≤ 15 min, recall@10 ≥ 0.95. Run it on a quiet machine and note `uptime`.

Usage::

    python benchmarks/bench_million.py DIR                         # n = 1,000,000, d = 768
    python benchmarks/bench_million.py DIR --n 200000 --json out.json
    python benchmarks/bench_million.py DIR --n 200000 --env REPALIGN_MEMORY_LIMIT=3G   # a tighter plan
    python benchmarks/bench_million.py DIR --n 200000 --extra=--resamples=0             # no intervals
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BLOCK = 50_000


def write_pair(directory: str, n: int, d: int, seed: int) -> tuple[str, str]:
    """a.npy and b.npy in ``directory`` (kept if present with the right shape: regenerating 6 GB is slow)."""
    paths = (os.path.join(directory, "a.npy"), os.path.join(directory, "b.npy"))
    if all(os.path.exists(p) for p in paths):
        shapes = [np.load(p, mmap_mode="r").shape for p in paths]
        if shapes == [(n, d), (n, d)]:
            return paths
    rng = np.random.default_rng(seed)
    latent = 64
    centres = rng.standard_normal((200, latent)) * 3
    wx, wy = rng.standard_normal((latent, d)), rng.standard_normal((latent, d))
    rotation, _ = np.linalg.qr(rng.standard_normal((latent, latent)))
    outs = [np.lib.format.open_memmap(p + ".tmp", mode="w+", dtype=np.float32, shape=(n, d)) for p in paths]
    for s in range(0, n, _BLOCK):
        m = min(n, s + _BLOCK) - s
        z = centres[rng.integers(0, 200, m)] + rng.standard_normal((m, latent))
        outs[0][s : s + m] = z @ wx + 2.0 * rng.standard_normal((m, d))
        outs[1][s : s + m] = ((z + 0.7 * rng.standard_normal((m, latent))) @ rotation) @ wy + 2.0 * rng.standard_normal((m, d))
    for out, p in zip(outs, paths):
        out.flush()
        del out
        os.replace(p + ".tmp", p)
    return paths


def _time_v(text: str) -> tuple[int | None, float | None]:
    """(peak RSS in bytes, wall seconds) from /usr/bin/time -v's report."""
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return (int(rss.group(1)) * 1024 if rss else None), None


def run_compare(paths: tuple[str, str], args: argparse.Namespace, env_extra: dict[str, str]) -> dict:
    """The compare as a subprocess: its JSON report, wall time and peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        cmd = [sys.executable, "-c", "from repalign.cli import main; main()", "compare", *paths, "-m", args.metrics,
               "--search", args.search, "--seed", str(args.seed), "-o", report, "-f", "json", *args.extra]
        timer = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
        if timer:
            cmd = [timer, "-v", *cmd]
        env = {**os.environ, "PYTHONPATH": ROOT, **env_extra}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"compare failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        rss, _ = _time_v(proc.stderr)
        with open(report) as fh:
            doc = json.load(fh)
    return {"wall_seconds": round(wall, 1), "peak_rss_bytes": rss, "report": doc,
            "stderr_notes": [line for line in proc.stderr.splitlines() if line.startswith("warning:")]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", help="where the two .npy files are written (and reused)")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--metrics", default="mknn,cka")
    ap.add_argument("--search", default="auto")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the compare's environment")
    ap.add_argument("--extra", nargs="*", default=[], help="more compare options, e.g. --extra=--resamples=0")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    os.makedirs(args.directory, exist_ok=True)
    t0 = time.perf_counter()
    paths = write_pair(args.directory, args.n, args.d, args.seed)
    written = time.perf_counter() - t0
    inputs = sum(os.path.getsize(p) for p in paths)
    env_extra = dict(item.split("=", 1) for item in args.env)
    got = run_compare(paths, args, env_extra)
    doc = got.pop("report")
    search = doc.get("search") or {}
    out = {
        "n": args.n, "d": args.d, "metrics": args.metrics, "search": args.search, "env": env_extra,
        "extra": args.extra,
        "machine": platform.machine(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "write_seconds": round(written, 1),
        "input_bytes": inputs, **got,
        "rss_minus_inputs_bytes": None if got["peak_rss_bytes"] is None else got["peak_rss_bytes"] - inputs,
        "scores": {m["id"]: m["value"] for m in doc["metrics"]},
        "intervals": {m["id"]: [m["ci_low"], m["ci_high"]] for m in doc["metrics"]},
        "recall_at_k": search.get("recall_at_k"), "search_method": search.get("method", "exact"),
        "notes": doc.get("notes"), "timing": doc.get("timing"),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
