"""The report for people at a terminal: a rich table (with heatmaps of sweeps and matrices), or its plain text."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from repalign.pairing import Pairing
from repalign.report import common
from repalign.report.common import CHANCE_NOTE, Grid, Result
from repalign.results import ComparisonResult, MatrixResult
from repalign.text import shown

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.table import Table

    from repalign.io.protocol import ArrayInfo

Convert = Callable[["RenderableType"], "RenderableType"]

LEFT_OUT = ("parameters", "p", "z", "chance")
"""Columns of the metric table that give way, in this order, when the table is wider than the console: the
parameters move under the table, then p, z and chance ± sd are left out. Labels, metric, score, interval,
baseline, change and check always stay (README, "Output")."""


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

    def renderable(self, result: Result, explain: bool = False) -> Fitted:
        """Inputs, heatmaps (a sweep's layer pairs, a matrix's inputs), the metric table and the notes under it,
        laid out for the width of the console that prints it (see :class:`Fitted`)."""
        return Fitted(lambda console, width, convert: _parts(result, explain, console, width, convert))


class Fitted:
    """A report laid out when printed, for the console's width, so that no number is cut: too wide a metric
    table gives up columns in the order of LEFT_OUT, too wide a heatmap is split into blocks of columns.

    ``convert`` is applied to each part before it is measured (the CLI sets it to the ASCII conversion, which
    changes widths). Parts that fit are exactly what they were before fitting existed.
    """

    def __init__(self, layout: Callable[[Console, int, Convert], list[RenderableType]]):
        self.layout = layout
        self.convert: Convert = _same

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        yield from self.layout(console, options.max_width, self.convert)


def _same(renderable: RenderableType) -> RenderableType:
    return renderable


def _parts(result: Result, explain: bool, console: Console, width: int, convert: Convert) -> list[RenderableType]:
    from rich.text import Text

    parts: list[RenderableType] = [_inputs(result), Text("")]
    for grid in common.grids(result):
        blocks = _heatmap_blocks(grid, console, width, convert)
        title = _title(grid) + (f" (in {len(blocks)} blocks of columns)" if len(blocks) > 1 else "")
        parts.append(Text(title, style="bold"))
        for block in blocks:
            parts += [block, Text("")]
    if isinstance(result, ComparisonResult) and result.sweep is not None:
        parts += [Text(line, style="dim") for line in common.sweep_lines(result)] + [Text("")]
    parts += _fitted_metric_table(result, console, width, convert)
    parts.append(Text(CHANCE_NOTE + ".", style="dim"))
    if result.uncertainty is not None:
        parts.append(Text(common.uncertainty_line(result), style="dim"))
    if (line := common.search_line(result)) is not None:
        parts.append(Text(line, style="dim"))
    if isinstance(result, ComparisonResult):
        # Undefined values are part of the result; other notes go to stderr as warnings (see cli).
        parts += [Text(shown(f"{m.id}: {m.reason}"), style="yellow") for m in result.metrics if m.value is None]
        if explain:
            parts += [Text("")] + [Text(line) for line in common.explain_lines(result)]
    return [convert(part) for part in parts]


def _width(console: Console, renderable: RenderableType) -> int:
    """The width a renderable takes when nothing limits it (a table's columns all at their natural width)."""
    return console.measure(renderable, options=console.options.update_width(1 << 20)).maximum


def _inputs(result: Result) -> Table:
    """One line per input (label, name, shape), then n, the pairing when it is not plain row order, preprocessing."""
    from rich.table import Table

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    # A long path folds rather than ending in "…" (which ASCII output would widen to "...", past the width).
    head.add_column(overflow="fold")
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


def _heatmap_blocks(grid: Grid, console: Console, width: int, convert: Convert) -> list[RenderableType]:
    """The heatmap, or, when it is wider than ``width``, consecutive blocks of its columns that each fit (every
    block repeats the row labels); a block has at least one column."""
    whole = convert(heatmap(grid))
    n = len(grid.col_labels)
    if n <= 1 or _width(console, whole) <= width:
        return [whole]
    blocks: list[RenderableType] = []
    start = 0
    while start < n:
        stop = start + 1
        block = convert(heatmap(grid, range(start, stop)))
        while stop < n:
            wider = convert(heatmap(grid, range(start, stop + 1)))
            if _width(console, wider) > width:
                break
            block, stop = wider, stop + 1
        blocks.append(block)
        start = stop
    return blocks


def heatmap(grid: Grid, columns: range | None = None) -> Table:
    """A rich table of one metric over a grid (or over some of its columns); cells keep their numbers and are
    coloured by value."""
    from rich.table import Table
    from rich.text import Text

    shown_columns = range(len(grid.col_labels)) if columns is None else columns
    t = Table(show_edge=False, header_style="bold", pad_edge=False, padding=(0, 1))
    t.add_column("a \\ b" if grid.kind == "layers" else "", no_wrap=True, style="bold")
    for j in shown_columns:
        t.add_column(_short(grid.col_labels[j]), justify="right", no_wrap=True)
    bounds = common.finite_bounds(grid)
    for i, row in enumerate(grid.values):
        cells: list[str | Text] = []
        for j in shown_columns:
            value = row[j]
            if value is None:
                cells.append("—")
                continue
            # A sweep marks its best pair; the other cells keep the mark's place so the numbers line up.
            mark = ("*" if grid.best == (i, j) else " ") if grid.kind == "layers" else ""
            where = common.share(value, bounds)
            # The most aligned end is always the bright colour: a distance is coloured the other way round.
            cells.append(Text(f"{value:.3f}{mark}", style=_colour(where if grid.higher_is_better else 1.0 - where)))
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


def _fitted_metric_table(result: Result, console: Console, width: int, convert: Convert) -> list[RenderableType]:
    """The metric table with as many columns as fit in ``width``: the columns of LEFT_OUT give way in order
    (the parameters move to lines under the table, a note names the others). When even the rest is too wide,
    the baseline and change move to a second table."""
    from rich.text import Text

    left_out: list[str] = []
    table = convert(_metric_table(result))
    for key in LEFT_OUT:
        if _width(console, table) <= width:
            break
        left_out.append(key)
        table = convert(_metric_table(result, left_out))
    parts: list[RenderableType] = [table]
    if _width(console, table) > width and isinstance(result, ComparisonResult) and result.baseline is not None:
        parts = [convert(_metric_table(result, [*left_out, "baseline", "change"])), Text(""),
                 convert(_metric_table(result, [*left_out, "ci", "check"]))]
    if "parameters" in left_out:
        seen = dict.fromkeys(f"{row.metric.name} parameters: {common.params(row.metric)}"
                             for row in common.rows(result))
        parts += [Text(shown(line), style="dim") for line in seen]
    gone = [next(c.header for c in common.columns(result, calibrated=False) if c.key == key)
            for key in left_out if key != "parameters"]
    if gone:
        parts.append(Text(f"{', '.join(gone)} left out to fit {width} columns (a wider terminal or "
                          "--format json/csv/markdown shows them)", style="dim"))
    return parts


def _metric_table(result: Result, left_out: list[str] | None = None) -> Table:
    """One row per metric (of each pair, in a matrix); a failed check turns its row red."""
    from rich.table import Table

    t = Table(show_edge=False, header_style="bold")
    columns = [c for c in common.columns(result, calibrated=False) if c.key not in (left_out or [])]
    for col in columns:
        t.add_column(col.header, justify=col.justify, style=col.style, no_wrap=True)
    for row in common.rows(result):
        cells = row.cells()
        if row.pair is not None:
            cells["a"], cells["b"] = (shown(info.short) for info in row.pair)
        cells["check"] = row.check
        t.add_row(*(cells[col.key] for col in columns), style="bold red" if row.check == "FAIL" else None)
    return t


def inspect_table(path: str, infos: list[ArrayInfo]) -> Table:
    """``repalign inspect``: every array of a file with its shape and dtype. The shape is never cut; a key too
    long for the console folds onto further lines, since it is what the user types next."""
    from rich.table import Table

    t = Table(title=shown(path), show_edge=False, header_style="bold")
    t.add_column("key", overflow="fold")
    t.add_column("shape", justify="right", no_wrap=True)
    t.add_column("dtype")
    t.add_column("usable")
    for i in infos:
        shape = "×".join("?" if s is None else str(s) for s in i.shape)
        usable = "yes" if i.embedding_like else f"{i.shape[1]} layers" if i.layered else ""
        t.add_row(shown(i.name) if i.name else "(whole file)", shape, shown(i.dtype), usable)
    return t
