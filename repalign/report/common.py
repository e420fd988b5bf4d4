"""What every report shares: number cells, the metric rows and heatmaps of any result, and the summary lines."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from repalign.results import BaselineRow, ComparisonResult, InputInfo, MatrixResult, MetricResult, Sweep
from repalign.text import shown

Result = ComparisonResult | MatrixResult
"""What a formatter takes: a compare (plain or with a layer sweep) or a matrix."""

CHANCE_NOTE = ("chance ± sd = mean and standard deviation of the score when the items of one side are paired "
               "at random (exact); z = (score − chance)/sd; p from permutations")

# ---------------------------------------------------------------- one number or fact as text


def num(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def interval(m: MetricResult) -> str:
    return "—" if m.ci_low is None or m.ci_high is None else f"[{m.ci_low:.4f}, {m.ci_high:.4f}]"


def chance(m: MetricResult) -> str:
    if m.chance is None:
        return "—"
    return num(m.chance) if m.null_sd is None else f"{m.chance:.4f} ± {m.null_sd:.4f}"


def level(result: Result) -> str:
    """The interval column's header, e.g. '95% CI'."""
    u = result.uncertainty
    return f"{round(100 * u.confidence, 6):g}% CI" if u is not None else "CI"


# Parameters whose value names itself ("cosine", "biased"); the rest are shown as key=value.
_BARE = ("distance", "kernel", "estimator")


def params(m: MetricResult) -> str:
    p = m.params
    text = ", ".join(str(v) if key in _BARE else f"{key}={_value(v)}" for key, v in p.items()
                     if not key.startswith("layer_"))
    layers = [f"{side} layer {p[f'layer_{side}']}" for side in ("a", "b") if f"layer_{side}" in p]
    return text + (f"; best pair: {', '.join(layers)}" if layers else "")


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "none" if v is None else str(v)


def shape(info: InputInfo) -> str:
    return "×".join(str(s) for s in info.shape) + f" {info.dtype}"


def layers_of(info: InputInfo) -> str:
    return "" if info.layers is None else f" ({len(info.layers)} layers)"


def check_mark(result: Result, name: str, pair: tuple[int, int] | None = None) -> str:
    """'pass', 'FAIL' or '' (no check) for a metric; in a matrix, for the metric of one pair of inputs."""
    mine = [c for c in result.checks
            if c.metric == name and (isinstance(result, ComparisonResult) or c.pair == pair)]
    if not mine:
        return ""
    return "pass" if all(c.passed for c in mine) else "FAIL"


def baseline_row(result: Result, name: str) -> BaselineRow | None:
    """The metric's line in the --baseline report, if there is one (a matrix has no baseline)."""
    if isinstance(result, MatrixResult) or result.baseline is None:
        return None
    return next((r for r in result.baseline.rows if r.metric == name), None)


def baseline_cells(result: Result, name: str) -> tuple[str, str]:
    row = baseline_row(result, name)
    if row is None:
        return "—", "—"
    return num(row.old), "—" if row.diff is None else f"{row.diff:+.4f}"


def baseline_raw(result: Result, name: str) -> tuple[float | None, float | None]:
    row = baseline_row(result, name)
    return (None, None) if row is None else (row.old, row.diff)


# ---------------------------------------------------------------- the metric table


@dataclass(frozen=True)
class Column:
    """One column of the metric table, as the terminal table and the markdown table both draw it."""

    key: str
    header: str
    justify: Literal["left", "right"] = "left"
    rule: str = "---"
    """The markdown alignment cell."""
    style: str | None = None


@dataclass(frozen=True)
class Row:
    """One line of the metric table: a metric of a compare, or a metric of one pair of a matrix's inputs."""

    metric: MetricResult
    check: str
    """'pass', 'FAIL' or ''."""
    pair: tuple[InputInfo, InputInfo] | None = None
    """The two inputs in a matrix; None in a compare, where they are the whole report."""
    baseline: tuple[str, str] = ("—", "—")

    def cells(self) -> dict[str, str]:
        """Each column's text; the pair and check columns are the renderer's own (see Column.key)."""
        m = self.metric
        return {"metric": m.id, "score": num(m.value), "ci": interval(m), "chance": chance(m),
                "z": "—" if m.z is None else f"{m.z:.1f}", "p": "—" if m.p_value is None else f"{m.p_value:.3g}",
                "calibrated": num(m.calibrated), "parameters": params(m), "baseline": self.baseline[0],
                "change": self.baseline[1]}


def rows(result: Result) -> list[Row]:
    """The metric table's rows: each metric of a compare, or each metric of each pair of a matrix (no diagonal)."""
    if isinstance(result, ComparisonResult):
        return [Row(m, check_mark(result, m.id), baseline=baseline_cells(result, m.id)) for m in result.metrics]
    return [Row(m, check_mark(result, m.id, (c.a, c.b)), (result.inputs[c.a], result.inputs[c.b]))
            for c in result.cells for m in c.metrics]


def columns(result: Result, calibrated: bool) -> list[Column]:
    """The metric table's columns: a matrix names the pair, a compare may add its baseline; checks last."""
    compare = isinstance(result, ComparisonResult)
    out = [] if compare else [Column("a", "a"), Column("b", "b")]
    out += [Column("metric", "metric"),
            # Only a compare's scores are bold, as they always were: making both alike would change the output.
            Column("score", "score", "right", "---:", "bold" if compare else None),
            Column("ci", level(result)),
            Column("chance", "chance ± sd", "right", "---:"),
            Column("z", "z", "right", "---:"),
            Column("p", "p", "right", "---:")]
    if calibrated:
        out.append(Column("calibrated", "calibrated", "right", "---:"))
    out.append(Column("parameters", "parameters"))
    if isinstance(result, ComparisonResult) and result.baseline is not None:
        out += [Column("baseline", "baseline", "right", "---:"), Column("change", "change", "right", "---:")]
    if result.checks:
        out.append(Column("check", "check", rule=":---:"))
    return out


def all_metrics(result: Result) -> list[MetricResult]:
    """Every metric result in report order: a compare's metrics; a matrix's pairs, then its diagonal."""
    if isinstance(result, ComparisonResult):
        return list(result.metrics)
    return [m for c in result.cells + result.diagonal for m in c.metrics]


# ---------------------------------------------------------------- heatmaps


@dataclass(frozen=True)
class Grid:
    """One metric over a grid: layer of a × layer of b (a sweep), input × input, or the reference × the others."""

    kind: Literal["layers", "pairs", "reference"]
    metric: str
    values: list[list[float | None]]
    row_labels: list[str]
    """Short labels: layer names, or input labels (0, 1, ...)."""
    col_labels: list[str]
    row_names: list[str]
    """Long labels for the plot: layer names, or input names (path:key)."""
    col_names: list[str]
    range: tuple[float, float]
    best: tuple[int, int] | None = None
    higher_is_better: bool = True


def grids(result: Result) -> list[Grid]:
    """A sweep's per-metric layer grids, a matrix's per-metric input grids, or nothing for a plain compare."""
    if isinstance(result, ComparisonResult):
        sw = result.sweep
        if sw is None:
            return []
        la, lb = list(sw.layers_a), list(sw.layers_b)
        return [Grid("layers", name, sw.values(name), la, lb, la, lb, result.metric(name).range, sw.best[name],
                     result.metric(name).higher_is_better) for name in sw.cells]
    labels = [i.short for i in result.inputs]
    names = [i.name for i in result.inputs]
    out = []
    for metric in result.metric_names:
        grid = result.grid(metric)
        higher = result.cells[0].metric(metric).higher_is_better if result.cells else True
        if result.reference is None:
            out.append(Grid("pairs", metric, grid, labels, labels, names, names, result.range(metric),
                            higher_is_better=higher))
            continue
        ref, order = result.reference, list(result.order)
        out.append(Grid("reference", metric, [[grid[ref][j] for j in order]], [labels[ref]],
                        [labels[j] for j in order], [names[ref]], [names[j] for j in order], result.range(metric),
                        higher_is_better=higher))
    return out


def finite_bounds(grid: Grid) -> tuple[float, float]:
    """The grid's range with an unbounded side (cknna, linear-r2) replaced by the data's extreme there."""
    values = [v for row in grid.values for v in row if v is not None]
    lo, hi = grid.range
    lo = lo if math.isfinite(lo) else min(values, default=0.0)
    hi = hi if math.isfinite(hi) else max(values, default=lo + 1.0)
    return lo, hi


def share(value: float, bounds: tuple[float, float]) -> float:
    """Where ``value`` lies in its metric's range, 0 to 1, for the heatmap colour."""
    lo, hi = bounds
    return 0.0 if hi <= lo else min(max((value - lo) / (hi - lo), 0.0), 1.0)


# ---------------------------------------------------------------- lines of text under the tables


def notes(result: Result) -> list[str]:
    """The notes of the report: in a compare, undefined metrics' reasons first."""
    reasons = [f"{m.id}: {m.reason}" for m in result.metrics if m.value is None and m.reason] \
        if isinstance(result, ComparisonResult) else []
    distances = sorted({m.id for m in all_metrics(result) if not m.higher_is_better})
    direction = [f"{', '.join(distances)}: a distance, lower = more aligned"] if distances else []
    return [shown(note) for note in reasons + direction + list(result.notes)]


def uncertainty_line(result: Result) -> str:
    u = result.uncertainty
    if u is None:  # a hand-built result, or a document with "uncertainty": null
        return "intervals and p-values not computed"
    metrics = all_metrics(result)
    methods = sorted({m.ci_method.split(",")[0] for m in metrics if m.ci_method})
    ci = f"{u.resamples} resamples ({', '.join(methods)})" if u.resamples else "intervals off"
    if any(m.ci_method and "Bonferroni" in m.ci_method for m in metrics):
        ci += "; intervals of best layer pairs Bonferroni-widened over the pairs"
    used = sorted({m.permutations for m in metrics if m.permutations}, reverse=True)
    perms = " or ".join(str(x) for x in used) if used else str(u.permutations if not metrics else 0)
    return f"{ci}; {perms} permutations; seed {u.seed}"


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


def search_line(result: Result) -> str | None:
    """'approximate search: recall 0.97 [0.96, 0.98]; mknn shift −0.003 [−0.005, −0.001]', or None when every
    neighbour list was exact. The shift is exact minus approximate on the sampled rows."""
    s = result.search
    if s is None:
        return None
    text = f"approximate search: recall {s.recall_at_k:.2f} [{s.ci_low:.2f}, {s.ci_high:.2f}]"
    for sh in s.shifts:
        pair = "" if len(s.shifts) == len({x.metric for x in s.shifts}) else f" ({' vs '.join(sh.pair)})"
        text += f"; {sh.metric}{pair} shift {_signed(sh.shift)} [{_signed(sh.ci_low)}, {_signed(sh.ci_high)}]"
    return shown(text)


def sweep_lines(result: ComparisonResult) -> list[str]:
    """For each metric: the best layer of b for every layer of a, and the other way round."""
    return [] if result.sweep is None else _best_layers(result.sweep)


def _best_layers(sw: Sweep) -> list[str]:
    lines = []
    for metric in sw.cells:
        a = ", ".join(f"{sw.layers_a[i]}→{sw.layers_b[j]}" for i, j in enumerate(sw.row_best(metric))
                      if j is not None)
        b = ", ".join(f"{sw.layers_b[j]}→{sw.layers_a[i]}" for j, i in enumerate(sw.col_best(metric))
                      if i is not None)
        if len(sw.layers_b) > 1:
            lines.append(f"{metric}: best layer of b for each layer of a: {a}")
        if len(sw.layers_a) > 1:
            lines.append(f"{metric}: best layer of a for each layer of b: {b}")
    return [shown(line) for line in lines]


def explain_lines(result: ComparisonResult) -> list[str]:
    """One plain-language line per metric: distance from chance, whether the interval excludes it, warnings."""
    return [_explain(result, m) for m in result.metrics]


def _p_text(m: MetricResult) -> str:
    """The p-value as a sentence part, saying how it was obtained (MetricResult.p_method)."""
    if m.p_method == "exact-moment bound (Cantelli)":
        return f" (p ≤ {m.p_value:.3g} by Cantelli's bound from the exact null moments, no permutations)"
    if m.p_method == "sequential permutation (Besag-Clifford)":
        return f" (permutation p = {m.p_value:.3g}, stopped early after {m.permutations})"
    return f" (permutation p = {m.p_value:.3g} from {m.permutations})"


def _explain(result: ComparisonResult, m: MetricResult) -> str:
    if m.value is None:
        return f"{m.id}: undefined: {m.reason}."
    parts = [f"{m.id} = {m.value:.4f}"]
    if m.chance is not None:
        parts.append(f", {m.value / m.chance:.1f}× its chance level {m.chance:.4f}" if m.chance > 0 else
                     f", chance level {m.chance:.4f}")
    if m.z is not None:
        parts.append(f", {m.z:.1f} null standard deviations above chance" if m.z >= 0
                     else f", {-m.z:.1f} null standard deviations below chance")
    if m.p_value is not None:
        parts.append(_p_text(m))
    text = "".join(parts) + "."
    if m.ci_low is not None and m.ci_high is not None and m.chance is not None:
        if (m.ci_low > m.chance) if m.higher_is_better else (m.ci_high < m.chance):
            text += f" The {level(result)} {interval(m)} excludes chance."
        else:
            text += f" The {level(result)} {interval(m)} does not exclude chance: no evidence of agreement" \
                    " beyond random pairing."
    elif m.ci_reason:
        text += f" No interval: {m.ci_reason}."
    return text + _warnings(result, m)


def _warnings(result: ComparisonResult, m: MetricResult) -> str:
    """What could mislead about this value: a high chance level, or the choice of the best of many layer pairs."""
    text = ""
    if m.name == "mknn" and m.chance is not None and m.chance > 0.05:
        text += (f" Warning: k is large for n (chance level {m.chance:.3f}); mknn is only comparable"
                 " between runs with the same n and k.")
    if result.sweep is not None and result.sweep.best.get(m.id) is not None:
        pairs = len(result.sweep.layers_a) * len(result.sweep.layers_b)
        text += (f" This is the best of {pairs} layer pairs: the max is inflated by choosing it, so its interval"
                 f" is widened to hold for all {pairs} pairs at once and its p-value compares it with the max"
                 " over all pairs under each permutation; chance and z are those of the chosen pair alone.")
    if m.name == "cka" and m.chance is not None and m.chance > 0.05:
        text += (f" Warning: d is comparable to n, so biased CKA is inflated (unrelated data would score"
                 f" {m.chance:.3f} on average); cka-unbiased does not have this bias.")
    return text
