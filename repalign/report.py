"""Renderers: table, json, csv and markdown, all from one result object."""

from __future__ import annotations

import csv
import io
import json

from repalign.results import ComparisonResult, InputInfo, MetricResult

FORMATS = ("table", "json", "csv", "markdown")

CHANCE_NOTE = ("chance ± sd = mean and standard deviation of the score when the items of one side are paired "
               "at random (exact); z = (score − chance)/sd; p from permutations")


def _num(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _ci(m: MetricResult) -> str:
    return "—" if m.ci_low is None else f"[{m.ci_low:.4f}, {m.ci_high:.4f}]"


def _chance(m: MetricResult) -> str:
    if m.chance is None:
        return "—"
    return _num(m.chance) if m.null_sd is None else f"{m.chance:.4f} ± {m.null_sd:.4f}"


def _z(m: MetricResult) -> str:
    return "—" if m.z is None else f"{m.z:.1f}"


def _p(m: MetricResult) -> str:
    return "—" if m.p_value is None else f"{m.p_value:.3g}"


def _level(result: ComparisonResult) -> str:
    u = result.uncertainty
    return f"{round(100 * u.confidence, 6):g}% CI" if u is not None else "CI"


def _check_mark(result: ComparisonResult, name: str) -> str:
    mine = [c for c in result.checks if c.metric == name]
    if not mine:
        return ""
    return "pass" if all(c.passed for c in mine) else "FAIL"


def _baseline_cells(result: ComparisonResult, name: str) -> tuple[str, str]:
    row = next((r for r in result.baseline.rows if r.metric == name), None) if result.baseline else None
    if row is None:
        return "—", "—"
    return _num(row.old), "—" if row.diff is None else f"{row.diff:+.4f}"


def _baseline_raw(result: ComparisonResult, name: str, cell) -> tuple:
    row = next((r for r in result.baseline.rows if r.metric == name), None) if result.baseline else None
    return ("", "") if row is None else (cell(row.old), cell(row.diff))


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


def _uncertainty_line(result: ComparisonResult) -> str:
    u = result.uncertainty
    if u is None:
        return ""
    methods = sorted({m.ci_method for m in result.metrics if m.ci_method})
    ci = f"{u.resamples} resamples ({', '.join(methods)})" if u.resamples else "intervals off"
    return f"{ci}; {u.permutations} permutations; seed {u.seed}"


def explain_lines(result: ComparisonResult) -> list[str]:
    """One plain-language line per metric: distance from chance, whether the interval excludes it, warnings."""
    lines = []
    for m in result.metrics:
        if m.value is None:
            lines.append(f"{m.name}: undefined: {m.reason}.")
            continue
        parts = [f"{m.name} = {m.value:.4f}"]
        if m.chance is not None:
            rel = f", {m.value / m.chance:.1f}× its chance level {m.chance:.4f}" if m.chance > 0 else \
                f", chance level {m.chance:.4f}"
            parts.append(rel)
        if m.z is not None:
            parts.append(f", {m.z:.1f} null standard deviations above chance" if m.z >= 0
                         else f", {-m.z:.1f} null standard deviations below chance")
        if m.p_value is not None:
            parts.append(f" (permutation p = {m.p_value:.3g} from {m.permutations})")
        text = "".join(parts) + "."
        if m.ci_low is not None and m.chance is not None:
            if m.ci_low > m.chance:
                text += f" The {_level(result)} {_ci(m)} excludes chance."
            else:
                text += f" The {_level(result)} {_ci(m)} does not exclude chance: no evidence of agreement" \
                        " beyond random pairing."
        elif m.ci_reason:
            text += f" No interval: {m.ci_reason}."
        if m.name == "mknn" and m.chance is not None and m.chance > 0.05:
            text += (f" Warning: k is large for n (chance level {m.chance:.3f}); mknn is only comparable"
                     " between runs with the same n and k.")
        if m.name == "cka" and m.chance is not None and m.chance > 0.05:
            text += (f" Warning: d is comparable to n, so biased CKA is inflated (unrelated data would score"
                     f" {m.chance:.3f} on average); cka-unbiased does not have this bias.")
        lines.append(text)
    return lines


def to_json(result: ComparisonResult) -> str:
    """One JSON document; NaN can never appear (undefined values are null with a reason)."""
    return json.dumps(result.to_dict(), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


CSV_COLUMNS = ["metric", "value", "ci_low", "ci_high", "ci_method", "chance", "null_sd", "z", "p_value",
               "calibrated", "permutations", "k", "distance", "estimator", "n", "a", "b", "preprocessing",
               "confidence", "resamples", "seed", "check", "baseline", "diff", "reason"]


def to_csv(result: ComparisonResult) -> str:
    """One row per metric, full precision."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    a, b = result.inputs
    u = result.uncertainty

    def cell(x):
        return "" if x is None else repr(x) if isinstance(x, float) else x

    for m in result.metrics:
        w.writerow([m.name, cell(m.value), cell(m.ci_low), cell(m.ci_high), cell(m.ci_method), cell(m.chance),
                    cell(m.null_sd), cell(m.z), cell(m.p_value), cell(m.calibrated), m.permutations,
                    m.params.get("k", ""), m.params.get("distance", ""), m.params.get("estimator", ""),
                    result.n, a.name, b.name, result.preprocessing.describe(),
                    "" if u is None else u.confidence, "" if u is None else u.resamples,
                    "" if u is None else u.seed, _check_mark(result, m.name).lower(),
                    *_baseline_raw(result, m.name, cell), m.reason or m.ci_reason or ""])
    return buf.getvalue()


def to_markdown(result: ComparisonResult) -> str:
    """A table ready to paste into a pull request."""
    a, b = result.inputs
    lines = [
        f"**repalign {result.version}** · n = {result.n} · preprocessing: {result.preprocessing.describe()}",
        "",
        f"- a: `{a.name}` ({_shape(a)})",
        f"- b: `{b.name}` ({_shape(b)})",
        *([f"- pairing: {result.pairing.describe()}"] if result.pairing is not None else []),
        "",
    ]
    head = f"| metric | score | {_level(result)} | chance ± sd | z | p | calibrated | parameters |"
    rule = "|---|---:|---|---:|---:|---:|---:|---|"
    if result.baseline is not None:
        head += " baseline | change |"
        rule += "---:|---:|"
    if result.checks:
        head += " check |"
        rule += ":---:|"
    lines += [head, rule]
    for m in result.metrics:
        row = (f"| {m.name} | {_num(m.value)} | {_ci(m)} | {_chance(m)} | {_z(m)} | {_p(m)} | "
               f"{_num(m.calibrated)} | {_params(m)} |")
        if result.baseline is not None:
            row += " {} | {} |".format(*_baseline_cells(result, m.name))
        if result.checks:
            mark = _check_mark(result, m.name)
            row += f" {'✅ pass' if mark == 'pass' else '❌ FAIL' if mark else ''} |"
        lines.append(row)
    lines += ["", f"_{CHANCE_NOTE}. {_uncertainty_line(result)}._"]
    lines += [f"- {'✅' if c.passed else '❌'} {c.message}" for c in result.checks]
    lines += [f"> {note}" for note in _notes(result)]
    return "\n".join(lines) + "\n"


def table(result: ComparisonResult, explain: bool = False):
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
    if result.pairing is not None and (result.pairing.by != "row" or result.pairing.max_rows is not None):
        head.add_row("pairs", result.pairing.describe(), "")
    head.add_row("prep", result.preprocessing.describe(), "")

    t = Table(show_edge=False, header_style="bold")
    t.add_column("metric", no_wrap=True)
    t.add_column("score", justify="right", style="bold", no_wrap=True)
    t.add_column(_level(result), no_wrap=True)
    t.add_column("chance ± sd", justify="right", no_wrap=True)
    t.add_column("z", justify="right", no_wrap=True)
    t.add_column("p", justify="right", no_wrap=True)
    t.add_column("parameters", no_wrap=True)
    if result.baseline is not None:
        t.add_column("baseline", justify="right", no_wrap=True)
        t.add_column("change", justify="right", no_wrap=True)
    if result.checks:
        t.add_column("check", no_wrap=True)
    for m in result.metrics:
        cells = [m.name, _num(m.value), _ci(m), _chance(m), _z(m), _p(m), _params(m)]
        if result.baseline is not None:
            cells += list(_baseline_cells(result, m.name))
        mark = _check_mark(result, m.name)
        if result.checks:
            cells.append(mark)
        t.add_row(*cells, style="bold red" if mark == "FAIL" else None)
    parts = [head, Text(""), t, Text(CHANCE_NOTE + ".", style="dim")]
    if result.uncertainty is not None:
        parts.append(Text(_uncertainty_line(result), style="dim"))
    # Undefined values are part of the result; other notes go to stderr as warnings (see cli).
    parts += [Text(f"{m.name}: {m.reason}", style="yellow") for m in result.metrics if m.value is None]
    if explain:
        parts.append(Text(""))
        parts += [Text(line) for line in explain_lines(result)]
    return Group(*parts)


def to_text(result: ComparisonResult, width: int = 120, explain: bool = False) -> str:
    """The table as plain text (no colour), e.g. for tests and logs."""
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(table(result, explain=explain))
    return buf.getvalue()


RENDERERS = {"json": to_json, "csv": to_csv, "markdown": to_markdown, "table": to_text}
SUFFIXES = {".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown", ".txt": "table"}


def write(result: ComparisonResult, path: str) -> str:
    """Write the report to a file in the format its suffix names (JSON for any other suffix)."""
    from pathlib import Path

    from repalign.errors import UsageError

    fmt = SUFFIXES.get(Path(path).suffix.lower(), "json")
    try:
        Path(path).write_text(RENDERERS[fmt](result), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the report ({exc.strerror or exc})") from None
    return fmt
