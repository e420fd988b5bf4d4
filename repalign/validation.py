"""The one place that checks shapes, dtypes, finiteness and pairing, and fixes dtype."""

from __future__ import annotations

import numpy as np

from repalign.errors import InputError, UsageError

# Rows checked per block, so that a check on a memory-mapped file never
# materialises the whole array as a temporary.
_BLOCK_ROWS = 1 << 14


def rows_text(rows, limit: int = 5) -> str:
    """'row 3' / 'rows 3, 7, 9 (12 rows in all)' for error messages."""
    rows = np.asarray(rows)
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    more = f" ({len(rows)} rows in all)" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def as_embedding(array: np.ndarray, label: str) -> tuple[np.ndarray, list[str]]:
    """Check that ``array`` is a usable n×d float embedding.

    Returns the array (float32 or float64; float16 is widened to float32,
    since neither FAISS nor BLAS computes in half precision) and notes for the
    report. A memory-mapped array stays memory-mapped unless it must be
    converted.
    """
    notes: list[str] = []
    array = np.asanyarray(array)
    if array.ndim != 2:
        hint = ""
        if array.ndim == 3:
            hint = " (a stack of layers; select one 2-D layer)"
        raise InputError(f"{label}: expected a 2-D array (n items × d dimensions), got shape {array.shape}{hint}")
    dtype = array.dtype
    if dtype.hasobject:
        raise InputError(f"{label}: object array; expected floating-point numbers")
    if dtype.kind != "f":
        kinds = {"i": "integer", "u": "unsigned integer", "b": "boolean", "c": "complex", "U": "string", "S": "bytes"}
        raise InputError(f"{label}: {kinds.get(dtype.kind, str(dtype))} array ({dtype}); expected float16, float32 or float64")
    if dtype.itemsize > 8:
        raise InputError(f"{label}: {dtype} is not supported; expected float16, float32 or float64")
    n, d = array.shape
    if n == 0:
        raise InputError(f"{label}: has no rows (shape {array.shape})")
    if d == 0:
        raise InputError(f"{label}: has zero dimensions (shape {array.shape})")
    if dtype == np.float16:
        array = array.astype(np.float32)
        notes.append(f"{label}: float16 values widened to float32")
    elif dtype.byteorder not in ("=", "|") and not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    check_finite(array, label)
    return array, notes


def check_finite(array: np.ndarray, label: str) -> None:
    """Raise naming the rows that hold NaN or Inf."""
    bad = []
    for start in range(0, array.shape[0], _BLOCK_ROWS):
        block = np.asarray(array[start : start + _BLOCK_ROWS])
        ok = np.isfinite(block).all(axis=1)
        if not ok.all():
            bad.append(np.flatnonzero(~ok) + start)
    if bad:
        rows = np.concatenate(bad)
        raise InputError(f"{label}: NaN or Inf in {rows_text(rows)}")


def check_pair(a: np.ndarray, b: np.ndarray, label_a: str, label_b: str) -> int:
    """Both sides must hold the same items: equal row counts. Returns n."""
    if a.shape[0] != b.shape[0]:
        raise InputError(
            f"{label_a} has {a.shape[0]} rows (shape {a.shape}) but {label_b} has {b.shape[0]} rows"
            f" (shape {b.shape}); row i of both files must be the same item"
        )
    return a.shape[0]


def check_k(k: int, n: int, metric: str) -> None:
    """1 ≤ k ≤ n−2: k = n−1 would make every neighbour list the whole set."""
    if k < 1:
        raise UsageError(f"--k must be at least 1 (got {k})")
    if k > n - 2:
        raise InputError(f"{metric} with k={k} needs at least k+2 = {k + 2} items, but there are only {n}")


def row_norms(array: np.ndarray) -> np.ndarray:
    """Euclidean norm of every row, accumulated in float64, block by block."""
    out = np.empty(array.shape[0], dtype=np.float64)
    for start in range(0, array.shape[0], _BLOCK_ROWS):
        block = np.asarray(array[start : start + _BLOCK_ROWS], dtype=np.float64)
        out[start : start + block.shape[0]] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return out


def check_nonzero_rows(norms: np.ndarray, label: str, why: str) -> None:
    """A zero row has no direction: cosine similarity and normalisation are undefined."""
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise InputError(f"{label}: all-zero {rows_text(zero)}; {why} is undefined for a zero vector")
