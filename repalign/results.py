"""Result objects: frozen dataclasses with to_dict()/from_dict(); no printing here.

Over 400 lines on purpose: this module is the JSON schema in Python (one docstring per field), and keeping every
result type and its (de)serialisation side by side is what keeps them in step with schema/report.schema.json.
"""

from __future__ import annotations

import html
import importlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from repalign.errors import RepalignError
from repalign.pairing import Pairing
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
    shape: tuple[int | None, ...]
    """Shape as stored."""
    dtype: str
    """Element type as stored."""
    layers: tuple[str, ...] | None = None
    """Labels of the layers used (n×L×d index or array key), or None for a single 2-D array."""
    given_name: str | None = None
    """The name the user gave this input (``labels=``, ``--label-a``, ``NAME=PATH``), shown instead of its path."""

    @property
    def name(self) -> str:
        """How the input is shown to people: its given name, path[:key], or 'array a'."""
        if self.given_name is not None:
            return self.given_name
        if self.path is None:
            return f"array {self.label}"
        return self.path if self.key is None else f"{self.path}:{self.key}"

    @property
    def short(self) -> str:
        """The input's row/column head in tables and heatmaps: its given name, or its label ('a', '0')."""
        return self.label if self.given_name is None else self.given_name

    def to_dict(self) -> dict:
        d = {"label": self.label, "path": self.path, "key": self.key, "format": self.format,
             "shape": list(self.shape), "dtype": self.dtype,
             "layers": None if self.layers is None else list(self.layers)}
        if self.given_name is not None:  # only then, so that reports without names stay as they were
            d["name"] = self.given_name
        return d

    @classmethod
    def from_dict(cls, d: dict) -> InputInfo:
        layers = d.get("layers")
        return cls(d["label"], d["path"], d["key"], d["format"], tuple(d["shape"]), d["dtype"],
                   None if layers is None else tuple(layers), d.get("name"))


@dataclass(frozen=True)
class MetricResult:
    """One metric's score, its chance level and its uncertainty."""

    name: str
    """Registry name: mknn, cka, cka-unbiased."""
    value: float | None
    """The score; None when it is undefined for this data (see ``reason``)."""
    params: dict = field(default_factory=dict)
    """Parameters that determine the value (k, distance, estimator)."""
    chance: float | None = None
    """Exact mean of the score when one side's rows are randomly permuted."""
    range: tuple[float, float] = (0.0, 1.0)
    """Interval the score lies in."""
    reason: str | None = None
    """Why ``value`` is None."""
    null_sd: float | None = None
    """Exact standard deviation of the score under random pairing."""
    z: float | None = None
    """(value − chance) / null_sd."""
    p_value: float | None = None
    """One-sided p-value against random pairing (how it was obtained: ``p_method``); None if none was asked."""
    p_method: str | None = None
    """How ``p_value`` (and ``calibrated``) were obtained; None when there is no p-value:
    "permutation": (1 + #{null ≥ observed})/(P + 1) from all P permutations;
    "sequential permutation (Besag-Clifford)": stopped at the L-th permutation, when h = 10 null values at
    least as large had been seen, p = h/L (``permutations`` = L);
    "exact-moment bound (Cantelli)": no permutations; p is Cantelli's upper bound on the exact permutation
    p-value from the null's exact mean and SD, so it is valid (conservative)."""
    calibrated: float | None = None
    """Calibrated score of Gröger et al. 2026 from the same permutations (with the exact-moment bound: τ is
    Cantelli's bound on the null's 95% quantile, so the score is conservative)."""
    permutations: int = 0
    """Number of permutations behind p_value and calibrated (0 with the exact-moment bound)."""
    ci_low: float | None = None
    """Lower end of the confidence interval."""
    ci_high: float | None = None
    """Upper end of the confidence interval."""
    ci_method: str | None = None
    """How the interval was made (e.g. bootstrap-percentile, jackknife-normal)."""
    ci_covers: str | None = None
    """What the interval is an interval for."""
    ci_reason: str | None = None
    """Why there is no interval, when there is none."""
    higher_is_better: bool = True
    """The metric's direction (JSON ``direction``: "higher" or "lower" = more aligned)."""
    label: str | None = None
    """How reports, sweeps and gates name this result (JSON ``id``): the metric's name, plus the parameters
    the user gave (``svcca:dims=20``), so one metric with two parameter sets stays two results."""

    _FIELDS = ("name", "value", "params", "chance", "range", "reason", "null_sd", "z", "p_value", "p_method",
               "calibrated", "permutations", "ci_low", "ci_high", "ci_method", "ci_covers", "ci_reason")

    @property
    def id(self) -> str:
        return self.name if self.label is None else self.label

    @property
    def best(self) -> float:
        """The value of perfect alignment: the top of the range, or its bottom for a distance."""
        return self.range[1] if self.higher_is_better else self.range[0]

    def better(self, a: float, b: float) -> bool:
        """Whether value a is strictly more aligned than value b, in this metric's direction."""
        return a > b if self.higher_is_better else a < b

    def to_dict(self) -> dict:
        d: dict = {"id": self.id}
        d.update((f, getattr(self, f)) for f in self._FIELDS)
        d["params"] = dict(self.params)
        # An unbounded side (R² has no lower bound) is null: JSON has no infinity.
        d["range"] = [v if math.isfinite(v) else None for v in self.range]
        d["direction"] = "higher" if self.higher_is_better else "lower"
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MetricResult:
        kw = {f: d[f] for f in cls._FIELDS if f in d}
        kw["params"] = dict(kw.get("params", {}))
        lo, hi = kw.get("range", (0.0, 1.0))
        kw["range"] = (-math.inf if lo is None else lo, math.inf if hi is None else hi)
        kw["higher_is_better"] = d.get("direction", "higher") != "lower"
        if d.get("id") not in (None, d.get("name")):
            kw["label"] = d["id"]
        return cls(**kw)


@dataclass(frozen=True)
class UncertaintySettings:
    """How intervals and null distributions were computed."""

    resamples: int = 1000
    """Bootstrap replicates (0: no intervals)."""
    confidence: float = 0.95
    """Two-sided confidence level of the intervals."""
    seed: int = 0
    """Seed of every random draw; the same seed gives the same numbers."""
    ci_method: str = "auto"
    """Requested interval method; each metric reports the one it used."""
    permutations: int = 1000
    """Permutations for p-values and calibrated scores (0: none)."""
    permutations_explicit: bool = False
    """True when the user asked for permutations, which then run for every metric, costly ones included."""

    def to_dict(self) -> dict:
        return {"resamples": self.resamples, "confidence": self.confidence, "seed": self.seed,
                "ci_method": self.ci_method, "permutations": self.permutations}

    @classmethod
    def from_dict(cls, d: dict) -> UncertaintySettings:
        return cls(d["resamples"], d["confidence"], d["seed"], d["ci_method"], d["permutations"])


@dataclass(frozen=True)
class Check:
    """One threshold from --fail-under, --fail-above or --max-drop, and whether it held."""

    metric: str
    kind: str
    """fail-under, fail-above or max-drop."""
    bound: float
    on: str
    """What the bound applies to: value, ci-low or ci-high (max-drop: the drop from the baseline)."""
    observed: float | None
    """The number compared with the bound; None when it does not exist (the check then fails)."""
    passed: bool
    message: str
    """One line for people, e.g. 'mknn = 0.21 is under 0.30'."""
    pair: tuple[int, int] | None = None
    """In a matrix report: the indices of the two inputs the check is about."""

    def to_dict(self) -> dict:
        d = {"metric": self.metric, "kind": self.kind, "bound": self.bound, "on": self.on,
             "observed": self.observed, "passed": self.passed, "message": self.message}
        if self.pair is not None:
            d["pair"] = list(self.pair)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Check:
        pair = d.get("pair")
        return cls(d["metric"], d["kind"], d["bound"], d["on"], d["observed"], d["passed"], d["message"],
                   None if pair is None else tuple(pair))


@dataclass(frozen=True)
class BaselineRow:
    """A metric's value in an earlier report next to its value now."""

    metric: str
    old: float | None
    new: float | None
    diff: float | None
    """new − old."""

    def to_dict(self) -> dict:
        return {"metric": self.metric, "old": self.old, "new": self.new, "diff": self.diff}

    @classmethod
    def from_dict(cls, d: dict) -> BaselineRow:
        return cls(d["metric"], d["old"], d["new"], d["diff"])


@dataclass(frozen=True)
class Baseline:
    """The comparison with an earlier repalign JSON report."""

    path: str
    rows: tuple[BaselineRow, ...]

    def to_dict(self) -> dict:
        return {"path": self.path, "metrics": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, d: dict) -> Baseline:
        return cls(d["path"], tuple(BaselineRow.from_dict(r) for r in d["metrics"]))


@dataclass(frozen=True)
class Sweep:
    """Every (layer of a, layer of b) score of a layer sweep, per metric."""

    layers_a: tuple[str, ...]
    layers_b: tuple[str, ...]
    cells: dict
    """metric → La×Lb tuple of MetricResult (value, chance, null_sd, z of that pair alone)."""
    best: dict
    """metric → (i, j) of the best pair, or None when no pair has a value."""

    def values(self, metric: str) -> list[list[float | None]]:
        return [[c.value for c in row] for row in self.cells[metric]]

    def higher_is_better(self, metric: str) -> bool:
        return bool(self.cells[metric][0][0].higher_is_better)

    def row_best(self, metric: str) -> list[int | None]:
        """For each layer of a, the index of its best layer of b (in the metric's direction)."""
        sign = 1.0 if self.higher_is_better(metric) else -1.0
        out = []
        for row in self.cells[metric]:
            vals = [(sign * c.value, j) for j, c in enumerate(row) if c.value is not None]
            out.append(max(vals, key=lambda t: (t[0], -t[1]))[1] if vals else None)
        return out

    def col_best(self, metric: str) -> list[int | None]:
        """For each layer of b, the index of its best layer of a (in the metric's direction)."""
        sign = 1.0 if self.higher_is_better(metric) else -1.0
        out = []
        for j in range(len(self.layers_b)):
            vals = [(sign * row[j].value, i) for i, row in enumerate(self.cells[metric]) if row[j].value is not None]
            out.append(max(vals, key=lambda t: (t[0], -t[1]))[1] if vals else None)
        return out

    def to_dict(self) -> dict:
        out = {}
        for m, grid in self.cells.items():
            at = self.best[m]
            rb, cb = self.row_best(m), self.col_best(m)
            out[m] = {
                "direction": "higher" if self.higher_is_better(m) else "lower",
                "value": [[c.value for c in row] for row in grid],
                "chance": [[c.chance for c in row] for row in grid],
                "null_sd": [[c.null_sd for c in row] for row in grid],
                "z": [[c.z for c in row] for row in grid],
                "best": None if at is None else {"layer_a": self.layers_a[at[0]], "layer_b": self.layers_b[at[1]],
                                                 "value": grid[at[0]][at[1]].value},
                "row_best": [None if j is None else {"layer_a": self.layers_a[i], "layer_b": self.layers_b[j],
                                                     "value": grid[i][j].value} for i, j in enumerate(rb)],
                "col_best": [None if i is None else {"layer_a": self.layers_a[i], "layer_b": self.layers_b[j],
                                                     "value": grid[i][j].value} for j, i in enumerate(cb)],
            }
        return {"layers_a": list(self.layers_a), "layers_b": list(self.layers_b), "metrics": out}

    @classmethod
    def from_dict(cls, d: dict) -> Sweep:
        la, lb = tuple(d["layers_a"]), tuple(d["layers_b"])
        cells, best = {}, {}
        for m, g in d["metrics"].items():
            higher = g.get("direction", "higher") != "lower"
            cells[m] = tuple(tuple(MetricResult(m.partition(":")[0], v, chance=c, null_sd=s, z=z,
                                                higher_is_better=higher, label=m)
                                   for v, c, s, z in zip(*rows)) for rows in zip(g["value"], g["chance"],
                                                                                   g["null_sd"], g["z"]))
            b = g["best"]
            best[m] = None if b is None else (la.index(b["layer_a"]), lb.index(b["layer_b"]))
        return cls(la, lb, cells, best)


@dataclass(frozen=True)
class SearchIndex:
    """One approximate index (an input's layer): its parameters and its measured recall."""

    input: str
    """The input's label (a, b, or its position in a matrix)."""
    layer: str
    n: int
    d: int
    nlist: int
    """Inverted lists (k-means centroids) of the IVF-Flat index."""
    nprobe: int
    """Lists searched per query, the first reaching the recall target on the tuning rows."""
    training_rows: int
    """Rows k-means was trained on (a seeded sample)."""
    tuning_rows: int
    tuning_recall: float
    """recall at the list depth on the tuning rows, at the chosen nprobe."""
    fallback_rows: int
    """Rows the probed lists could not fill, searched exactly instead."""
    recall_at_k: float
    """Estimated mean over all rows of |approximate k-list ∩ exact k-list| / k, from the sample rows."""
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> SearchIndex:
        return cls(**d)


@dataclass(frozen=True)
class SearchShift:
    """What approximate lists did to one k-NN metric: its value on the sample rows with exact lists minus
    with approximate lists (positive: approximation lowered it), with a paired interval over the rows."""

    metric: str
    pair: tuple[str, str]
    """The two (input, layer) lists compared, e.g. ("a", "b") or ("a:layer3", "b:layer5")."""
    shift: float
    ci_low: float
    ci_high: float
    exact: float
    """The metric on the sample rows with exact lists."""
    approx: float
    """The metric on the sample rows with approximate lists."""

    def to_dict(self) -> dict:
        return {**self.__dict__, "pair": list(self.pair)}

    @classmethod
    def from_dict(cls, d: dict) -> SearchShift:
        return cls(**{**d, "pair": tuple(d["pair"])})


@dataclass(frozen=True)
class SearchReport:
    """How neighbour lists were found when any were approximate (None in a result: all exact, certified)."""

    method: str
    """"approx", or "mixed" when --search auto chose exact for some inputs and approximate for others."""
    chosen_by: str
    """"option" (--search approx) or "auto"."""
    certified: bool
    """Always False: approximate lists are not certified exact."""
    recall_target: float
    seed: int
    k: int
    confidence: float
    """Level of the intervals below."""
    sample_rows: int
    """Rows whose exact lists measure the approximation (the same rows in every input)."""
    recall_at_k: float
    """The lowest recall@k over the approximate indexes, with its interval."""
    ci_low: float
    ci_high: float
    indexes: tuple[SearchIndex, ...] = ()
    shifts: tuple[SearchShift, ...] = ()
    """Per k-NN metric that is a mean over rows (mknn, jaccard, lcs-knn, edit-knn), at its reported pair."""

    def to_dict(self) -> dict:
        return {**self.__dict__, "indexes": [i.to_dict() for i in self.indexes],
                "shifts": [s.to_dict() for s in self.shifts]}

    @classmethod
    def from_dict(cls, d: dict) -> SearchReport:
        return cls(**{**d, "indexes": tuple(SearchIndex.from_dict(i) for i in d.get("indexes", ())),
                      "shifts": tuple(SearchShift.from_dict(s) for s in d.get("shifts", ()))})


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
    uncertainty: UncertaintySettings | None = None
    """Settings behind the intervals and p-values (None: not computed)."""
    version: str = ""
    """repalign version that computed this."""
    timing: dict = field(default_factory=dict)
    """Wall times in seconds; the only fields that change between identical runs."""
    schema_version: int = SCHEMA_VERSION
    checks: tuple[Check, ...] = ()
    """Thresholds given on the command line, evaluated."""
    baseline: Baseline | None = None
    """Comparison with an earlier report, if one was given."""
    pairing: Pairing | None = None
    """How rows were matched (row order or ids) and subsampled."""
    sweep: Sweep | None = None
    """Every layer pair's scores when an input has several layers (``metrics`` then holds the best pair)."""
    search: SearchReport | None = None
    """Approximate search's parameters and measured accuracy; None (absent from JSON) when all lists are exact."""

    @property
    def failed(self) -> bool:
        """True when any check failed (the CLI then exits 1)."""
        return any(not c.passed for c in self.checks)

    def __repr__(self) -> str:
        """One line per metric: name, value, interval, chance."""
        return _comparison_repr(self)

    def _repr_html_(self) -> str:
        return _comparison_html(self)

    def to_pandas(self):
        """The report as a long-form pandas DataFrame: the CSV report's columns and numbers."""
        return _to_pandas(self)

    def metric(self, name: str) -> MetricResult:
        """The result with this id (``svcca:dims=20``), else the first with this metric name."""
        for m in sorted(self.metrics, key=lambda m: m.id != name):
            if m.id == name or m.name == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "repalign_version": self.version,
            "inputs": [i.to_dict() for i in self.inputs],
            "n": self.n,
            "pairing": None if self.pairing is None else self.pairing.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "metrics": [m.to_dict() for m in self.metrics],
            "uncertainty": None if self.uncertainty is None else self.uncertainty.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "sweep": None if self.sweep is None else self.sweep.to_dict(),
            "notes": list(self.notes),
            "timing": dict(self.timing),
        } | ({} if self.search is None else {"search": self.search.to_dict()})

    @classmethod
    def from_dict(cls, d: dict) -> ComparisonResult:
        a, b = (InputInfo.from_dict(x) for x in d["inputs"])
        return cls(
            inputs=(a, b),
            n=d["n"],
            preprocessing=Preprocessing.from_dict(d["preprocessing"]),
            metrics=tuple(MetricResult.from_dict(m) for m in d["metrics"]),
            notes=tuple(d.get("notes", ())),
            uncertainty=None if d.get("uncertainty") is None else UncertaintySettings.from_dict(d["uncertainty"]),
            version=d.get("repalign_version", ""),
            timing=dict(d.get("timing", {})),
            schema_version=d.get("schema_version", SCHEMA_VERSION),
            checks=tuple(Check.from_dict(c) for c in d.get("checks", ())),
            baseline=None if d.get("baseline") is None else Baseline.from_dict(d["baseline"]),
            pairing=None if d.get("pairing") is None else Pairing.from_dict(d["pairing"]),
            sweep=None if d.get("sweep") is None else Sweep.from_dict(d["sweep"]),
            search=None if d.get("search") is None else SearchReport.from_dict(d["search"]),
        )


@dataclass(frozen=True)
class MatrixCell:
    """One pair of inputs of a matrix: each metric's result (the best layer pair when inputs have layers)."""

    a: int
    b: int
    metrics: tuple[MetricResult, ...]

    def metric(self, name: str) -> MetricResult:
        """The result with this id, else the first with this metric name."""
        return next(m for m in sorted(self.metrics, key=lambda m: m.id != name) if name in (m.id, m.name))

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "metrics": [m.to_dict() for m in self.metrics]}

    @classmethod
    def from_dict(cls, d: dict) -> MatrixCell:
        return cls(d["a"], d["b"], tuple(MetricResult.from_dict(m) for m in d["metrics"]))


@dataclass(frozen=True)
class MatrixResult:
    """Everything ``repalign matrix`` found: every pair of inputs, or every input against a reference."""

    inputs: tuple[InputInfo, ...]
    n: int
    preprocessing: Preprocessing
    metric_names: tuple[str, ...]
    cells: tuple[MatrixCell, ...]
    """Each unordered pair once (a < b); with a reference, (reference, other) sorted best first."""
    diagonal: tuple[MatrixCell, ...] = ()
    """Each input against itself (no reference mode)."""
    reference: int | None = None
    """Index of the reference input, if --reference was given."""
    notes: tuple[str, ...] = ()
    uncertainty: UncertaintySettings | None = None
    version: str = ""
    timing: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    checks: tuple[Check, ...] = ()
    pairing: Pairing | None = None
    search: SearchReport | None = None
    """Approximate search's parameters and measured accuracy; None (absent from JSON) when all lists are exact."""

    @property
    def failed(self) -> bool:
        return any(not c.passed for c in self.checks)

    def __repr__(self) -> str:
        """One line per pair and metric: name, value, interval, chance."""
        return _matrix_repr(self)

    def _repr_html_(self) -> str:
        return _matrix_html(self)

    def to_pandas(self):
        """The report as a long-form pandas DataFrame: the CSV report's columns and numbers."""
        return _to_pandas(self)

    @property
    def order(self) -> tuple[int, ...]:
        """Reference mode: the other inputs, best first."""
        return tuple(c.b for c in self.cells)

    def cell(self, p: int, q: int) -> MatrixCell | None:
        for c in self.cells + self.diagonal:
            if (c.a, c.b) in ((p, q), (q, p)):
                return c
        return None

    def grid(self, metric: str) -> list[list[float | None]]:
        """m×m values: row input as a, column input as b. A symmetric metric fills both triangles; an asymmetric
        one only the cells that were computed in that order (each pair is scored once, a < b)."""
        from repalign.metrics import REGISTRY

        m = len(self.inputs)
        out: list[list[float | None]] = [[None] * m for _ in range(m)]
        for c in self.cells + self.diagonal:
            r = c.metric(metric)
            out[c.a][c.b] = r.value
            spec = REGISTRY.get(r.name)
            if spec is None or spec.symmetric:
                out[c.b][c.a] = r.value
        return out

    def range(self, metric: str) -> tuple[float, float]:
        for c in self.cells + self.diagonal:
            return c.metric(metric).range
        return (0.0, 1.0)

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "kind": "matrix",
            "repalign_version": self.version,
            "inputs": [i.to_dict() for i in self.inputs],
            "n": self.n,
            "pairing": None if self.pairing is None else self.pairing.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "reference": self.reference,
            "metrics": list(self.metric_names),
            "matrix": {name: self.grid(name) for name in self.metric_names},
            "cells": [c.to_dict() for c in self.cells],
            "diagonal": [c.to_dict() for c in self.diagonal],
            "uncertainty": None if self.uncertainty is None else self.uncertainty.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
            "notes": list(self.notes),
            "timing": dict(self.timing),
        } | ({} if self.search is None else {"search": self.search.to_dict()})

    @classmethod
    def from_dict(cls, d: dict) -> MatrixResult:
        return cls(
            inputs=tuple(InputInfo.from_dict(x) for x in d["inputs"]), n=d["n"],
            preprocessing=Preprocessing.from_dict(d["preprocessing"]), metric_names=tuple(d["metrics"]),
            cells=tuple(MatrixCell.from_dict(c) for c in d["cells"]),
            diagonal=tuple(MatrixCell.from_dict(c) for c in d.get("diagonal", ())), reference=d.get("reference"),
            notes=tuple(d.get("notes", ())),
            uncertainty=None if d.get("uncertainty") is None else UncertaintySettings.from_dict(d["uncertainty"]),
            version=d.get("repalign_version", ""), timing=dict(d.get("timing", {})),
            schema_version=d.get("schema_version", SCHEMA_VERSION),
            checks=tuple(Check.from_dict(c) for c in d.get("checks", ())),
            pairing=None if d.get("pairing") is None else Pairing.from_dict(d["pairing"]),
            search=None if d.get("search") is None else SearchReport.from_dict(d["search"]),
        )


# ---------------------------------------------------------------- notebook display


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.4g}"


def _metric_cells(m: MetricResult) -> tuple[str, str, str, str]:
    """name, value, interval, chance: the four things a reader of a notebook wants to see per metric."""
    interval = "" if m.ci_low is None or m.ci_high is None else f"[{_num(m.ci_low)}, {_num(m.ci_high)}]"
    chance = "" if m.chance is None else _num(m.chance)
    return m.name, _num(m.value) if m.value is not None else f"— ({m.reason})" if m.reason else "—", interval, chance


def _metric_line(m: MetricResult, prefix: str = "") -> str:
    name, value, interval, chance = _metric_cells(m)
    return (f"  {prefix}{name}: {value}" + (f" {interval}" if interval else "")
            + (f" (chance {chance})" if chance else ""))


def _html_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], caption: str) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><caption>{esc(caption)}</caption><tr>{head}</tr>{body}</table>"


def _to_pandas(result: ComparisonResult | MatrixResult):
    """The CSV report as a DataFrame (long form, the CSV formatter's columns and numbers)."""
    try:
        pd = importlib.import_module("pandas")  # lazily: repalign does not depend on pandas
    except ImportError:
        raise RepalignError("to_pandas needs pandas: pip install pandas") from None
    from repalign.report.csv import CsvFormat

    return pd.read_csv(io.StringIO(CsvFormat().format(result)), keep_default_na=False, na_values=[""],
                       float_precision="round_trip")


def _comparison_repr(self: ComparisonResult) -> str:
    a, b = self.inputs
    lines = [f"ComparisonResult({a.name} vs {b.name}, n={self.n})"]
    lines += [_metric_line(m) for m in self.metrics]
    return "\n".join(lines)


def _comparison_html(self: ComparisonResult) -> str:
    a, b = self.inputs
    return _html_table(("metric", "value", "interval", "chance"), [_metric_cells(m) for m in self.metrics],
                       f"{a.name} vs {b.name}, n={self.n}")


def _matrix_repr(self: MatrixResult) -> str:
    lines = [f"MatrixResult({len(self.inputs)} inputs, n={self.n})"]
    for c in self.cells:
        pair = f"{self.inputs[c.a].name} vs {self.inputs[c.b].name}: "
        lines += [_metric_line(m, pair) for m in c.metrics]
    return "\n".join(lines)


def _matrix_html(self: MatrixResult) -> str:
    rows = [(self.inputs[c.a].name, self.inputs[c.b].name, *_metric_cells(m)) for c in self.cells for m in c.metrics]
    return _html_table(("a", "b", "metric", "value", "interval", "chance"), rows,
                       f"{len(self.inputs)} inputs, n={self.n}")

