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
    metric declares beyond the shared work (its spec's ``memory``). ``approx_index``: the search may build an
    IVF-Flat index (``--search approx`` or ``auto``), which stores the rows once more in float32.
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
        if approx_index:  # an IVF-Flat index holds its own float32 copy next to the search's copy
            peaks.append(2 * max(dims) * n * 4 + n * fd * 36 + 2**25)
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


def _gb(x: int) -> str:
    return f"{x / 2**30:.1f} GB"


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
