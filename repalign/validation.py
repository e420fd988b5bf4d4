"""The one place that checks shapes, dtypes, finiteness and pairing, and fixes dtype."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
    array = np.asanyarray(array)
    if array.ndim != 2:
        hint = ""
        if array.ndim == 3:
            hint = " (a stack of layers is read layer by layer from a file or through repalign.compare)"
        raise InputError(f"{label}: expected a 2-D array (n items × d dimensions), got shape {array.shape}{hint}")
    dtype = array.dtype
    check_dtype(dtype, label)
    n, d = array.shape
    if n == 0:
        raise InputError(f"{label}: has no rows (shape {array.shape})")
    if d == 0:
        raise InputError(f"{label}: has zero dimensions (shape {array.shape})")
    top = check_finite(array, label)
    conform = Conform.of(dtype, top, label)
    return conform.apply(array), list(conform.notes)


def check_dtype(dtype: np.dtype, label: str) -> None:
    """Floating point of at most 8 bytes: what every kernel computes in (after float16 is widened)."""
    if dtype.hasobject:
        raise InputError(f"{label}: object array; expected floating-point numbers")
    if dtype.kind != "f":
        kinds = {"i": "integer", "u": "unsigned integer", "b": "boolean", "c": "complex", "U": "string", "S": "bytes"}
        raise InputError(f"{label}: {kinds.get(dtype.kind, str(dtype))} array ({dtype}); "
                         "expected float16, float32 or float64")
    if dtype.itemsize > 8:
        raise InputError(f"{label}: {dtype} is not supported; expected float16, float32 or float64")


@dataclass(frozen=True)
class Conform:
    """What validation does to every value of one checked input: the same to a whole array or a row block.

    Every step is exact and element by element (a widening, a byte swap, a power-of-two scale), so a block
    conformed alone holds the same numbers as the same rows of the whole array conformed at once.
    """

    stored: np.dtype
    exponent: int | None
    """Values are scaled by 2^−exponent (None: left alone)."""
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, dtype: np.dtype, top: float, label: str) -> Conform:
        """The conformation of an input of this dtype whose largest |value| is ``top``."""
        notes = []
        if dtype == np.float16:
            notes.append(f"{label}: float16 values widened to float32")
        exponent = None
        if top > 0 and not SAFE_LOW <= top <= SAFE_HIGH:
            # Every metric is invariant to scaling one input, and a power of two scales exactly; without
            # it, squared distances overflow (or FAISS's float32 copy underflows) and numbers go wrong.
            exponent = int(np.frexp(top)[1])
            notes.append(f"{label}: values up to {top:.3g} scaled by 2^{-exponent} to avoid overflow and "
                         "underflow (every metric is scale-invariant)")
        return cls(np.dtype(dtype), exponent, tuple(notes))

    @property
    def dtype(self) -> np.dtype:
        """The dtype of conformed values."""
        if self.stored == np.float16:
            return np.dtype(np.float32)
        return self.stored.newbyteorder("=") if not self.stored.isnative else self.stored

    def apply(self, array: np.ndarray) -> np.ndarray:
        """The conformed array (the input itself, memory-mapped or not, when nothing changes)."""
        if array.dtype != self.dtype:
            array = array.astype(self.dtype)
        if self.exponent is not None:
            array = np.ldexp(np.asarray(array), -self.exponent).astype(array.dtype, copy=False)
        return array


# Magnitudes that float32 squared distances and float64 sums of fourth powers handle without
# overflow or underflow, for any realistic d and n.
SAFE_LOW, SAFE_HIGH = 2.0**-20, 2.0**20


def check_finite(array: np.ndarray, label: str) -> float:
    """Raise naming the rows that hold NaN or Inf; return the largest |value|."""
    return finite_top(lambda start, stop: np.asarray(array[start:stop]), array.shape[0], label)


def finite_top(read: Callable[[int, int], np.ndarray], n: int, label: str, rows: int = _BLOCK_ROWS) -> float:
    """:func:`check_finite` over rows read ``rows`` at a time by ``read(start, stop)`` (a row source)."""
    bad = []
    top = 0.0
    for start in range(0, n, rows):
        block = read(start, min(n, start + rows))
        ok = np.isfinite(block).all(axis=1)
        if not ok.all():
            bad.append(np.flatnonzero(~ok) + start)
        elif not bad and block.size:
            top = max(top, float(np.max(np.abs(block))))
    if bad:
        found = np.concatenate(bad)
        raise InputError(f"{label}: NaN or Inf in {rows_text(found)}")
    return top


def check_pair(a, b, label_a: str, label_b: str) -> int:
    """Both sides (arrays, or their shapes) must hold the same items: equal row counts. Returns n."""
    sa, sb = tuple(getattr(a, "shape", a)), tuple(getattr(b, "shape", b))
    if sa[0] != sb[0]:
        raise InputError(
            f"{label_a} has {sa[0]} rows (shape {sa}) but {label_b} has {sb[0]} rows"
            f" (shape {sb}); row i of both files must be the same item, or pair items by an id column"
            " with --ids"
        )
    return sa[0]


def check_k(k: int, n: int, metric: str, labels: tuple[str, str] = ("a", "b")) -> None:
    """1 ≤ k ≤ n−2: k = n−1 would make every neighbour list the whole set."""
    if k < 1:
        raise UsageError(f"--k must be at least 1 (got {k})")
    if k > n - 2:
        raise InputError(f"{labels[0]} and {labels[1]} hold {n} items, but {metric} with k={k} needs at least "
                         f"k+2 = {k + 2}")


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
