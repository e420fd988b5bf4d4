"""Memory planning: estimate what a run needs before loading anything, and refuse what the machine lacks."""

from __future__ import annotations

import math
import os
import re

# Python, numpy, FAISS and pyarrow loaded, before any data.
BASE_BYTES = 200 * 2**20


def available_bytes() -> int | None:
    """Memory this process can still get: MemAvailable, capped by a cgroup v2 limit if one is set."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                room = int(limit) - int(f.read().strip())
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    return avail


def estimate(n: int, dims: tuple[int, int], *, resident: tuple[int, int], work_itemsize: tuple[int, int],
             preprocess: bool, neighbors: bool, depth: int, k: int, cka: bool, cka_permutations: bool,
             resamples: int, layers: tuple[int, int] = (1, 1), metric_bytes: int = 0,
             approx_index: bool = False) -> dict[str, int]:
    """Bytes a comparison needs, by part, following what the code allocates.

    ``resident``: bytes of each input once loaded (0 for a memory-mapped
    .npy, whose pages the kernel can drop); ``work_itemsize``: bytes per
    value of the array the metrics see (4 or 8). ``layers``: layers per side
    in a sweep; the dims are then those of one layer, which is all a sweep
    holds at once, plus every layer's neighbour lists. ``metric_bytes``: the largest working memory a selected
    metric declares beyond the shared work (its spec's ``memory``). ``approx_index``: the search may be
    approximate (``--search approx`` or ``auto``): its list-by-list scan holds one float32 copy of the rows,
    as exact search does, and per row its list, probes and running best.
    """
    parts = {"base": BASE_BYTES, "inputs": sum(resident)}
    persistent = 0
    peaks = [0]
    for d, item in zip(dims, work_itemsize):
        if preprocess:
            persistent += n * d * item
            peaks.append(n * d * 8)  # the float64 temporary of normalisation
    if neighbors:
        fd = min(n, depth + 1 + max(8, depth // 2))
        persistent += sum(layers) * n * depth * 8  # the lists of every layer of both sides
        peaks.append(max(dims) * n * 4 + n * fd * 36 + 2**25)  # float32 copy, FAISS results and sort keys
        if approx_index:  # the scan's float32 copy, each row's list and probes, the running best per row
            peaks.append(max(dims) * n * 4 + n * 8 * 8 + n * (depth + 1) * 36 + 2**25)
        if resamples:
            peaks.append(64 * n * 12 + 8 * n * depth * 8)
    if cka:
        d1, d2 = dims
        cka_bytes = (d1 * d1 + d2 * d2 + d1 * d2) * 8 + 2 * 8192 * (d1 + d2) * 8 + 8 * n * 8
        if layers != (1, 1):
            cka_bytes += n * d1 * 8  # a sweep centres each layer of a once, in float64
        if cka_permutations:
            cka_bytes += n * (d1 + d2) * 8 + (2 * n * n * 8 if n * 4 < d1 * d2 and n <= 8000 else 0)
        peaks.append(cka_bytes)
    peaks.append(metric_bytes)
    parts["working"] = persistent + max(peaks)
    parts["total"] = parts["base"] + parts["inputs"] + parts["working"]
    return parts


def gb(x: int) -> str:
    """Bytes as '1.2 GB', for messages and notes."""
    return f"{x / 2**30:.1f} GB"


_gb = gb

# A run whose in-memory plan holds more working memory than this beyond its inputs reads its .npy, HDF5 and
# parquet inputs as row blocks instead, so that a large run stays within the inputs' size plus 2 GB (issue 11:
# n = 10⁶, d = 768 at most 2 GB beyond the 6.1 GB of inputs). Smaller runs keep their layers in memory.
STREAM_WORKING_BYTES = 2 * 2**30
# The float32 blocks of a streamed exact search: never more than this (the rest of the plan leaves room).
SEARCH_BLOCK_BYTES = 2**30
# Rows the blocked kernels read at once: CKA and validation passes (metrics/cka.py, engine/streamed.py), the
# column chunks of exact_knn and the query blocks of the approximate index (neighbors.py, search/approx.py).
_PASS_ROWS, _EXACT_COLUMNS, _QUERY_ROWS = 8192, 1 << 13, 1 << 14
# Rows of the CKA jackknife's delete-2 sample and its blocks (metrics/cka_jackknife.py).
_PAIR_ROWS, _PAIR_BLOCK = 1448, 256


def estimate_streamed(n: int, dims: tuple[int, int], *, resident: tuple[int, int], neighbors: bool, depth: int,
                      k: int, cka: bool, resamples: int, layers: tuple[int, int], approx_index: bool,
                      normalize: bool, unit_bytes: int) -> dict[str, int]:
    """Bytes a comparison needs when its inputs are read as row blocks (engine/streamed.py), by part.

    Only blocks of the inputs are in memory: a storage unit per side (``unit_bytes``: an HDF5 chunk row, a
    parquet row group) and one pass block with its float64 temporaries. What stays is per row: the neighbour
    lists of every layer, each layer's row norms when normalising, the CKA sums' per-row terms. An approximate
    search holds the float32 copy its scan reads (the rows once more in float32) — one at a time; an exact search holds
    float32 blocks of :func:`search_budget`, which the caller adds to this plan.
    """
    parts = {"base": BASE_BYTES, "inputs": sum(resident)}
    dmax = max(dims)
    pass_rows = min(n, _PASS_ROWS)
    persistent = unit_bytes + 3 * pass_rows * dmax * 8
    if normalize:
        persistent += sum(layers) * n * 8
    peaks = [0]
    if neighbors:
        fd = min(n, depth + 1 + max(8, depth // 2))
        persistent += sum(layers) * n * depth * 8
        # exact_knn's scores of a block of queried rows and its column chunk, with float64 temporaries
        exact_rows = min(1 << 24, n * n) * 8 + min(n, _EXACT_COLUMNS) * dmax * 12
        search = n * fd * 36 + exact_rows
        if approx_index:
            query = min(n, _QUERY_ROWS)
            # its float32 copy (what it scans, the size of an IVF-Flat index), the lists it probes and the
            # running best (depth + 1) per row, merged with one list's candidates at a time
            search = max(search, n * dmax * 4 + n * 8 * 8 + n * (depth + 1) * 36 + query * dmax * 12 + exact_rows)
        peaks.append(search)
        if resamples:
            peaks.append(64 * n * 12 + 8 * n * depth * 8)
    if cka:
        d1, d2 = dims
        pair_rows = min(n, _PAIR_ROWS)
        cka_bytes = (d1 * d1 + d2 * d2 + d1 * d2) * 8 * 2 + 4 * pass_rows * (d1 + d2) * 8 + 12 * n * 8
        cka_bytes += pair_rows * (d1 + d2) * 8 + 6 * min(pair_rows, _PAIR_BLOCK) * pair_rows * 8
        peaks.append(cka_bytes)
    parts["working"] = persistent + max(peaks)
    parts["total"] = parts["base"] + parts["inputs"] + parts["working"]
    return parts


def search_budget(n: int, d: int, room: int | None) -> int:
    """Bytes of float32 rows a streamed exact search may hold: the whole copy when it fits a third of the room
    left and :data:`SEARCH_BLOCK_BYTES`, else blocks of that size (at least 1024 rows)."""
    whole = n * d * 4
    cap = SEARCH_BLOCK_BYTES if room is None else min(SEARCH_BLOCK_BYTES, room // 3)
    return max(min(whole, cap), 1024 * d * 4)


def check(parts: dict[str, int], available: int | None, what: str) -> None:
    """Raise before loading when the estimate exceeds the memory there is."""
    from repalign.errors import InputError

    if available is None or parts["total"] <= available:
        return
    raise InputError(
        f"{what} needs about {_gb(parts['total'])} of memory (inputs {_gb(parts['inputs'])}, working "
        f"{_gb(parts['working'])}) but only {_gb(available)} is available; compare fewer items, store inputs as "
        f".npy (memory-mapped), select fewer layers, or drop explicit CKA --permutations"
    )


_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGT]?)(?:I?B)?\s*", re.IGNORECASE)
_SCALE = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def env_override() -> int | None:
    """REPALIGN_MEMORY_LIMIT (bytes, or with a K/M/G/T suffix) caps the memory repalign plans for.

    Unset means no cap; any other value must be a positive finite size (so '', '0', '-5G', 'inf' and
    'nan' are refused rather than read as "no limit" or "no memory").
    """
    text = os.environ.get("REPALIGN_MEMORY_LIMIT")
    if text is None:
        return None
    m = _SIZE.fullmatch(text)
    size = float(m.group(1)) * _SCALE[m.group(2).upper()] if m else math.nan
    if not (math.isfinite(size) and size >= 1):
        from repalign.errors import UsageError

        raise UsageError(f"REPALIGN_MEMORY_LIMIT='{text}' is not a positive size such as 8G or 500M")
    return int(size)
