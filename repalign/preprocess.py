"""The paper's preprocessing: outlier clipping, then row L2-normalisation."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np

from repalign.errors import UsageError
from repalign.validation import SAFE_HIGH, SAFE_LOW, check_nonzero_rows, row_norms

PRESETS = {
    # Huh et al. 2024, platonic-rep: remove_outliers(q=0.95, exact=True), then F.normalize, k=10.
    "prh": {"clip": 0.95, "normalize": True, "k": 10},
}


@dataclass(frozen=True)
class Preprocessing:
    """What is done to both inputs before any metric."""

    clip: float | None = None
    """Clamp |values| at this quantile of all |entries| (None: no clipping)."""
    normalize: bool = False
    """L2-normalise rows before every metric (CKA included)."""
    preset: str | None = None
    """Name of the preset that chose these settings, if any."""

    def __post_init__(self):
        if self.clip is not None and not (0.0 < self.clip <= 1.0):
            raise UsageError(f"--clip must be in (0, 1] (got {self.clip})")

    def steps(self) -> list[str]:
        out = []
        if self.clip is not None and self.clip < 1.0:
            out.append(f"clip |x| at the {self.clip:g} quantile of all entries")
        if self.normalize:
            out.append("L2-normalise rows")
        return out

    def describe(self) -> str:
        steps = self.steps()
        text = ", then ".join(steps) if steps else "none"
        return f"{text} (preset {self.preset})" if self.preset else text

    def to_dict(self) -> dict:
        d = asdict(self)
        d["steps"] = self.steps()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(clip=d.get("clip"), normalize=bool(d.get("normalize")), preset=d.get("preset"))


def clip_threshold(array: np.ndarray, q: float) -> float:
    """The value at position int(q·N) of the sorted |entries| (no interpolation).

    Notes
    -----
    This is platonic-rep's ``remove_outliers(..., exact=True)``. Their command
    line sometimes uses the per-row quantile averaged over rows instead; we
    follow the library's exact version.
    """
    flat = np.abs(np.asarray(array)).ravel()
    pos = min(int(q * flat.size), flat.size - 1)
    return float(np.partition(flat, pos)[pos])


# Bits of the float's pattern settled per pass of the streamed quantile (a 65,536-bin histogram).
_DIGIT = 16


def clip_threshold_streamed(blocks: Callable[[], Iterator[np.ndarray]], q: float) -> float:
    """:func:`clip_threshold` of the rows ``blocks()`` yields, exactly, holding one block at a time.

    |x| of a float orders like its bit pattern read as an unsigned integer, so the entry at a given rank
    is found digit by digit (16 bits per pass, 2 passes for float32, 4 for float64): each pass counts the
    entries whose higher digits match the ones found so far, by their next digit, and keeps the digit where
    the rank falls. The result is the same order statistic :func:`clip_threshold` partitions for.
    """
    total, dtype = 0, None
    for block in blocks():
        total += block.size
        dtype = block.dtype
    assert dtype is not None and total > 0, "validation refuses empty inputs"
    bits = dtype.itemsize * 8
    uint = np.dtype(f"u{dtype.itemsize}")
    pos = min(int(q * total), total - 1)
    prefix, shift = 0, bits
    while shift > 0:
        shift -= _DIGIT
        counts = np.zeros(1 << _DIGIT, dtype=np.int64)
        for block in blocks():
            pattern = np.abs(block).view(uint).ravel()
            if shift + _DIGIT < bits:  # only entries whose higher digits are the ones found so far
                pattern = pattern[(pattern >> np.asarray(shift + _DIGIT, uint)) == prefix]
            digit = (pattern >> np.asarray(shift, uint)) & np.asarray((1 << _DIGIT) - 1, uint)
            counts += np.bincount(digit.astype(np.int64), minlength=1 << _DIGIT)
        cum = np.cumsum(counts)
        found = int(np.searchsorted(cum, pos, side="right"))
        pos -= int(cum[found - 1]) if found else 0
        prefix = (prefix << _DIGIT) | found
    return float(np.array(prefix, dtype=uint).view(dtype))


@dataclass(frozen=True)
class Steps:
    """The preprocessing of one input with its data-dependent parts fixed: applied alike to the whole array
    or to any block of its rows (every step is element- or row-wise, so the numbers are the same)."""

    clip: float | None
    """Clamp |values| at this threshold (None: no clipping)."""
    clip_exponent: int | None
    """After clipping, scale by 2^−clip_exponent (None: no scaling)."""
    norms: np.ndarray | None
    """Each row's L2 norm after clipping (None: no normalisation)."""

    def clipped(self, block: np.ndarray) -> np.ndarray:
        """The block after clipping (and its rescaling), before normalisation."""
        if self.clip is not None:
            block = np.clip(block, -self.clip, self.clip)
            if self.clip_exponent is not None:
                block = np.ldexp(np.asarray(block), -self.clip_exponent).astype(block.dtype, copy=False)
        return block

    def apply(self, block: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
        """The preprocessed block; ``rows``: its rows' positions in the input (for their norms)."""
        block = self.clipped(block)
        if self.norms is not None:
            # Divide in float64 and return the input's precision.
            block = (np.asarray(block, dtype=np.float64) / self.norms[rows][:, None]).astype(block.dtype, copy=False)
        return block


def _clip_exponent(t: float) -> int | None:
    # A tiny quantile can leave only tiny values (the input was scaled by its largest value before); a power
    # of two rescales exactly, as validation does, so sums of fourth powers cannot underflow.
    return int(np.frexp(t)[1]) if t > 0 and not SAFE_LOW <= t <= SAFE_HIGH else None


def _clips(pre: Preprocessing) -> bool:
    return pre.clip is not None and pre.clip < 1.0


def _check_norms(norms: np.ndarray, pre: Preprocessing, label: str) -> None:
    what = "after clipping " if _clips(pre) else ""
    check_nonzero_rows(norms, label, f"L2 normalisation {what}".strip())


def apply(array: np.ndarray, pre: Preprocessing, label: str) -> np.ndarray:
    """Apply clipping then normalisation; returns a new array or the input untouched."""
    if not (_clips(pre) or pre.normalize):
        return array
    t = clip_threshold(array, pre.clip) if pre.clip is not None and _clips(pre) else None
    steps = Steps(t, None if t is None else _clip_exponent(t), None)
    array = steps.clipped(array)
    if not pre.normalize:
        return array
    norms = row_norms(array)
    _check_norms(norms, pre, label)
    return Steps(None, None, norms).apply(array, slice(None))


def plan_streamed(blocks: Callable[[], Iterator[np.ndarray]], pre: Preprocessing, label: str) -> Steps | None:
    """The :class:`Steps` of an input read block by block by ``blocks()`` (one pass per need); None: nothing
    to do. The same numbers :func:`apply` uses: the exact quantile, and each row's norm."""
    if not (_clips(pre) or pre.normalize):
        return None
    t = clip_threshold_streamed(blocks, pre.clip) if pre.clip is not None and _clips(pre) else None
    steps = Steps(t, None if t is None else _clip_exponent(t), None)
    if not pre.normalize:
        return steps
    norms = np.concatenate([row_norms(steps.clipped(block)) for block in blocks()])
    _check_norms(norms, pre, label)
    return dataclasses.replace(steps, norms=norms)
