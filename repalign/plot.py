"""Heatmaps of layer-by-layer scores, written with matplotlib (an optional dependency).

Only :func:`save_heatmaps` is public. matplotlib is imported inside it, so the rest of
repalign works without it; a missing matplotlib becomes a :class:`~repalign.errors.UsageError`
that says how to install it. Figures are built with :class:`matplotlib.figure.Figure`
directly (no pyplot, no global figure state) and rendered by the non-interactive backends.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repalign.errors import UsageError
from repalign.safe_write import write_atomic

FORMATS = (".png", ".svg", ".pdf")
PNG_DPI = 150

TICK_FONT = 8.0         # points, tick labels
ANNOT_FONT_MAX = 8.0    # points, numbers written in the cells
AXIS_FONT = 9.0         # points, axis labels
TITLE_FONT = 11.0       # points, panel titles
ANNOTATE_MAX = 20       # cells are annotated only when both sides are at most this long
LABEL_MAX_CHARS = 36    # longer tick labels are shortened (see _tick_labels)
CHAR_WIDTH = 0.6        # average glyph width as a fraction of the font size
SIZE_STEP = 0.5         # figure sizes are rounded up to this many inches (0.5 in = 75 px at 150 dpi)

CELL_IN = 0.4           # preferred side of one cell, inches
HEAT_MIN_IN = 2.0       # the heatmap area is never smaller than this ...
HEAT_MAX_IN = 9.0       # ... nor larger than this, per side
PANEL_MAX_W_IN = 16.0
PANEL_MAX_H_IN = 16.0
FIGURE_MAX_W_IN = 48.0
COLORBAR_W_IN = 0.15

MISSING_COLOUR = "#d0d0d0"
MAJOR_SEPARATORS = "/\\: "
ALL_SEPARATORS = "/\\: ._-"
PT_PER_IN = 72.0


@dataclass(frozen=True)
class _Geometry:
    """Sizes (inches) of one panel, derived from its matrix shape and labels."""

    heat_w: float
    heat_h: float
    width: float
    height: float
    col_rotation: int
    row_step: int
    col_step: int


def _text_in(chars: int, font: float) -> float:
    """Approximate width in inches of ``chars`` characters at ``font`` points."""
    return chars * CHAR_WIDTH * font / PT_PER_IN


def _shorten(label: str, limit: int = LABEL_MAX_CHARS) -> str:
    """Shorten a tick label to at most ``limit`` characters, keeping its start and end.

    Parameters
    ----------
    label : str
        The label as given.
    limit : int
        Maximum length of the result.

    Returns
    -------
    str
        ``label`` itself, or its start and end joined by an ellipsis.
    """
    label = str(label)
    if len(label) <= limit:
        return label
    head = (limit - 1) // 2
    tail = limit - 1 - head
    return f"{label[:head]}…{label[-tail:]}"


def _common_affixes(labels: list[str]) -> tuple[int, int]:
    """Lengths of the prefix and suffix shared by all ``labels``, cut at separators.

    The prefix is cut after its last path-like separator (``/``, ``\\``, ``:`` or space) so the
    word where the labels start to differ stays whole; the suffix is cut at its first separator
    of any kind (including ``_``, ``.`` and ``-``).
    """
    if len(labels) < 2:
        return 0, 0
    shortest = min(len(s) for s in labels)
    pre = 0
    while pre < shortest and all(s[pre] == labels[0][pre] for s in labels):
        pre += 1
    suf = 0
    while suf < shortest - pre and all(s[-1 - suf] == labels[0][-1 - suf] for s in labels):
        suf += 1
    prefix = labels[0][:pre]
    pre = max((prefix.rfind(c) + 1 for c in MAJOR_SEPARATORS), default=0)
    suffix = labels[0][len(labels[0]) - suf:]
    cuts = [i for i, c in enumerate(suffix) if c in ALL_SEPARATORS]
    suf = len(suffix) - cuts[0] if cuts else 0
    return pre, suf


def _tick_labels(labels: list[str], limit: int = LABEL_MAX_CHARS) -> list[str]:
    """Tick labels that fit in ``limit`` characters and stay as distinct as possible.

    When a label is too long, the prefix shared by all labels (e.g. a common directory) is
    replaced by an ellipsis, then, if that is not enough, the shared suffix (e.g. a common
    file ending); what is still too long is shortened in the middle.

    Parameters
    ----------
    labels : list of str
        Labels as given, one per row or column.
    limit : int
        Maximum length of a tick label.

    Returns
    -------
    list of str
        One label per input label.
    """
    labels = [str(s) for s in labels]
    if all(len(s) <= limit for s in labels):
        return labels
    pre, suf = _common_affixes(labels)
    if all(len(s) - pre + (pre > 0) <= limit for s in labels):
        suf = 0  # dropping the shared prefix is enough; keep endings such as ".npy"
    out = []
    for s in labels:
        core = s[pre:len(s) - suf]
        out.append(_shorten(("…" if pre else "") + core + ("…" if suf else ""), limit))
    return out


def _tick_step(n: int, cell_in: float, spacing_in: float) -> int:
    """Label every ``step``-th cell so neighbouring labels, ``spacing_in`` apart at least, do not overlap."""
    if n <= 1:
        return 1
    return max(1, math.ceil(spacing_in / cell_in))


def _geometry(panel: dict) -> _Geometry:
    """Work out the size of one panel from its matrix shape and its labels.

    Parameters
    ----------
    panel : dict
        A panel as accepted by :func:`save_heatmaps`.

    Returns
    -------
    _Geometry
        Heatmap area, whole-panel size, column-label rotation and tick thinning.
    """
    nrows, ncols = np.shape(panel["values"])
    heat_w = min(max(ncols * CELL_IN, HEAT_MIN_IN), HEAT_MAX_IN)
    heat_h = min(max(nrows * CELL_IN, HEAT_MIN_IN), HEAT_MAX_IN)
    row_chars = max((len(s) for s in _tick_labels(panel["row_labels"])), default=1)
    col_chars = max((len(s) for s in _tick_labels(panel["col_labels"])), default=1)
    line_in = 1.3 * TICK_FONT / PT_PER_IN
    col_cell = heat_w / max(ncols, 1)
    # Short column labels stay horizontal when they fit; anything else is turned 45 degrees.
    col_rotation = 0 if _text_in(col_chars, TICK_FONT) + 0.05 <= col_cell else 45
    if col_rotation:
        col_spacing = line_in / math.sin(math.radians(col_rotation))
        col_label_h = _text_in(col_chars, TICK_FONT) * math.sin(math.radians(col_rotation)) + line_in
        col_step = _tick_step(ncols, col_cell, col_spacing)
    else:
        col_label_h = line_in
        col_step = 1
    row_step = _tick_step(nrows, heat_h / max(nrows, 1), line_in)
    row_label_w = _text_in(row_chars, TICK_FONT)
    axis_line = 1.4 * AXIS_FONT / PT_PER_IN
    colorbar_w = COLORBAR_W_IN + 0.6  # bar, gap and tick labels
    title_h = 1.6 * TITLE_FONT / PT_PER_IN
    width = heat_w + row_label_w + 2 * axis_line + colorbar_w + 0.3
    height = heat_h + col_label_h + 3 * axis_line + title_h + 0.3
    return _Geometry(heat_w=heat_w, heat_h=heat_h, width=min(width, PANEL_MAX_W_IN),
                     height=min(height, PANEL_MAX_H_IN), col_rotation=col_rotation,
                     row_step=row_step, col_step=col_step)


def _round_up(x: float, step: float = SIZE_STEP) -> float:
    """Round ``x`` up to a multiple of ``step`` (exact in binary floating point for step 0.5)."""
    return math.ceil(x / step - 1e-9) * step


def _figure_size(panels: list[dict], title: str | None = None) -> tuple[float, float]:
    """Figure size in inches: panels side by side, the tallest panel sets the height.

    Parameters
    ----------
    panels : list of dict
        Panels as accepted by :func:`save_heatmaps`.
    title : str or None
        Figure title; adds a line of height when given.

    Returns
    -------
    (float, float)
        Width and height in inches, each a multiple of ``SIZE_STEP`` so that
        ``size * PNG_DPI`` is a whole number of pixels.
    """
    geoms = [_geometry(p) for p in panels]
    width = min(sum(g.width for g in geoms), FIGURE_MAX_W_IN)
    height = max(g.height for g in geoms)
    if title:
        height += 2.0 * TITLE_FONT / PT_PER_IN
    return _round_up(width), _round_up(height)


def _as_matrix(values) -> np.ndarray:
    """Convert a 2-D list/array of float or None to a float array with NaN for undefined cells."""
    rows = np.asarray(values, dtype=object)
    if rows.ndim != 2:
        raise ValueError(f"panel values must be a 2-D matrix, got {rows.ndim} dimension(s)")
    out = np.full(rows.shape, np.nan)
    for idx, v in np.ndenumerate(rows):
        if v is not None:
            out[idx] = float(v)
    return out


def _check_panel(panel: dict) -> None:
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


def _colormap(vmin: float, vmax: float):
    """A diverging colour map for ranges around zero, a sequential one otherwise; NaN is grey."""
    from matplotlib import colormaps

    name = "RdBu_r" if vmin < 0 < vmax else "viridis"
    return colormaps[name].with_extremes(bad=MISSING_COLOUR)


def _text_colour(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba``."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _set_ticks(ax, n: int, labels: list[str], step: int, axis: str, rotation: int = 0) -> None:
    """Label every ``step``-th cell along ``axis`` ("x" or "y"); unlabelled cells get minor ticks."""
    major = list(range(0, n, step))
    short = _tick_labels(labels)
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


def _wrap(text: str, width_in: float, font: float) -> str:
    """Wrap an axis label to lines that fit in ``width_in`` inches.

    Lines break after spaces and after ``/ _ . :`` so file and layer names split at
    natural points; a piece longer than a line is cut.
    """
    chars = max(12, int(width_in / _text_in(1, font)))
    lines = [""]
    for piece in re.split(r"(?<=[ /_.:])", str(text)):
        while len(piece) > chars:
            if lines[-1]:
                lines.append("")
            lines[-1], piece = piece[:chars], piece[chars:]
            lines.append("")
        if len(lines[-1]) + len(piece.rstrip()) > chars and lines[-1]:
            lines.append("")
        lines[-1] += piece
    return "\n".join(line.strip() for line in lines if line.strip())


def _annotate(ax, matrix: np.ndarray, cmap, norm, cell_in: float) -> None:
    """Write each defined value with 2 decimals in its cell, in a colour that contrasts with the cell."""
    font = min(ANNOT_FONT_MAX, 0.8 * cell_in * PT_PER_IN / (CHAR_WIDTH * 5))
    for (i, j), v in np.ndenumerate(matrix):
        if np.isnan(v):
            continue
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=font, color=_text_colour(cmap(norm(v))))


def _mark_best(ax, row: int, col: int) -> None:
    """Frame cell (row, col) with a white-in-black double rectangle, visible on any colour."""
    from matplotlib.patches import Rectangle

    for colour, lw in (("black", 3.2), ("white", 1.4)):
        ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor=colour, linewidth=lw,
                               clip_on=False, zorder=3))


def _draw_panel(fig, ax, cax, panel: dict) -> None:
    """Draw one panel: the heatmap with ticks, axis labels, title and best-cell marker, and its colour bar.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure that owns both axes.
    ax, cax : matplotlib.axes.Axes
        Axes for the heatmap and for its colour bar.
    panel : dict
        A checked panel as accepted by :func:`save_heatmaps`.
    """
    from matplotlib.colors import Normalize

    matrix = _as_matrix(panel["values"])
    nrows, ncols = matrix.shape
    geom = _geometry(panel)
    vmin, vmax = float(panel["vmin"]), float(panel["vmax"])
    cmap = _colormap(vmin, vmax)
    norm = Normalize(vmin=vmin, vmax=vmax)
    im = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, norm=norm, origin="upper", aspect="auto",
                   interpolation="nearest")
    _set_ticks(ax, ncols, panel["col_labels"], geom.col_step, "x", geom.col_rotation)
    _set_ticks(ax, nrows, panel["row_labels"], geom.row_step, "y")
    ax.set_xlabel(_wrap(panel["col_axis"], geom.heat_w, AXIS_FONT), fontsize=AXIS_FONT)
    ax.set_ylabel(_wrap(panel["row_axis"], geom.heat_h, AXIS_FONT), fontsize=AXIS_FONT)
    ax.set_title(str(panel["title"]), fontsize=TITLE_FONT)
    if panel.get("annotate") and max(nrows, ncols) <= ANNOTATE_MAX:
        _annotate(ax, matrix, cmap, norm, min(geom.heat_w / ncols, geom.heat_h / nrows))
    best = panel.get("best")
    if best is not None:
        _mark_best(ax, int(best[0]), int(best[1]))
    cbar = fig.colorbar(im, cax=cax)
    cbar.ax.tick_params(labelsize=TICK_FONT)


def _check_path(path: str) -> str:
    """Return the output format of ``path`` ("png", "svg" or "pdf"), or raise UsageError."""
    p = Path(path)
    suffix = p.suffix
    if suffix.lower() not in FORMATS:
        raise UsageError(f"{path}: --plot writes .png, .svg or .pdf (got '{suffix}')")
    parent = p.parent
    if not parent.is_dir():
        raise UsageError(f"{path}: cannot write the plot (directory {str(parent)!r} does not exist)")
    return suffix.lower()[1:]


def save_heatmaps(path: str, panels: list[dict], title: str | None = None) -> None:
    """Write one heatmap per panel, side by side, to a PNG, SVG or PDF file.

    Parameters
    ----------
    path : str
        Output file; its suffix (``.png``, ``.svg`` or ``.pdf``) chooses the format.
        PNGs are written at 150 dpi.
    panels : list of dict
        One dict per heatmap, with keys

        - ``"title"`` (str): panel title, e.g. the metric name.
        - ``"values"``: 2-D list/array of float or None (None = undefined, drawn grey).
          Row 0 is drawn at the top.
        - ``"row_labels"``, ``"col_labels"`` (list of str): tick labels, one per row/column.
        - ``"row_axis"``, ``"col_axis"`` (str): axis labels.
        - ``"vmin"``, ``"vmax"`` (float): colour range, normally the metric's range.
        - ``"best"`` (optional, (row, col) or None): cell to frame.
        - ``"annotate"`` (optional, bool): write the values with 2 decimals in the cells
          (only when the matrix is at most 20 x 20).
    title : str or None
        Optional figure title above all panels.

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
    widths = [w for p in panels for w in (_geometry(p).heat_w, COLORBAR_W_IN)]
    rc = {"svg.hashsalt": "repalign", "svg.fonttype": "none", "pdf.fonttype": 42}
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=_figure_size(panels, title), dpi=PNG_DPI, layout="constrained")
        axes = fig.subplots(1, 2 * len(panels), squeeze=False, gridspec_kw={"width_ratios": widths})[0]
        for i, panel in enumerate(panels):
            _draw_panel(fig, axes[2 * i], axes[2 * i + 1], panel)
        if title:
            fig.suptitle(str(title), fontsize=TITLE_FONT + 1)
        metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}}.get(fmt)
        # Through a temporary file: a failed or interrupted save leaves any earlier plot as it was.
        write_atomic(path, lambda f: fig.savefig(f, format=fmt, dpi=PNG_DPI, metadata=metadata), "the plot")
