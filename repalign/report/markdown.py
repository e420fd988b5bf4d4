"""The report as markdown, ready to paste into a pull request."""

from __future__ import annotations

from collections.abc import Iterable

from repalign.report import common
from repalign.report.common import CHANCE_NOTE, Grid, Result
from repalign.results import ComparisonResult
from repalign.text import shown

CHECK_CELLS = {"pass": "✅ pass", "FAIL": "❌ FAIL", "": ""}


class MarkdownFormat:
    """Inputs, the metric table, the settings line, heatmap tables, checks and notes.

    A matrix shows its input grids before the metric table; a sweep shows its layer grids after it.
    """

    def format(self, result: Result) -> str:
        grids = [line for grid in common.grids(result) for line in _grid(grid)]
        compare = isinstance(result, ComparisonResult)
        lines = _head(result) + ([] if compare else grids) + _metric_table(result)
        lines += ["", f"_{CHANCE_NOTE}. {common.uncertainty_line(result)}._"] + (grids if compare else [])
        if (line := common.search_line(result)) is not None:
            lines += ["", f"_{line}._"]
        if compare:
            lines += [f"- {'✅' if c.passed else '❌'} {c.message}" for c in result.checks]
        else:  # a matrix can hold many checks: list the failures
            lines += [f"- ❌ {c.message}" for c in result.checks if not c.passed]
        lines += [f"> {note}" for note in common.notes(result)]
        return "\n".join(lines) + "\n"


def _head(result: Result) -> list[str]:
    """The version, n and preprocessing, then one bullet per input (and the pairing, in a compare)."""
    prep = result.preprocessing.describe()
    if isinstance(result, ComparisonResult):
        lines = [f"**repalign {result.version}** · n = {result.n} · preprocessing: {prep}", ""]
        lines += [f"- {shown(i.label)}: `{shown(i.name)}` ({common.shape(i)})" for i in result.inputs]
        return lines + ([f"- pairing: {result.pairing.describe()}"] if result.pairing is not None else [])
    lines = [f"**repalign {result.version}** · matrix of {len(result.inputs)} inputs · n = {result.n} · "
             f"preprocessing: {prep}", ""]
    return lines + [f"- {shown(i.label)}: `{shown(i.name)}` ({common.shape(i)}{common.layers_of(i)})"
                    for i in result.inputs]


def _metric_table(result: Result) -> list[str]:
    columns = common.columns(result, calibrated=isinstance(result, ComparisonResult))
    lines = ["", _line(col.header for col in columns), "|" + "|".join(col.rule for col in columns) + "|"]
    for row in common.rows(result):
        cells = row.cells()
        if row.pair is not None:
            cells["a"], cells["b"] = (f"`{shown(info.name)}`" for info in row.pair)
        cells["check"] = CHECK_CELLS[row.check]
        lines.append(_line(cells[col.key] for col in columns))
    return lines


def _grid(grid: Grid) -> list[str]:
    """One metric's grid as a table: layers (best in bold), inputs, or the other inputs ranked against the reference."""
    title = f"**{grid.metric}**"
    if grid.kind == "reference":
        return ["", title, "", f"| input | {grid.metric} vs `{shown(grid.row_names[0])}` |", "|---|---:|",
                *(f"| `{shown(name)}` | {common.num(v)} |" for name, v in zip(grid.col_names, grid.values[0]))]
    layers = grid.kind == "layers"
    if layers:
        title += " by layer pair (rows: a, columns: b; **bold** = best)"
    lines = ["", title, "", ("| a \\ b | " if layers else "| | ") + " | ".join(map(shown, grid.col_labels)) + " |",
             "|---|" + "---:|" * len(grid.col_labels)]
    for i, row in enumerate(grid.values):
        cells = [f"**{v:.3f}**" if v is not None and grid.best == (i, j) else common.num(v, 3)
                 for j, v in enumerate(row)]
        lines.append(_line([shown(grid.row_labels[i]), *cells]))
    return lines


def _line(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"
