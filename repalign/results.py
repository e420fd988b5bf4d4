"""Result objects: frozen dataclasses with to_dict()/from_dict(); no printing here."""

from __future__ import annotations

from dataclasses import dataclass, field

from repalign.preprocess import Preprocessing

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class InputInfo:
    """Where one side of the comparison came from."""

    label: str
    """'a' or 'b'."""
    path: str | None
    """File path, or None for an in-memory array."""
    key: str | None
    """Array inside the file (npz member, HDF5 dataset, parquet column), if any."""
    format: str
    """npy, npz, hdf5, parquet or array."""
    shape: tuple[int, ...]
    """Shape as stored."""
    dtype: str
    """Element type as stored."""

    @property
    def name(self) -> str:
        """How the input is shown to people: path[:key], or 'array a'."""
        if self.path is None:
            return f"array {self.label}"
        return self.path if self.key is None else f"{self.path}:{self.key}"

    def to_dict(self) -> dict:
        return {"label": self.label, "path": self.path, "key": self.key, "format": self.format,
                "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> InputInfo:
        return cls(d["label"], d["path"], d["key"], d["format"], tuple(d["shape"]), d["dtype"])


@dataclass(frozen=True)
class MetricResult:
    """One metric's score."""

    name: str
    """Registry name: mknn, cka, cka-unbiased."""
    value: float | None
    """The score; None when it is undefined for this data (see ``reason``)."""
    params: dict = field(default_factory=dict)
    """Parameters that determine the value (k, distance, estimator)."""
    chance: float | None = None
    """Mean of the score when one side's rows are randomly permuted (exact)."""
    range: tuple[float, float] = (0.0, 1.0)
    """Interval the score lies in."""
    reason: str | None = None
    """Why ``value`` is None."""

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "params": dict(self.params), "chance": self.chance,
                "range": list(self.range), "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict) -> MetricResult:
        return cls(d["name"], d["value"], dict(d.get("params", {})), d.get("chance"),
                   tuple(d.get("range", (0.0, 1.0))), d.get("reason"))


@dataclass(frozen=True)
class ComparisonResult:
    """Everything ``repalign compare`` found, ready for any renderer."""

    inputs: tuple[InputInfo, InputInfo]
    n: int
    """Number of paired items."""
    preprocessing: Preprocessing
    metrics: tuple[MetricResult, ...]
    notes: tuple[str, ...] = ()
    """Warnings and conversions the user should know about."""
    version: str = ""
    """repalign version that computed this."""
    timing: dict = field(default_factory=dict)
    """Wall times in seconds; the only fields that change between identical runs."""
    schema_version: int = SCHEMA_VERSION

    def metric(self, name: str) -> MetricResult:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "repalign_version": self.version,
            "inputs": [i.to_dict() for i in self.inputs],
            "n": self.n,
            "preprocessing": self.preprocessing.to_dict(),
            "metrics": [m.to_dict() for m in self.metrics],
            "notes": list(self.notes),
            "timing": dict(self.timing),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ComparisonResult:
        a, b = (InputInfo.from_dict(x) for x in d["inputs"])
        return cls(
            inputs=(a, b),
            n=d["n"],
            preprocessing=Preprocessing.from_dict(d["preprocessing"]),
            metrics=tuple(MetricResult.from_dict(m) for m in d["metrics"]),
            notes=tuple(d.get("notes", ())),
            version=d.get("repalign_version", ""),
            timing=dict(d.get("timing", {})),
            schema_version=d.get("schema_version", SCHEMA_VERSION),
        )
