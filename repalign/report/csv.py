"""The report as CSV: long form, one row per metric (per layer pair in a sweep, per pair of inputs in a matrix)."""

from __future__ import annotations

import csv
import io
from typing import Any

from repalign.report import common
from repalign.report.common import Result
from repalign.results import ComparisonResult, MetricResult, Sweep

CSV_COLUMNS = ["metric", "value", "ci_low", "ci_high", "ci_method", "chance", "null_sd", "z", "p_value", "p_method",
               "calibrated", "permutations", "k", "distance", "estimator", "n", "a", "b", "preprocessing",
               "confidence", "resamples", "seed", "check", "baseline", "diff", "reason", "search", "recall_at_k",
               "search_shift", "search_shift_low", "search_shift_high"]

SWEEP_CSV_COLUMNS = ["layer_a", "layer_b", "metric", "value", "chance", "null_sd", "z", "best", "ci_low", "ci_high",
                     "ci_method", "p_value", "p_method", "calibrated", "k", "distance", "estimator", "n", "a", "b",
                     "preprocessing", "check", "search", "recall_at_k", "search_shift", "search_shift_low",
                     "search_shift_high"]

MATRIX_CSV_COLUMNS = ["a", "b", "metric", "value", "ci_low", "ci_high", "ci_method", "chance", "null_sd", "z",
                      "p_value", "p_method", "calibrated", "permutations", "layer_a", "layer_b", "k", "distance",
                      "estimator", "n", "preprocessing", "check", "reason", "search", "recall_at_k", "search_shift",
                      "search_shift_low", "search_shift_high"]

INTERVAL_FIELDS = ("ci_low", "ci_high", "ci_method", "p_value", "p_method", "calibrated", "search_shift",
                   "search_shift_low", "search_shift_high")
"""A sweep's cells have only their own value, chance and z; the interval and p-value belong to the best pair."""

Fields = dict[str, Any]


class CsvFormat:
    """Every row is one dict of named fields; each layout picks its columns, so a field is computed in one place."""

    def format(self, result: Result) -> str:
        if not isinstance(result, ComparisonResult):
            rows = [{**_metric(m), **_run(result), **_search(result, m, c.a, c.b),
                     "a": result.inputs[c.a].name, "b": result.inputs[c.b].name,
                     "layer_a": m.params.get("layer_a"), "layer_b": m.params.get("layer_b"),
                     "check": common.check_mark(result, m.id, (c.a, c.b)).lower()}
                    for c in result.cells + result.diagonal for m in c.metrics]
            return _csv(MATRIX_CSV_COLUMNS, rows)
        if result.sweep is not None:
            return _csv(SWEEP_CSV_COLUMNS, _sweep_rows(result, result.sweep))
        a, b = result.inputs
        rows = [{**_metric(m), **_run(result), **_search(result, m), "a": a.name, "b": b.name,
                 "check": common.check_mark(result, m.id).lower(),
                 **dict(zip(("baseline", "diff"), common.baseline_raw(result, m.id)))}
                for m in result.metrics]
        return _csv(CSV_COLUMNS, rows)


def _metric(m: MetricResult) -> Fields:
    """The fields of one metric result."""
    return {"metric": m.id, "value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high, "ci_method": m.ci_method,
            "chance": m.chance, "null_sd": m.null_sd, "z": m.z, "p_value": m.p_value, "p_method": m.p_method,
            "calibrated": m.calibrated,
            "permutations": m.permutations, "k": m.params.get("k"), "distance": m.params.get("distance"),
            "estimator": m.params.get("estimator"), "reason": m.reason or m.ci_reason}


def _run(result: Result) -> Fields:
    """The fields every row of a report shares."""
    u = result.uncertainty
    return {"n": result.n, "preprocessing": result.preprocessing.describe(),
            "confidence": None if u is None else u.confidence, "resamples": None if u is None else u.resamples,
            "seed": None if u is None else u.seed}


def _search(result: Result, m: MetricResult, a: int | None = None, b: int | None = None) -> Fields:
    """How the lists were found (empty when every list was exact) and the metric's measured shift, if any.

    In a matrix a shift belongs to one pair of inputs: ``a``/``b`` are the cell's input positions, matched
    against the shift's (input[:layer], input[:layer]) tags.
    """
    s = result.search
    if s is None:
        return {"search": "exact"}
    out: Fields = {"search": s.method, "recall_at_k": s.recall_at_k}
    for sh in s.shifts:
        if sh.metric != m.id:
            continue
        if a is not None and tuple(t.split(":")[0] for t in sh.pair) != (str(a), str(b)):
            continue
        out.update(search_shift=sh.shift, search_shift_low=sh.ci_low, search_shift_high=sh.ci_high)
    return out


def _sweep_rows(result: ComparisonResult, sw: Sweep) -> list[Fields]:
    """One row per (layer of a, layer of b, metric); the best pair's row carries its interval and check."""
    a, b = result.inputs
    rows = []
    for m in result.metrics:
        best = sw.best[m.id]
        for i, row in enumerate(sw.cells[m.id]):
            for j, c in enumerate(row):
                top = best == (i, j)
                fields = {**_metric(m), **_run(result), **_search(result, m),
                          "layer_a": sw.layers_a[i], "layer_b": sw.layers_b[j],
                          "value": c.value, "chance": c.chance, "null_sd": c.null_sd, "z": c.z,
                          "best": "true" if top else "false", "a": a.name, "b": b.name,
                          "check": common.check_mark(result, m.id).lower() if top else None}
                if not top:
                    fields.update(dict.fromkeys(INTERVAL_FIELDS))
                rows.append(fields)
    return rows


def _cell(x: Any) -> Any:
    """A CSV cell: empty for None, full precision for floats."""
    return "" if x is None else repr(x) if isinstance(x, float) else x


def _csv(columns: list[str], rows: list[Fields]) -> str:
    """CSV text with a header; None is an empty cell and floats keep full precision."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows([_cell(row.get(col)) for col in columns] for row in rows)
    return buf.getvalue()
