"""Renderers: table, json, csv and markdown, all from one result object."""

from __future__ import annotations

import csv
import io
import json

from repalign.results import ComparisonResult, InputInfo, MetricResult

FORMATS = ("table", "json", "csv", "markdown")

CHANCE_NOTE = ("chance = mean score when the items of one side are paired at random "
               "(mknn: k/(n−1); cka: exact permutation mean; cka-unbiased: 0)")


def _num(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _shape(info: InputInfo) -> str:
    return "×".join(str(s) for s in info.shape) + f" {info.dtype}"


def _params(m: MetricResult) -> str:
    p = m.params
    if "k" in p:
        return f"k={p['k']}, {p['distance']}"
    return ", ".join(str(v) for v in p.values())


def _notes(result: ComparisonResult) -> list[str]:
    out = [f"{m.name}: {m.reason}" for m in result.metrics if m.value is None and m.reason]
    return out + list(result.notes)


def to_json(result: ComparisonResult) -> str:
    """One JSON document; NaN can never appear (undefined values are null with a reason)."""
    return json.dumps(result.to_dict(), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def to_csv(result: ComparisonResult) -> str:
    """One row per metric, full precision."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["metric", "value", "chance", "k", "distance", "estimator", "n", "a", "b", "preprocessing", "reason"])
    a, b = result.inputs
    for m in result.metrics:
        w.writerow([m.name, "" if m.value is None else repr(m.value), "" if m.chance is None else repr(m.chance),
                    m.params.get("k", ""), m.params.get("distance", ""), m.params.get("estimator", ""),
                    result.n, a.name, b.name, result.preprocessing.describe(), m.reason or ""])
    return buf.getvalue()


def to_markdown(result: ComparisonResult) -> str:
    """A table ready to paste into a pull request."""
    a, b = result.inputs
    lines = [
        f"**repalign {result.version}** · n = {result.n} · preprocessing: {result.preprocessing.describe()}",
        "",
        f"- a: `{a.name}` ({_shape(a)})",
        f"- b: `{b.name}` ({_shape(b)})",
        "",
        "| metric | score | chance | parameters |",
        "|---|---:|---:|---|",
    ]
    for m in result.metrics:
        lines.append(f"| {m.name} | {_num(m.value)} | {_num(m.chance)} | {_params(m)} |")
    lines += ["", f"_{CHANCE_NOTE}_"]
    lines += [f"> {note}" for note in _notes(result)]
    return "\n".join(lines) + "\n"


def table(result: ComparisonResult):
    """A rich renderable for terminals."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_column(style="dim")
    for info in result.inputs:
        head.add_row(info.label, info.name, _shape(info))
    head.add_row("n", f"{result.n} paired items", "")
    head.add_row("prep", result.preprocessing.describe(), "")

    t = Table(show_edge=False, header_style="bold")
    t.add_column("metric")
    t.add_column("score", justify="right", style="bold")
    t.add_column("chance", justify="right")
    t.add_column("parameters")
    for m in result.metrics:
        t.add_row(m.name, _num(m.value), _num(m.chance), _params(m))
    parts = [head, Text(""), t, Text(CHANCE_NOTE, style="dim")]
    # Undefined values are part of the result; other notes go to stderr as warnings (see cli).
    parts += [Text(f"{m.name}: {m.reason}", style="yellow") for m in result.metrics if m.value is None]
    return Group(*parts)


def to_text(result: ComparisonResult, width: int = 100) -> str:
    """The table as plain text (no colour), e.g. for tests and logs."""
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(table(result))
    return buf.getvalue()


RENDERERS = {"json": to_json, "csv": to_csv, "markdown": to_markdown, "table": to_text}
