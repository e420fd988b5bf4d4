"""Thresholds and baselines: turn a result into the pass/fail checks a CI job acts on."""

from __future__ import annotations

import dataclasses
import json
import math
import os

from repalign.errors import InputError, UsageError
from repalign.results import SCHEMA_VERSION, Baseline, BaselineRow, Check, ComparisonResult

ON = ("value", "ci-low", "ci-high")


def parse_bounds(values, option: str, known) -> dict[str, float]:
    """``["mknn=0.3", "cka=0.8,cka-unbiased=0.5"]`` → {metric: bound}."""
    out: dict[str, float] = {}
    for item in values or ():
        parts = [part.strip() for part in str(item).split(",") if part.strip()]
        if not parts:  # an empty gate would silently check nothing
            raise UsageError(f"{option} expects METRIC=NUMBER, e.g. {option} mknn=0.3 (got '{item}')")
        for part in parts:
            name, sep, num = part.partition("=")
            name = name.strip().lower()
            if not sep:
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
    """{name: {"value", "params"}} from a report's metrics list, each field checked."""
    if not isinstance(metrics, list) or not metrics:
        raise InputError(f"{path}: field 'metrics' must be a non-empty list (got {_short(metrics)})")
    out: dict[str, dict] = {}
    for i, m in enumerate(metrics):
        where = f"{path}: metrics[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            raise InputError(f"{where} must be an object with a string 'name' (got {_short(m)})")
        name = m["name"]
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
    """Refuse contradictory gates before any work is done."""
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
    if baseline is not None:
        load_baseline(baseline)


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


def evaluate_matrix(result, *, fail_under=None, fail_above=None, on: str = "value"):
    """Attach --fail-under/--fail-above checks for every pair of a matrix (the diagonal is not checked)."""
    fail_under, fail_above = fail_under or {}, fail_above or {}
    resamples = result.uncertainty.resamples if result.uncertainty is not None else 0
    validate(list(result.metric_names), fail_under=fail_under, fail_above=fail_above, on=on, resamples=resamples)
    checks = []
    for c in result.cells:
        where = f" ({result.inputs[c.a].name} vs {result.inputs[c.b].name})"
        checks += _bound_checks(c.metric, fail_under, fail_above, on, where, (c.a, c.b))
    return dataclasses.replace(result, checks=tuple(checks))


def evaluate(result: ComparisonResult, *, fail_under=None, fail_above=None, on: str = "value",
             baseline: str | None = None, max_drop=None) -> ComparisonResult:
    """Attach checks (and the baseline comparison) to a result.

    ``fail_under``/``fail_above``: {metric: bound}, applied to the value or to
    an end of the interval (``on``). ``max_drop``: {metric: largest allowed
    fall from the baseline's value}. A check whose number does not exist
    (undefined value, no interval) fails: a gate must not pass by default.
    """
    fail_under, fail_above, max_drop = fail_under or {}, fail_above or {}, max_drop or {}
    resamples = result.uncertainty.resamples if result.uncertainty is not None else 0
    validate([m.name for m in result.metrics], fail_under=fail_under, fail_above=fail_above, on=on,
             baseline=baseline, max_drop=max_drop, resamples=resamples)

    checks = _bound_checks(result.metric, fail_under, fail_above, on)

    notes = list(result.notes)
    base = None
    if baseline is not None:
        doc = load_baseline(baseline)
        old = doc["metrics"]
        rows = []
        for m in result.metrics:
            prev = old.get(m.name, {}).get("value")
            diff = None if prev is None or m.value is None else m.value - prev
            rows.append(BaselineRow(m.name, prev, m.value, diff))
            if m.name in old and old[m.name]["params"] != m.params:
                notes.append(f"baseline {baseline}: {m.name} was computed with {_short(old[m.name]['params'], 200)}, "
                             f"now {m.params}; the values are not comparable")
        if doc["n"] != result.n:
            notes.append(f"baseline {baseline} has n = {doc['n']}, this run n = {result.n}; mknn depends on n")
        base = Baseline(baseline, tuple(rows))
        for name, bound in max_drop.items():
            row = next(r for r in rows if r.metric == name)
            if row.diff is None:
                checks.append(Check(name, "max-drop", bound, "value", None, False,
                                    f"{name} cannot be compared with the baseline (missing value)"))
            else:
                drop = 0.0 - row.diff  # 0.0 − x, so that no change reads 0.0000 rather than -0.0000
                ok = drop <= bound
                checks.append(Check(name, "max-drop", bound, "value", drop, ok,
                                    f"{name} changed by {row.diff:+.4f} ({row.old:.4f} → {row.new:.4f}); "
                                    f"a drop of more than {bound:g} fails"))
    return dataclasses.replace(result, checks=tuple(checks), baseline=base, notes=tuple(notes))
