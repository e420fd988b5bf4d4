"""Sizes and labels of heatmap figures, worked out without matplotlib: panel geometry, tick labels, wrapping."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Required, TypedDict

import numpy as np

PNG_DPI = 150

TICK_FONT = 8.0         # points, tick labels
ANNOT_FONT_MAX = 8.0    # points, numbers written in the cells
AXIS_FONT = 9.0         # points, axis labels
TITLE_FONT = 11.0       # points, panel titles
ANNOTATE_MAX = 20       # cells are annotated only when both sides are at most this long
LABEL_MAX_CHARS = 36    # longer tick labels are shortened (see tick_labels)
CHAR_WIDTH = 0.6        # average glyph width as a fraction of the font size
SIZE_STEP = 0.5         # figure sizes are rounded up to this many inches (0.5 in = 75 px at 150 dpi)

CELL_IN = 0.4           # preferred side of one cell, inches
HEAT_MIN_IN = 2.0       # the heatmap area is never smaller than this ...
HEAT_MAX_IN = 9.0       # ... nor larger than this, per side
PANEL_MAX_W_IN = 16.0
PANEL_MAX_H_IN = 16.0
FIGURE_MAX_W_IN = 48.0
COLORBAR_W_IN = 0.15

MAJOR_SEPARATORS = "/\\: "
ALL_SEPARATORS = "/\\: ._-"
PT_PER_IN = 72.0


class Panel(TypedDict, total=False):
    """One heatmap as :func:`repalign.report.plot.save_heatmaps` takes it (its docstring explains the keys)."""

    title: Required[str]
    values: Required[Sequence[Sequence[float | None]] | np.ndarray]
    row_labels: Required[list[str]]
    col_labels: Required[list[str]]
    row_axis: Required[str]
    col_axis: Required[str]
    vmin: Required[float]
    vmax: Required[float]
    best: tuple[int, int] | None
    annotate: bool
    colorbar_label: str
    chance: float
    chance_range: tuple[float, float]


@dataclass(frozen=True)
class Geometry:
    """Sizes (inches) of one panel, derived from its matrix shape and labels."""

    heat_w: float
    heat_h: float
    width: float
    height: float
    col_rotation: int
    row_step: int
    col_step: int


def text_in(chars: int, font: float) -> float:
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


def tick_labels(labels: list[str], limit: int = LABEL_MAX_CHARS) -> list[str]:
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


def geometry(panel: Panel) -> Geometry:
    """Work out the size of one panel from its matrix shape and its labels.

    Parameters
    ----------
    panel : Panel
        A panel as accepted by :func:`save_heatmaps`.

    Returns
    -------
    Geometry
        Heatmap area, whole-panel size, column-label rotation and tick thinning.
    """
    nrows, ncols = np.asarray(panel["values"], dtype=object).shape
    heat_w = min(max(ncols * CELL_IN, HEAT_MIN_IN), HEAT_MAX_IN)
    heat_h = min(max(nrows * CELL_IN, HEAT_MIN_IN), HEAT_MAX_IN)
    row_chars = max((len(s) for s in tick_labels(panel["row_labels"])), default=1)
    col_chars = max((len(s) for s in tick_labels(panel["col_labels"])), default=1)
    line_in = 1.3 * TICK_FONT / PT_PER_IN
    col_cell = heat_w / max(ncols, 1)
    # Short column labels stay horizontal when they fit; anything else is turned 45 degrees.
    col_rotation = 0 if text_in(col_chars, TICK_FONT) + 0.05 <= col_cell else 45
    if col_rotation:
        col_spacing = line_in / math.sin(math.radians(col_rotation))
        col_label_h = text_in(col_chars, TICK_FONT) * math.sin(math.radians(col_rotation)) + line_in
        col_step = _tick_step(ncols, col_cell, col_spacing)
    else:
        col_label_h = line_in
        col_step = 1
    row_step = _tick_step(nrows, heat_h / max(nrows, 1), line_in)
    row_label_w = text_in(row_chars, TICK_FONT)
    axis_line = 1.4 * AXIS_FONT / PT_PER_IN
    colorbar_w = COLORBAR_W_IN + 0.6  # bar, gap and tick labels
    title_h = 1.6 * TITLE_FONT / PT_PER_IN
    width = heat_w + row_label_w + 2 * axis_line + colorbar_w + 0.3
    height = heat_h + col_label_h + 3 * axis_line + title_h + 0.3
    return Geometry(heat_w=heat_w, heat_h=heat_h, width=min(width, PANEL_MAX_W_IN),
                     height=min(height, PANEL_MAX_H_IN), col_rotation=col_rotation,
                     row_step=row_step, col_step=col_step)


def _round_up(x: float, step: float = SIZE_STEP) -> float:
    """Round ``x`` up to a multiple of ``step`` (exact in binary floating point for step 0.5)."""
    return math.ceil(x / step - 1e-9) * step


def figure_size(panels: list[Panel], title: str | None = None) -> tuple[float, float]:
    """Figure size in inches: panels side by side, the tallest panel sets the height.

    Parameters
    ----------
    panels : list of Panel
        Panels as accepted by :func:`save_heatmaps`.
    title : str or None
        Figure title; adds a line of height when given.

    Returns
    -------
    (float, float)
        Width and height in inches, each a multiple of ``SIZE_STEP`` so that
        ``size * PNG_DPI`` is a whole number of pixels.
    """
    geoms = [geometry(p) for p in panels]
    width = min(sum(g.width for g in geoms), FIGURE_MAX_W_IN)
    height = max(g.height for g in geoms)
    if title:
        height += 2.0 * TITLE_FONT / PT_PER_IN
    return _round_up(width), _round_up(height)


def wrap(text: str, width_in: float, font: float) -> str:
    """Wrap an axis label to lines that fit in ``width_in`` inches.

    Lines break after spaces and after ``/ _ . :`` so file and layer names split at
    natural points; a piece longer than a line is cut.
    """
    chars = max(12, int(width_in / text_in(1, font)))
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
