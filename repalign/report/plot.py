"""Heatmaps of a sweep's layer pairs or a matrix's inputs, drawn with matplotlib (imported only when drawing)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from repalign.errors import UsageError
from repalign.report import common
from repalign.report.common import Result
from repalign.report.layout import (
    ANNOT_FONT_MAX,
    ANNOTATE_MAX,
    AXIS_FONT,
    CHAR_WIDTH,
    COLORBAR_W_IN,
    PNG_DPI,
    PT_PER_IN,
    TICK_FONT,
    TITLE_FONT,
    Panel,
    figure_size,
    geometry,
    tick_labels,
    wrap,
)
from repalign.results import ComparisonResult
from repalign.safe_write import write_atomic
from repalign.text import shown

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure

SUFFIXES = (".png", ".svg", ".pdf")
MISSING_COLOUR = "#d0d0d0"
SCALES = ("data", "fixed")
"""--plot-scale: colour limits from the data's range (default) or the metric's full range."""


class PlotFormat:
    """One heatmap per metric, side by side: a sweep's layer pairs (best pair framed) or a matrix's inputs.

    Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no global figure
    state) and rendered by the non-interactive backends; a missing matplotlib is a UsageError that
    says how to install it.
    """

    def save(self, result: Result, path: str, scale: str = "data") -> None:
        save_heatmaps(path, plot_panels(result, scale), title=None)


def _chances(result: Result, metric: str) -> list[float]:
    """The chance levels of the cells of ``metric``'s heatmap (a matrix's diagonal, self against self, left out)."""
    if isinstance(result, ComparisonResult):
        sw = result.sweep
        cells = [] if sw is None else [c for row in sw.cells[metric] for c in row]
    else:
        cells = [c.metric(metric) for c in result.cells]
    return [float(c.chance) for c in cells if c.chance is not None and np.isfinite(c.chance)]


def colour_limits(values: Sequence[Sequence[float | None]], bounds: tuple[float, float],
                  scale: str, skip_diagonal: bool = False) -> tuple[float, float]:
    """Colour limits: the metric's ``bounds`` with ``scale="fixed"``, else the defined values' min and max.

    ``skip_diagonal`` leaves a matrix's diagonal (each input against itself, 1.0) out of the data range, so
    the pairs' differences get the colours; the diagonal is then drawn in the top colour. A grid with no
    defined value, or a single distinct value, falls back to ``bounds``.
    """
    if scale not in SCALES:
        raise UsageError(f"--plot-scale must be one of {', '.join(SCALES)} (got {scale!r})")
    m = _as_matrix(values)
    if skip_diagonal and m.shape[0] == m.shape[1] and m.shape[0] > 1:
        m = m.copy()
        np.fill_diagonal(m, np.nan)
    finite = m[np.isfinite(m)]
    # An unbounded side of a metric's range (cknna, linear-r2) takes the data's extreme, or one unit from the
    # other bound when there is no data, so the colour bar always has finite ends.
    lo = float(bounds[0]) if np.isfinite(bounds[0]) else (float(finite.min()) if finite.size else float(bounds[1]) - 1)
    hi = float(bounds[1]) if np.isfinite(bounds[1]) else (float(finite.max()) if finite.size else lo + 1)
    if hi <= lo:
        hi = lo + 1.0
    if scale == "fixed" or finite.size == 0 or float(finite.min()) == float(finite.max()):
        return lo, hi
    return float(finite.min()), float(finite.max())


def plot_panels(result: Result, scale: str = "data") -> list[Panel]:
    """The heatmap panels of a sweep or a matrix, as :func:`save_heatmaps` takes them.

    ``scale`` is "data" (colour limits = the values' range) or "fixed" (the metric's full range). Each
    panel's colour bar is labelled with the metric and its direction and marks the mean chance level of
    its cells (with their min–max as a band when the cells' chance levels differ).
    """
    a, b = result.inputs[0].name, result.inputs[1].name
    axes = {"layers": (f"layer of a ({a})", f"layer of b ({b})"), "pairs": ("input", "input"),
            "reference": ("reference", "input")}
    panels = []
    for grid in common.grids(result):
        row_axis, col_axis = axes[grid.kind]
        vmin, vmax = colour_limits(grid.values, grid.range, scale, skip_diagonal=grid.kind == "pairs")
        # Labels as they are shown everywhere else: one line, undecodable bytes as \\xff (SVG/PDF need valid text).
        panel: Panel = {"title": grid.metric, "values": grid.values, "row_labels": [shown(x) for x in grid.row_names],
                        "col_labels": [shown(x) for x in grid.col_names], "row_axis": shown(row_axis),
                        "col_axis": shown(col_axis), "vmin": vmin, "vmax": vmax, "annotate": True,
                        "colorbar_label": f"{grid.metric} ({_direction(grid.higher_is_better)})"}
        chances = _chances(result, grid.metric)
        if chances:
            panel["chance"] = float(np.mean(chances))
            if max(chances) > min(chances):
                panel["chance_range"] = (min(chances), max(chances))
        if grid.kind == "layers":  # a sweep frames its best pair; a matrix shows every pair for itself
            panel["best"] = grid.best
        panels.append(panel)
    return panels


def _direction(higher_is_better: bool) -> str:
    return "higher = more aligned" if higher_is_better else "lower = more aligned"


def _as_matrix(values: Sequence[Sequence[float | None]] | np.ndarray) -> np.ndarray:
    """Convert a 2-D list/array of float or None to a float array with NaN for undefined cells."""
    rows = np.asarray(values, dtype=object)
    if rows.ndim != 2:
        raise ValueError(f"panel values must be a 2-D matrix, got {rows.ndim} dimension(s)")
    out = np.full(rows.shape, np.nan)
    for idx, v in np.ndenumerate(rows):
        if v is not None:
            out[idx] = float(v)
    return out


def _check_panel(panel: Panel) -> None:
    """Raise ValueError if ``panel`` is not a non-empty matrix with matching labels and an in-range best cell."""
    nrows, ncols = _as_matrix(panel["values"]).shape
    name = panel.get("title")
    if nrows == 0 or ncols == 0:
        raise ValueError(f"panel {name!r}: the matrix is empty")
    if len(panel["row_labels"]) != nrows or len(panel["col_labels"]) != ncols:
        raise ValueError(f"panel {name!r}: {nrows}x{ncols} values but "
                         f"{len(panel['row_labels'])} row and {len(panel['col_labels'])} column labels")
    best = panel.get("best")
    if best is not None and not (0 <= int(best[0]) < nrows and 0 <= int(best[1]) < ncols):
        raise ValueError(f"panel {name!r}: best cell {tuple(best)} is outside the {nrows}x{ncols} matrix")


def _colormap(vmin: float, vmax: float) -> Colormap:
    """A diverging colour map for ranges around zero, a sequential one otherwise; NaN is grey."""
    from matplotlib import colormaps

    name = "RdBu_r" if vmin < 0 < vmax else "viridis"
    return colormaps[name].with_extremes(bad=MISSING_COLOUR)


def _text_colour(rgba: Sequence[float]) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba``."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _set_ticks(ax: Axes, n: int, labels: list[str], step: int, axis: str, rotation: int = 0) -> None:
    """Label every ``step``-th cell along ``axis`` ("x" or "y"); unlabelled cells get minor ticks."""
    major = list(range(0, n, step))
    short = tick_labels(labels)
    text = [short[i] for i in major]
    if axis == "x":
        ax.set_xticks(major, text, fontsize=TICK_FONT, rotation=rotation,
                      ha="right" if rotation else "center", rotation_mode="anchor" if rotation else "default")
        if step > 1:
            ax.set_xticks(range(n), minor=True)
    else:
        ax.set_yticks(major, text, fontsize=TICK_FONT)
        if step > 1:
            ax.set_yticks(range(n), minor=True)


def _annotate(ax: Axes, matrix: np.ndarray, cmap: Colormap, norm: Normalize, cell_in: float) -> None:
    """Write each defined value with 2 decimals in its cell, in a colour that contrasts with the cell."""
    font = min(ANNOT_FONT_MAX, 0.8 * cell_in * PT_PER_IN / (CHAR_WIDTH * 5))
    for (i, j), v in np.ndenumerate(matrix):
        if np.isnan(v):
            continue
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=font, color=_text_colour(cmap(norm(v))))


def _mark_best(ax: Axes, row: int, col: int) -> None:
    """Frame cell (row, col) with a white-in-black double rectangle, visible on any colour."""
    from matplotlib.patches import Rectangle

    for colour, lw in (("black", 3.2), ("white", 1.4)):
        ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor=colour, linewidth=lw,
                               clip_on=False, zorder=3))


def _draw_panel(fig: Figure, ax: Axes, cax: Axes, panel: Panel) -> None:
    """Draw one panel: the heatmap with ticks, axis labels, title and best-cell marker, and its colour bar.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure that owns both axes.
    ax, cax : matplotlib.axes.Axes
        Axes for the heatmap and for its colour bar.
    panel : Panel
        A checked panel as accepted by :func:`save_heatmaps`.
    """
    from matplotlib.colors import Normalize

    matrix = _as_matrix(panel["values"])
    nrows, ncols = matrix.shape
    geom = geometry(panel)
    vmin, vmax = float(panel["vmin"]), float(panel["vmax"])
    cmap = _colormap(vmin, vmax)
    norm = Normalize(vmin=vmin, vmax=vmax)
    im = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, norm=norm, origin="upper", aspect="auto",
                   interpolation="nearest")
    _set_ticks(ax, ncols, panel["col_labels"], geom.col_step, "x", geom.col_rotation)
    _set_ticks(ax, nrows, panel["row_labels"], geom.row_step, "y")
    ax.set_xlabel(wrap(panel["col_axis"], geom.heat_w, AXIS_FONT), fontsize=AXIS_FONT)
    ax.set_ylabel(wrap(panel["row_axis"], geom.heat_h, AXIS_FONT), fontsize=AXIS_FONT)
    ax.set_title(str(panel["title"]), fontsize=TITLE_FONT)
    if panel.get("annotate") and max(nrows, ncols) <= ANNOTATE_MAX:
        _annotate(ax, matrix, cmap, norm, min(geom.heat_w / ncols, geom.heat_h / nrows))
    best = panel.get("best")
    if best is not None:
        _mark_best(ax, int(best[0]), int(best[1]))
    cbar = fig.colorbar(im, cax=cax)
    cbar.ax.tick_params(labelsize=TICK_FONT)
    label = panel.get("colorbar_label")
    if label:
        cbar.set_label(wrap(str(label), geom.heat_h, AXIS_FONT), fontsize=AXIS_FONT)
    _mark_chance(cax, panel, vmin, vmax)


def _mark_chance(cax: Axes, panel: Panel, vmin: float, vmax: float) -> None:
    """Mark the chance level on the colour bar: a black-on-white line at the (mean) chance value, the
    cells' min–max chance as a hatched band when it varies; a level outside the colour range is clipped
    to the bar's end and drawn dashed."""
    chance = panel.get("chance")
    if chance is None:
        return
    band = panel.get("chance_range")
    if band is not None:
        lo, hi = max(band[0], vmin), min(band[1], vmax)
        if hi > lo:
            cax.axhspan(lo, hi, facecolor="none", edgecolor="black", hatch="////", linewidth=0.0, gid="chance-band")
    y = min(max(chance, vmin), vmax)
    style, text = "-", "chance"
    if chance < vmin:
        style, text = "--", f"chance {chance:.2f} ↓"
    elif chance > vmax:
        style, text = "--", f"chance {chance:.2f} ↑"
    cax.axhline(y, color="white", linewidth=3.0, linestyle=style)
    cax.axhline(y, color="black", linewidth=1.4, linestyle=style, gid="chance")
    cax.annotate(text, xy=(0.0, y), xycoords=("axes fraction", "data"), xytext=(-2, 0),
                 textcoords="offset points", ha="right", va="center", fontsize=TICK_FONT - 1)


def _check_path(path: str) -> str:
    """Return the output format of ``path`` ("png", "svg" or "pdf"), or raise UsageError."""
    p = Path(path)
    suffix = p.suffix
    if suffix.lower() not in SUFFIXES:
        raise UsageError(f"{path}: --plot writes .png, .svg or .pdf (got '{suffix}')")
    parent = p.parent
    if not parent.is_dir():
        raise UsageError(f"{path}: cannot write the plot (directory {str(parent)!r} does not exist)")
    return suffix.lower()[1:]


def save_heatmaps(path: str, panels: list[Panel], title: str | None = None) -> Figure:
    """Write one heatmap per panel, side by side, to a PNG, SVG or PDF file.

    Parameters
    ----------
    path : str
        Output file; its suffix (``.png``, ``.svg`` or ``.pdf``) chooses the format.
        PNGs are written at 150 dpi.
    panels : list of Panel
        One dict per heatmap, with keys

        - ``"title"`` (str): panel title, e.g. the metric name.
        - ``"values"``: 2-D list/array of float or None (None = undefined, drawn grey).
          Row 0 is drawn at the top.
        - ``"row_labels"``, ``"col_labels"`` (list of str): tick labels, one per row/column.
        - ``"row_axis"``, ``"col_axis"`` (str): axis labels.
        - ``"vmin"``, ``"vmax"`` (float): colour range (the data's or the metric's range).
        - ``"best"`` (optional, (row, col) or None): cell to frame.
        - ``"colorbar_label"`` (optional, str): the colour bar's label, e.g. "mknn (higher = more aligned)".
        - ``"chance"`` (optional, float): chance level, marked with a line on the colour bar.
        - ``"chance_range"`` (optional, (low, high)): the cells' chance levels, a hatched band on the bar.
        - ``"annotate"`` (optional, bool): write the values with 2 decimals in the cells
          (only when the matrix is at most 20 x 20).
    title : str or None
        Optional figure title above all panels.

    Returns
    -------
    matplotlib.figure.Figure
        The figure as written (for inspection; it is not shown).

    Raises
    ------
    UsageError
        If matplotlib is not installed, the suffix is not supported, or the file
        cannot be written.
    ValueError
        If ``panels`` is empty, a panel's labels do not match its matrix, or its best
        cell lies outside the matrix.
    """
    fmt = _check_path(path)
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'repalign[plot]'") from None
    if not panels:
        raise ValueError("save_heatmaps needs at least one panel")
    for panel in panels:
        _check_panel(panel)

    # Heatmap and colour bar sit in neighbouring grid columns, so the bar is exactly as high as the heatmap;
    # constrained layout keeps the inner widths in these ratios.
    widths = [w for p in panels for w in (geometry(p).heat_w, COLORBAR_W_IN)]
    # Fixed SVG ids (and no dates, below) so a result always gives the same bytes; text stays text, fonts embed.
    with matplotlib.rc_context({"svg.hashsalt": "repalign", "svg.fonttype": "none", "pdf.fonttype": 42}):
        fig = Figure(figsize=figure_size(panels, title), dpi=PNG_DPI, layout="constrained")
        axes = fig.subplots(1, 2 * len(panels), squeeze=False, gridspec_kw={"width_ratios": widths})[0]
        for i, panel in enumerate(panels):
            _draw_panel(fig, axes[2 * i], axes[2 * i + 1], panel)
        if title:
            fig.suptitle(str(title), fontsize=TITLE_FONT + 1)
        metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}}.get(fmt)
        # Through a temporary file: a failed or interrupted save leaves any earlier plot as it was.
        write_atomic(path, lambda f: fig.savefig(f, format=fmt, dpi=PNG_DPI, metadata=metadata), "the plot")
    return fig
