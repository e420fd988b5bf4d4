"""Peak memory of a refused run: files that declare huge sizes must be refused before anything is read.

Builds, in a temporary directory, files whose headers or metadata declare far more data than they hold
(or than REPALIGN_MEMORY_LIMIT allows), runs ``python -m repalign compare`` on each as a child process
with a small REPALIGN_MEMORY_LIMIT, and prints a markdown table of exit code, the error's first words
and the child's peak RSS. Target: under 300 MB for every refused run, whatever the declared size.

Peak RSS is the child's own ``ru_maxrss`` from ``os.wait4``. A child inherits its parent's high-water
mark across fork/exec (benchmarks/README.md), so this parent never imports numpy: the files are built
by a separate child (``--make DIR``).

    python benchmarks/bench_guard.py                       # this worktree's repalign
    python benchmarks/bench_guard.py --pythonpath /tmp/old  # another copy, e.g. for a before/after
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make(where: Path) -> None:
    """The inputs (run in a child so that the measuring parent stays small)."""
    import h5py
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    def npy_header_only(path, shape):
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
            f.write(b"\0" * 64)

    npy_header_only(where / "npy_1e6x1e5.npy", (10**6, 10**5))
    npy_header_only(where / "npy_1e12x1e6.npy", (10**12, 10**6))
    with h5py.File(where / "h5_empty.h5", "w") as f:  # 400 GB dataspace, chunked, nothing written
        f.create_dataset("emb", shape=(10**6, 10**5), dtype="f4", chunks=(1000, 100))
    with h5py.File(where / "h5_2g.h5", "w") as f:  # 2 GB dataspace: small enough to be read, were it read
        f.create_dataset("emb", shape=(50_000, 10_000), dtype="f4", chunks=(1000, 1000))
    n, d, block = 30_000, 4_000, 1_000  # 120 M zeros as list<float>: 480 MB as values, a few KB on disk
    offsets = pa.array(np.arange(0, (block + 1) * d, d, dtype=np.int32))
    table = pa.table({"emb": pa.ListArray.from_arrays(offsets, pa.array(np.zeros(block * d, np.float32)))})
    with pq.ParquetWriter(where / "parquet_zeros.parquet", table.schema, compression="zstd") as w:
        for _ in range(n // block):
            w.write_table(table)
    rng = np.random.default_rng(0)
    for rows in (30_000, 50_000, 10**6):
        np.save(where / f"partner_{rows}.npy", rng.standard_normal((rows, 4)).astype(np.float32))


CASES = [  # (name, input a, partner rows)
    ("npy header 10^6×10^5 (192 B file)", "npy_1e6x1e5.npy", 10**6),
    ("npy header 10^12×10^6 (192 B file)", "npy_1e12x1e6.npy", 10**6),
    ("HDF5 10^6×10^5 chunked, empty", "h5_empty.h5:emb", 10**6),
    ("HDF5 50,000×10,000 chunked, empty", "h5_2g.h5:emb", 50_000),
    ("parquet list<float> 30,000×4,000 zeros", "parquet_zeros.parquet", 30_000),
]


def run_child(args: list[str], env: dict) -> tuple[int, float, str, float]:
    """(exit code, peak RSS in MB, first stderr line, seconds) of one child."""
    t0 = time.perf_counter()
    # cwd elsewhere: `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH.
    p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         cwd=tempfile.gettempdir())
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    first = (err.strip().splitlines() or [""])[0]
    return p.returncode, usage.ru_maxrss / 1024, first, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--make", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--limit", default="200M", help="REPALIGN_MEMORY_LIMIT for the children (default 200M)")
    ap.add_argument("--pythonpath", default=str(ROOT), help="where the repalign package to measure lives")
    opts = ap.parse_args()
    if opts.make:
        make(Path(opts.make))
        return
    with tempfile.TemporaryDirectory(prefix="bench_guard_") as tmp:
        where = Path(tmp)
        subprocess.run([sys.executable, __file__, "--make", tmp], check=True)
        env = {**os.environ, "PYTHONPATH": opts.pythonpath, "REPALIGN_MEMORY_LIMIT": opts.limit}
        base = [sys.executable, "-m", "repalign"]
        rc, floor, _, _ = run_child([*base, "--version"], env)
        print(f"# bench_guard: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"\nrepalign from {opts.pythonpath}; REPALIGN_MEMORY_LIMIT={opts.limit}; "
              f"`repalign --version` alone peaks at {floor:.0f} MB\n")
        print("| input a (b: a real n×4 float32 .npy) | file size | exit | peak RSS | s | stderr |")
        print("|---|---:|---:|---:|---:|---|")
        for name, a, rows in CASES:
            path = where / a.split(":")[0]
            args = [*base, "compare", str(where / a), str(where / f"partner_{rows}.npy"), "--resamples", "0",
                    "--permutations", "0"]
            rc, peak, first, secs = run_child(args, env)
            first = first.replace(tmp, "…")
            first = first if len(first) < 110 else first[:107] + "..."
            print(f"| {name} | {path.stat().st_size:,} B | {rc} | {peak:.0f} MB | {secs:.1f} | {first} |")


if __name__ == "__main__":
    main()
