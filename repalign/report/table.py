"""The report for people at a terminal: a rich table (with heatmaps of sweeps and matrices), or its plain text."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from repalign.pairing import Pairing
from repalign.report import common
from repalign.report.common import CHANCE_NOTE, Grid, Result
from repalign.results import ComparisonResult, MatrixResult
from repalign.text import shown

if TYPE_CHECKING:
    from rich.console import Group, RenderableType
    from rich.table import Table


class TableFormat:
    """The terminal table; ``format`` gives it as plain text (the .txt report), ``renderable`` for a console."""

    def format(self, result: Result, width: int = 120, explain: bool = False) -> str:
        """The table as plain text (no colour), e.g. for --output r.txt, tests and logs."""
        from rich.console import Console

        buf = io.StringIO()
        console = Console(file=buf, width=width, color_system=None, force_terminal=False, markup=False, emoji=False,
                          highlight=False)
        console.print(self.renderable(result, explain=explain))
        return buf.getvalue()

    def renderable(self, result: Result, explain: bool = False) -> Group:
        """Inputs, heatmaps (a sweep's layer pairs, a matrix's inputs), the metric table and the notes under it."""
        from rich.console import Group
        from rich.text import Text

        parts: list[RenderableType] = [_inputs(result), Text("")]
        for grid in common.grids(result):
            parts += [Text(_title(grid), style="bold"), heatmap(grid), Text("")]
        if isinstance(result, ComparisonResult) and result.sweep is not None:
            parts += [Text(line, style="dim") for line in common.sweep_lines(result)] + [Text("")]
        parts += [_metric_table(result), Text(CHANCE_NOTE + ".", style="dim")]
        if result.uncertainty is not None:
            parts.append(Text(common.uncertainty_line(result), style="dim"))
        if isinstance(result, ComparisonResult):
            # Undefined values are part of the result; other notes go to stderr as warnings (see cli).
            parts += [Text(shown(f"{m.name}: {m.reason}"), style="yellow") for m in result.metrics if m.value is None]
            if explain:
                parts += [Text("")] + [Text(line) for line in common.explain_lines(result)]
        return Group(*parts)


def _inputs(result: Result) -> Table:
    """One line per input (label, name, shape), then n, the pairing when it is not plain row order, preprocessing."""
    from rich.table import Table

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_column(style="dim")
    for i, info in enumerate(result.inputs):
        tag = " (reference)" if isinstance(result, MatrixResult) and result.reference == i else ""
        head.add_row(shown(info.label), shown(info.name) + tag, common.shape(info) + common.layers_of(info))
    head.add_row("n", f"{result.n} paired items", "")
    if result.pairing is not None and (result.pairing.by != "row" or result.pairing.max_rows is not None):
        head.add_row("pairs", _pairing(result, result.pairing), "")
    head.add_row("prep", result.preprocessing.describe(), "")
    return head


def _pairing(result: Result, pairing: Pairing) -> str:
    if isinstance(result, ComparisonResult):
        return pairing.describe()
    text = f"by id: {pairing.paired} items present in every input"
    if pairing.max_rows is not None:
        text += f"; a random {pairing.max_rows} of them (seed {pairing.subsample_seed})"
    return text


def _title(grid: Grid) -> str:
    if grid.kind == "layers":
        return f"{grid.metric} by layer pair (rows: layers of a, columns: layers of b; * = best)"
    if grid.kind == "reference":
        return f"{grid.metric} against input {grid.row_labels[0]}, best first"
    return f"{grid.metric} for every pair of inputs"


def heatmap(grid: Grid) -> Table:
    """A rich table of one metric over a grid; cells keep their numbers and are coloured by value."""
    from rich.table import Table
    from rich.text import Text

    t = Table(show_edge=False, header_style="bold", pad_edge=False, padding=(0, 1))
    t.add_column("a \\ b" if grid.kind == "layers" else "", no_wrap=True, style="bold")
    for label in grid.col_labels:
        t.add_column(_short(label), justify="right", no_wrap=True)
    for i, row in enumerate(grid.values):
        cells: list[str | Text] = []
        for j, value in enumerate(row):
            if value is None:
                cells.append("—")
                continue
            # A sweep marks its best pair; the other cells keep the mark's place so the numbers line up.
            mark = ("*" if grid.best == (i, j) else " ") if grid.kind == "layers" else ""
            cells.append(Text(f"{value:.3f}{mark}", style=_colour(common.share(value, grid.range))))
        t.add_row(_short(grid.row_labels[i]), *cells)
    return t


def _short(label: str, width: int = 12) -> str:
    """Layer labels from globs can be long keys; keep their informative end."""
    label = shown(label)
    return label if len(label) <= width else "…" + label[-(width - 1):]


def _colour(share: float) -> str:
    """A background from dark blue (low) to yellow (high), with readable text."""
    stops = [(0.0, (49, 54, 149)), (0.5, (116, 173, 209)), (1.0, (254, 224, 144))]
    r, g, b = stops[-1][1]
    for (s0, c0), (s1, c1) in zip(stops, stops[1:]):
        if share <= s1:
            f = 0.0 if s1 == s0 else (share - s0) / (s1 - s0)
            r, g, b = (round(x0 + f * (x1 - x0)) for x0, x1 in zip(c0, c1))
            break
    text = "black" if share > 0.35 else "white"
    return f"{text} on rgb({r},{g},{b})"


def _metric_table(result: Result) -> Table:
    """One row per metric (of each pair, in a matrix); a failed check turns its row red."""
    from rich.table import Table

    t = Table(show_edge=False, header_style="bold")
    columns = common.columns(result, calibrated=False)
    for col in columns:
        t.add_column(col.header, justify=col.justify, style=col.style, no_wrap=True)
    for row in common.rows(result):
        cells = row.cells()
        if row.pair is not None:
            cells["a"], cells["b"] = (shown(info.label) for info in row.pair)
        cells["check"] = row.check
        t.add_row(*(cells[col.key] for col in columns), style="bold red" if row.check == "FAIL" else None)
    return t
