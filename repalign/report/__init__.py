"""Reports of a result, one formatter per output format; compare, sweep and matrix results all go through each."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from repalign.errors import UsageError
from repalign.report.common import CHANCE_NOTE, Result, explain_lines, sweep_lines
from repalign.report.csv import CSV_COLUMNS, MATRIX_CSV_COLUMNS, SWEEP_CSV_COLUMNS, CsvFormat
from repalign.report.json import JsonFormat
from repalign.report.markdown import MarkdownFormat
from repalign.report.plot import SUFFIXES as PLOT_SUFFIXES
from repalign.report.plot import PlotFormat, plot_panels, save_heatmaps
from repalign.report.table import TableFormat, heatmap
from repalign.safe_write import write_atomic
from repalign.text import shown, valid_unicode

__all__ = ["CHANCE_NOTE", "CSV_COLUMNS", "FORMATS", "FORMATTERS", "Formatter", "MATRIX_CSV_COLUMNS", "PLOT",
           "PLOT_SUFFIXES", "RENDERERS", "Result", "SUFFIXES", "SWEEP_CSV_COLUMNS", "explain_lines", "heatmap",
           "output_format", "plot_panels", "save_heatmaps", "sweep_lines", "table", "to_csv", "to_json",
           "to_markdown", "to_text", "write"]


class Formatter(Protocol):
    """One output format: the whole report of a compare, a sweep or a matrix as text."""

    def format(self, result: Result) -> str: ...


_TABLE = TableFormat()
FORMATTERS: dict[str, Formatter] = {"table": _TABLE, "json": JsonFormat(), "csv": CsvFormat(),
                                    "markdown": MarkdownFormat()}
FORMATS = tuple(FORMATTERS)
PLOT = PlotFormat()
"""The heatmap figure: ``PLOT.save(result, path)`` writes a .png, .svg or .pdf."""

RENDERERS = {name: f.format for name, f in FORMATTERS.items()}
SUFFIXES = {".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown", ".txt": "table"}

to_json = FORMATTERS["json"].format
to_csv = FORMATTERS["csv"].format
to_markdown = FORMATTERS["markdown"].format
to_text = _TABLE.format
table = _TABLE.renderable


def output_format(path: str) -> str:
    """The report format that ``--output``'s suffix names; any other suffix is a UsageError."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(f"{shown(path)}: --output writes {', '.join(SUFFIXES)} (got '{shown(suffix) or '(none)'}')")
    return SUFFIXES[suffix]


def write(result: Result, path: str) -> str:
    """Write the report atomically to a file in the format its suffix names; returns the format."""
    fmt = output_format(path)
    write_atomic(path, valid_unicode(FORMATTERS[fmt].format(result)).encode("utf-8"), "the report")
    return fmt
