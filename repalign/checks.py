"""Thresholds and baselines: turn a result into the pass/fail checks a CI job acts on."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field

from repalign.errors import InputError, UsageError
from repalign.results import SCHEMA_VERSION, Baseline, BaselineRow, Check, ComparisonResult, MatrixResult

ON = ("value", "ci-low", "ci-high")


def parse_bounds(values, option: str, known) -> dict[str, float]:
    """``["mknn=0.3", "cka=0.8,cka-unbiased=0.5", "linear-r2:folds=0,direction=ab=0.4"]`` → {metric id: bound}.

    An item is split at commas, unless its pieces are not all ``ID=NUMBER`` while the whole item is (an id may
    hold commas).
    """
    out: dict[str, float] = {}
    for item in values or ():
        text = str(item).strip()
        parts = [part.strip() for part in text.split(",") if part.strip()]
        whole = text.rpartition("=")[0].strip().lower()
        if whole in known and not all(part.rpartition("=")[0].strip().lower() in known for part in parts):
            parts = [text]
        if not parts:  # an empty gate would silently check nothing
            raise UsageError(f"{option} expects METRIC=NUMBER, e.g. {option} mknn=0.3 (got '{item}')")
        for part in parts:
            name, sep, num = part.rpartition("=")
            name = name.strip().lower()
            if not sep or not name:
                raise UsageError(f"{option} expects METRIC=NUMBER, e.g. {option} mknn=0.3 (got '{part}')")
            if name not in known:
                raise UsageError(f"{option}: unknown metric '{name}' (choose from {', '.join(known)})")
            try:
                if "_" in num:  # float() reads 1_0 as 10; a typo should not become a bound
                    raise ValueError
                bound = float(num)
            except ValueError:
                raise UsageError(f"{option} {name}: '{num.strip()}' is not a number") from None
            if not math.isfinite(bound):
                raise UsageError(f"{option} {name}: the bound must be a finite number")
            out[name] = bound
    return out


def load_baseline(path: str) -> dict:
    """Read an earlier repalign JSON report, refusing other documents and other schema versions.

    Returns ``{"n": int | None, "metrics": {name: {"value": float | None, "params": dict | None}}}``: every
    field the comparison uses, checked here once.
    """
    from repalign.io import check_regular_file  # a FIFO or device would block the open below

    check_regular_file(path, "baseline file")
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such baseline file")
    if os.path.getsize(path) > MAX_BASELINE_BYTES:
        raise InputError(f"{path}: {os.path.getsize(path):,} bytes is too large for a baseline report "
                         f"(at most {MAX_BASELINE_BYTES >> 20} MB)")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f, parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, over-long integers
        raise InputError(f"{path}: not a JSON report ({' '.join(str(exc).split())[:200]})") from None
    except RecursionError:
        raise InputError(f"{path}: not a JSON report (nested too deeply)") from None
    if not isinstance(doc, dict) or "metrics" not in doc or "schema_version" not in doc:
        raise InputError(f"{path}: not a repalign JSON report (no schema_version/metrics)")
    if doc.get("kind") == "matrix":
        raise InputError(f"{path}: a repalign matrix report; --baseline takes a report of repalign compare")
    version = doc["schema_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise InputError(f"{path}: written with report schema version {_short(version)}, but this repalign "
                         f"reads version {SCHEMA_VERSION}; regenerate the baseline with this version")
    n = doc.get("n")
    if n is not None and (type(n) is not int or n < 0):
        raise InputError(f"{path}: field 'n' must be a count of items (got {_short(n)})")
    return {"n": n, "metrics": _baseline_metrics(path, doc["metrics"])}


# A report is a few kB (a large sweep a few MB); anything far larger is not one, so it is not read.
MAX_BASELINE_BYTES = 64 << 20


def _refuse_constant(name: str):
    # Python's json reads NaN and Infinity, which no report contains (reports are written with allow_nan=False).
    raise ValueError(f"{name} is not valid JSON")


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _baseline_metrics(path: str, metrics) -> dict[str, dict]:
    """{id: {"value", "params"}} from a report's metrics list, each field checked (id: the name in reports
    written before metrics had parameters)."""
    if not isinstance(metrics, list) or not metrics:
        raise InputError(f"{path}: field 'metrics' must be a non-empty list (got {_short(metrics)})")
    out: dict[str, dict] = {}
    for i, m in enumerate(metrics):
        where = f"{path}: metrics[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            raise InputError(f"{where} must be an object with a string 'name' (got {_short(m)})")
        name = m.get("id", m["name"])
        if not isinstance(name, str):
            raise InputError(f"{where}.id must be a string (got {_short(name)})")
        if name in out:
            raise InputError(f"{where}: metric '{_short(name)}' appears twice")
        value = m.get("value")
        if value is not None:
            if type(value) not in (int, float):
                raise InputError(f"{where}.value must be a number or null (got {_short(value)})")
            try:
                value = float(value)
            except OverflowError:
                value = math.inf
            if not math.isfinite(value):
                raise InputError(f"{where}.value must be a finite number (got {_short(m['value'])})")
        params = m.get("params")
        if params is not None and not isinstance(params, dict):
            raise InputError(f"{where}.params must be an object (got {_short(params)})")
        out[name] = {"value": value, "params": params}
    return out


def validate(names, *, fail_under=None, fail_above=None, on="value", baseline=None, max_drop=None,
             resamples: int = 0) -> None:
    """Refuse contradictory gates before any work is done. ``names``: the ids of the metrics computed."""
    if on not in ON:
        raise UsageError(f"unknown --on '{on}' (choose from {', '.join(ON)})")
    for option, bounds in (("--fail-under", fail_under), ("--fail-above", fail_above), ("--max-drop", max_drop)):
        for name in bounds or ():
            if name not in names:
                raise UsageError(f"{option} {name}: that metric was not computed (add --metric {name})")
    if on != "value" and (fail_under or fail_above) and resamples == 0:
        raise UsageError(f"--on {on} needs confidence intervals, but --resamples is 0")
    if max_drop and baseline is None:
        raise UsageError("--max-drop needs --baseline FILE to compare with")


def _resolve(bounds: dict[str, float], ids: list[str]) -> dict[str, float]:
    """A gate named by a bare metric name applies to the one result of that metric (``svcca`` → ``svcca:dims=5``)."""
    out = {}
    for name, bound in bounds.items():
        same = [i for i in ids if i.partition(":")[0] == name]
        out[same[0] if name not in ids and len(same) == 1 else name] = bound
    return out


def _observed(m, on: str) -> float | None:
    return {"value": m.value, "ci-low": m.ci_low, "ci-high": m.ci_high}[on]


def _bound_checks(lookup, fail_under: dict, fail_above: dict, on: str, where: str = "",
                  pair: tuple[int, int] | None = None) -> list[Check]:
    """--fail-under/--fail-above checks of the metrics ``lookup(name)`` returns; ``where`` names a matrix pair."""
    checks = []
    for kind, bounds, fails, word in (("fail-under", fail_under, lambda x, b: x < b, "under"),
                                      ("fail-above", fail_above, lambda x, b: x > b, "above")):
        for name, bound in bounds.items():
            m = lookup(name)
            x = _observed(m, on)
            label = (name if on == "value" else f"{name} {on}") + where
            if x is None:
                why = m.reason or m.ci_reason or "not available"
                checks.append(Check(name, kind, bound, on, None, False, f"{label} has no value ({why})", pair))
            elif fails(x, bound):
                checks.append(Check(name, kind, bound, on, x, False, f"{label} = {x:.4f} is {word} {bound:g}", pair))
            else:
                checks.append(Check(name, kind, bound, on, x, True, f"{label} = {x:.4f} is not {word} {bound:g}",
                                    pair))
    return checks


@dataclass(frozen=True)
class Gates:
    """The pass/fail rules of a run: parsed and checked once, before any work; the baseline report read once."""

    fail_under: dict[str, float] = field(default_factory=dict)
    fail_above: dict[str, float] = field(default_factory=dict)
    on: str = "value"
    """What the bounds apply to: value, ci-low or ci-high."""
    max_drop: dict[str, float] = field(default_factory=dict)
    baseline_path: str | None = None
    baseline: dict | None = None
    """The fields of the baseline report that the comparison uses (see :func:`load_baseline`)."""

    @classmethod
    def build(cls, names, *, fail_under=None, fail_above=None, on: str = "value", baseline: str | None = None,
              max_drop=None, resamples: int = 0) -> Gates:
        """Bounds given as ``["mknn=0.3", ...]`` (the CLI's) or as ``{metric: bound}``; refused when they
        contradict the run (a metric not computed, --on ci-low without intervals, --max-drop without a baseline).
        """
        from repalign.metrics import REGISTRY

        ids = [getattr(n, "id", n) for n in names]
        known = list(dict.fromkeys(ids + list(REGISTRY)))
        bounds = [_resolve(b if isinstance(b, dict) else parse_bounds(b, option, known), ids)
                  for b, option in ((fail_under, "--fail-under"), (fail_above, "--fail-above"),
                                    (max_drop, "--max-drop"))]
        names = ids
        validate(list(names), fail_under=bounds[0], fail_above=bounds[1], on=on, baseline=baseline,
                 max_drop=bounds[2], resamples=resamples)
        doc = load_baseline(baseline) if baseline is not None else None
        return cls(bounds[0], bounds[1], on, bounds[2], baseline, doc)

    def apply(self, result):
        """The result with its checks (and, for a comparison, the baseline comparison) attached."""
        if isinstance(result, MatrixResult):
            return self._apply_matrix(result)
        return self._apply_compare(result)

    def _apply_matrix(self, result: MatrixResult) -> MatrixResult:
        """Every pair of a matrix is checked (the diagonal is not)."""
        checks = []
        for c in result.cells:
            where = f" ({result.inputs[c.a].name} vs {result.inputs[c.b].name})"
            checks += _bound_checks(c.metric, self.fail_under, self.fail_above, self.on, where, (c.a, c.b))
        return dataclasses.replace(result, checks=tuple(checks))

    def _apply_compare(self, result: ComparisonResult) -> ComparisonResult:
        """A check whose number does not exist (undefined value, no interval) fails: a gate must not pass by
        default."""
        checks = _bound_checks(result.metric, self.fail_under, self.fail_above, self.on)
        notes = list(result.notes)
        base = None
        if self.baseline is not None and self.baseline_path is not None:
            base, baseline_checks = _against_baseline(result, self.baseline_path, self.baseline, self.max_drop, notes)
            checks += baseline_checks
        return dataclasses.replace(result, checks=tuple(checks), baseline=base, notes=tuple(notes))


def _against_baseline(result: ComparisonResult, path: str, doc: dict, max_drop: dict[str, float],
                      notes: list[str]) -> tuple[Baseline, list[Check]]:
    """Each metric's change since the baseline report, and the --max-drop checks on it."""
    old = doc["metrics"]
    rows = []
    for m in result.metrics:
        prev = old.get(m.id, {}).get("value")
        diff = None if prev is None or m.value is None else m.value - prev
        rows.append(BaselineRow(m.id, prev, m.value, diff))
        if m.id in old and old[m.id]["params"] != m.params:
            notes.append(f"baseline {path}: {m.id} was computed with {_short(old[m.id]['params'], 200)}, "
                         f"now {m.params}; the values are not comparable")
    if doc["n"] != result.n:
        notes.append(f"baseline {path} has n = {doc['n']}, this run n = {result.n}; mknn depends on n")
    checks = []
    for name, bound in max_drop.items():
        row = next(r for r in rows if r.metric == name)
        if row.diff is None or row.old is None or row.new is None:
            checks.append(Check(name, "max-drop", bound, "value", None, False,
                                f"{name} cannot be compared with the baseline (missing value)"))
        else:
            # A drop is a change towards less aligned: a fall, or a rise for a distance.
            # 0.0 − x, so that no change reads 0.0000 rather than -0.0000.
            higher = result.metric(name).higher_is_better
            drop = 0.0 - row.diff if higher else 0.0 + row.diff
            worse = "drop" if higher else "rise (this metric is a distance)"
            checks.append(Check(name, "max-drop", bound, "value", drop, drop <= bound,
                                f"{name} changed by {row.diff:+.4f} ({row.old:.4f} → {row.new:.4f}); "
                                f"a {worse} of more than {bound:g} fails"))
    return Baseline(path, tuple(rows)), checks


def _resamples(result) -> int:
    return result.uncertainty.resamples if result.uncertainty is not None else 0


def evaluate_matrix(result: MatrixResult, *, fail_under=None, fail_above=None, on: str = "value") -> MatrixResult:
    """Attach --fail-under/--fail-above checks for every pair of a matrix (the diagonal is not checked)."""
    gates = Gates.build(result.metric_names, fail_under=fail_under or {}, fail_above=fail_above or {}, on=on,
                        resamples=_resamples(result))
    return gates._apply_matrix(result)


def evaluate(result: ComparisonResult, *, fail_under=None, fail_above=None, on: str = "value",
             baseline: str | None = None, max_drop=None) -> ComparisonResult:
    """Attach checks (and the baseline comparison) to a result.

    ``fail_under``/``fail_above``: {metric: bound}, applied to the value or to
    an end of the interval (``on``). ``max_drop``: {metric: largest allowed
    fall from the baseline's value}.
    """
    gates = Gates.build([m.id for m in result.metrics], fail_under=fail_under or {}, fail_above=fail_above or {},
                        on=on, baseline=baseline, max_drop=max_drop or {}, resamples=_resamples(result))
    return gates._apply_compare(result)
