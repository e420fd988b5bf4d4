"""The paper's preprocessing: outlier clipping, then row L2-normalisation."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


def apply(array: np.ndarray, pre: Preprocessing, label: str) -> np.ndarray:
    """Apply clipping then normalisation; returns a new array or the input untouched."""
    if pre.clip is not None and pre.clip < 1.0:
        t = clip_threshold(array, pre.clip)
        array = np.clip(array, -t, t)
        if t > 0 and not SAFE_LOW <= t <= SAFE_HIGH:
            # A tiny quantile can leave only tiny values (the input was scaled by its largest value before);
            # a power of two rescales exactly, as validation does, so sums of fourth powers cannot underflow.
            array = np.ldexp(np.asarray(array), -int(np.frexp(t)[1])).astype(array.dtype, copy=False)
    if pre.normalize:
        norms = row_norms(array)
        what = "after clipping " if pre.clip is not None and pre.clip < 1.0 else ""
        check_nonzero_rows(norms, label, f"L2 normalisation {what}".strip())
        # Divide in float64 and return the input's precision.
        array = (np.asarray(array, dtype=np.float64) / norms[:, None]).astype(array.dtype, copy=False)
    return array
