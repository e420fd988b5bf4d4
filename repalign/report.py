"""Renderers: table, json, csv and markdown, all from one result object."""

from __future__ import annotations

import csv
import io
import json

from repalign.results import ComparisonResult, InputInfo, MatrixResult, MetricResult
from repalign.text import shown

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


def _cell(x):
    """A CSV cell: empty for None, full precision for floats."""
    return "" if x is None else repr(x) if isinstance(x, float) else x


def _baseline_raw(result: ComparisonResult, name: str) -> tuple:
    row = next((r for r in result.baseline.rows if r.metric == name), None) if result.baseline else None
    return (None, None) if row is None else (row.old, row.diff)


def _shape(info: InputInfo) -> str:
    return "×".join(str(s) for s in info.shape) + f" {info.dtype}"


def _params(m: MetricResult) -> str:
    p = m.params
    text = f"k={p['k']}, {p['distance']}" if "k" in p else \
        ", ".join(str(v) for key, v in p.items() if not key.startswith("layer_"))
    layers = [f"{side} layer {p[f'layer_{side}']}" for side in ("a", "b") if f"layer_{side}" in p]
    return text + (f"; best pair: {', '.join(layers)}" if layers else "")


def _layers_of(info: InputInfo) -> str:
    return "" if info.layers is None else f" ({len(info.layers)} layers)"


def heatmap(result: ComparisonResult, metric: str):
    """A rich table of one metric over all layer pairs; cells keep their numbers and are coloured by value."""
    from rich.table import Table
    from rich.text import Text

    sw = result.sweep
    m = result.metric(metric)
    lo, hi = m.range
    best = sw.best[metric]
    t = Table(show_edge=False, header_style="bold", pad_edge=False, padding=(0, 1))
    t.add_column("a \\ b", no_wrap=True, style="bold")
    for label in sw.layers_b:
        t.add_column(_short(label), justify="right", no_wrap=True)
    for i, row in enumerate(sw.cells[metric]):
        cells = []
        for j, c in enumerate(row):
            mark = "*" if best == (i, j) else " "
            if c.value is None:
                cells.append("—")
                continue
            share = 0.0 if hi <= lo else min(max((c.value - lo) / (hi - lo), 0.0), 1.0)
            cells.append(Text(f"{c.value:.3f}{mark}", style=_colour(share)))
        t.add_row(_short(sw.layers_a[i]), *cells)
    return t


def _short(label: str, width: int = 12) -> str:
    """Layer labels from globs can be long keys; keep their informative end."""
    label = shown(label)
    return label if len(label) <= width else "…" + label[-(width - 1):]


def _colour(share: float) -> str:
    """A background from dark blue (low) to yellow (high), with readable text."""
    stops = [(0.0, (49, 54, 149)), (0.5, (116, 173, 209)), (1.0, (254, 224, 144))]
    for (s0, c0), (s1, c1) in zip(stops, stops[1:]):
        if share <= s1:
            f = 0.0 if s1 == s0 else (share - s0) / (s1 - s0)
            r, g, b = (round(x0 + f * (x1 - x0)) for x0, x1 in zip(c0, c1))
            break
    text = "black" if share > 0.35 else "white"
    return f"{text} on rgb({r},{g},{b})"


def sweep_lines(result: ComparisonResult) -> list[str]:
    """For each metric: the best layer of b for every layer of a, and the other way round."""
    sw = result.sweep
    lines = []
    for metric in sw.cells:
        rb = sw.row_best(metric)
        cb = sw.col_best(metric)
        a = ", ".join(f"{sw.layers_a[i]}→{sw.layers_b[j]}" for i, j in enumerate(rb) if j is not None)
        b = ", ".join(f"{sw.layers_b[j]}→{sw.layers_a[i]}" for j, i in enumerate(cb) if i is not None)
        if len(sw.layers_b) > 1:
            lines.append(f"{metric}: best layer of b for each layer of a: {a}")
        if len(sw.layers_a) > 1:
            lines.append(f"{metric}: best layer of a for each layer of b: {b}")
    return [shown(line) for line in lines]


def _notes(result: ComparisonResult) -> list[str]:
    out = [f"{m.name}: {m.reason}" for m in result.metrics if m.value is None and m.reason]
    return [shown(note) for note in out + list(result.notes)]


def _uncertainty_line(result: ComparisonResult) -> str:
    u = result.uncertainty
    if u is None:  # a hand-built result, or a document with "uncertainty": null
        return "intervals and p-values not computed"
    metrics = [m for _, m in _pairs(result)] if isinstance(result, MatrixResult) else result.metrics
    methods = sorted({m.ci_method.split(",")[0] for m in metrics if m.ci_method})
    ci = f"{u.resamples} resamples ({', '.join(methods)})" if u.resamples else "intervals off"
    if any(m.ci_method and "Bonferroni" in m.ci_method for m in metrics):
        ci += "; intervals of best layer pairs Bonferroni-widened over the pairs"
    used = sorted({m.permutations for m in metrics if m.permutations}, reverse=True)
    perms = " or ".join(str(x) for x in used) if used else str(u.permutations if not metrics else 0)
    return f"{ci}; {perms} permutations; seed {u.seed}"


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
        if result.sweep is not None and result.sweep.best.get(m.name) is not None:
            pairs = len(result.sweep.layers_a) * len(result.sweep.layers_b)
            text += (f" This is the best of {pairs} layer pairs: the max is inflated by choosing it, so its interval"
                     f" is widened to hold for all {pairs} pairs at once and its p-value compares it with the max"
                     " over all pairs under each permutation; chance and z are those of the chosen pair alone.")
        if m.name == "cka" and m.chance is not None and m.chance > 0.05:
            text += (f" Warning: d is comparable to n, so biased CKA is inflated (unrelated data would score"
                     f" {m.chance:.3f} on average); cka-unbiased does not have this bias.")
        lines.append(text)
    return lines


def to_json(result: ComparisonResult) -> str:
    """One JSON document; NaN can never appear (undefined values are null with a reason)."""
    from repalign.text import clean_tree

    # Names keep their exact text, but undecodable bytes of a file name become the text \\xff: valid UTF-8.
    return json.dumps(clean_tree(result.to_dict()), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


CSV_COLUMNS = ["metric", "value", "ci_low", "ci_high", "ci_method", "chance", "null_sd", "z", "p_value",
               "calibrated", "permutations", "k", "distance", "estimator", "n", "a", "b", "preprocessing",
               "confidence", "resamples", "seed", "check", "baseline", "diff", "reason"]


SWEEP_CSV_COLUMNS = ["layer_a", "layer_b", "metric", "value", "chance", "null_sd", "z", "best", "ci_low", "ci_high",
                     "ci_method", "p_value", "calibrated", "k", "distance", "estimator", "n", "a", "b",
                     "preprocessing", "check"]


def _csv(columns: list[str], rows) -> str:
    """CSV text with a header; None is an empty cell and floats keep full precision."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows([_cell(x) for x in row] for row in rows)
    return buf.getvalue()


def _sweep_csv(result: ComparisonResult) -> str:
    """Long form: one row per (layer of a, layer of b, metric); the best pair's row carries its interval."""
    a, b = result.inputs
    sw = result.sweep
    rows = []
    for m in result.metrics:
        best = sw.best[m.name]
        for i, row in enumerate(sw.cells[m.name]):
            for j, c in enumerate(row):
                top = best == (i, j)
                extra = [m.ci_low, m.ci_high, m.ci_method, m.p_value, m.calibrated] if top else [None] * 5
                rows.append([sw.layers_a[i], sw.layers_b[j], m.name, c.value, c.chance, c.null_sd, c.z,
                             "true" if top else "false", *extra, m.params.get("k"), m.params.get("distance"),
                             m.params.get("estimator"), result.n, a.name, b.name, result.preprocessing.describe(),
                             _check_mark(result, m.name).lower() if top else None])
    return _csv(SWEEP_CSV_COLUMNS, rows)


def to_csv(result: ComparisonResult) -> str:
    """One row per metric, full precision; for a layer sweep, one row per layer pair and metric."""
    if isinstance(result, MatrixResult):
        return _matrix_csv(result)
    if result.sweep is not None:
        return _sweep_csv(result)
    a, b = result.inputs
    u = result.uncertainty
    rows = [[m.name, m.value, m.ci_low, m.ci_high, m.ci_method, m.chance, m.null_sd, m.z, m.p_value, m.calibrated,
             m.permutations, m.params.get("k"), m.params.get("distance"), m.params.get("estimator"), result.n,
             a.name, b.name, result.preprocessing.describe(), None if u is None else u.confidence,
             None if u is None else u.resamples, None if u is None else u.seed,
             _check_mark(result, m.name).lower(), *_baseline_raw(result, m.name), m.reason or m.ci_reason]
            for m in result.metrics]
    return _csv(CSV_COLUMNS, rows)


def to_markdown(result: ComparisonResult) -> str:
    """A table ready to paste into a pull request."""
    if isinstance(result, MatrixResult):
        return _matrix_markdown(result)
    a, b = result.inputs
    lines = [
        f"**repalign {result.version}** · n = {result.n} · preprocessing: {result.preprocessing.describe()}",
        "",
        f"- a: `{shown(a.name)}` ({_shape(a)})",
        f"- b: `{shown(b.name)}` ({_shape(b)})",
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
    if result.sweep is not None:
        sw = result.sweep
        for name, grid in sw.cells.items():
            best = sw.best[name]
            lines += ["", f"**{name}** by layer pair (rows: a, columns: b; **bold** = best)", "",
                      "| a \\ b | " + " | ".join(map(shown, sw.layers_b)) + " |", "|---|" + "---:|" * len(sw.layers_b)]
            for i, row in enumerate(grid):
                cells = [("—" if c.value is None else f"**{c.value:.3f}**" if best == (i, j) else f"{c.value:.3f}")
                         for j, c in enumerate(row)]
                lines.append(f"| {shown(sw.layers_a[i])} | " + " | ".join(cells) + " |")
    lines += [f"- {'✅' if c.passed else '❌'} {c.message}" for c in result.checks]
    lines += [f"> {note}" for note in _notes(result)]
    return "\n".join(lines) + "\n"


def table(result: ComparisonResult, explain: bool = False):
    """A rich renderable for terminals."""
    if isinstance(result, MatrixResult):
        return _matrix_table(result, explain)
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_column(style="dim")
    for info in result.inputs:
        head.add_row(shown(info.label), shown(info.name), _shape(info) + _layers_of(info))
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
    parts = [head, Text("")]
    if result.sweep is not None:
        for name in result.sweep.cells:
            parts += [Text(f"{name} by layer pair (rows: layers of a, columns: layers of b; * = best)", style="bold"),
                      heatmap(result, name), Text("")]
        parts += [Text(line, style="dim") for line in sweep_lines(result)] + [Text("")]
    parts += [t, Text(CHANCE_NOTE + ".", style="dim")]
    if result.uncertainty is not None:
        parts.append(Text(_uncertainty_line(result), style="dim"))
    # Undefined values are part of the result; other notes go to stderr as warnings (see cli).
    parts += [Text(shown(f"{m.name}: {m.reason}"), style="yellow") for m in result.metrics if m.value is None]
    if explain:
        parts.append(Text(""))
        parts += [Text(line) for line in explain_lines(result)]
    return Group(*parts)


def to_text(result: ComparisonResult, width: int = 120, explain: bool = False) -> str:
    """The table as plain text (no colour), e.g. for tests and logs."""
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, markup=False, emoji=False,
                      highlight=False)
    console.print(table(result, explain=explain))
    return buf.getvalue()


RENDERERS = {"json": to_json, "csv": to_csv, "markdown": to_markdown, "table": to_text}
SUFFIXES = {".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown", ".txt": "table"}


def output_format(path: str) -> str:
    """The report format that ``--output``'s suffix names; any other suffix is a UsageError."""
    from pathlib import Path

    from repalign.errors import UsageError
    from repalign.text import shown

    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(f"{shown(path)}: --output writes {', '.join(SUFFIXES)} (got '{shown(suffix) or '(none)'}')")
    return SUFFIXES[suffix]


def write(result: ComparisonResult, path: str) -> str:
    """Write the report atomically to a file in the format its suffix names; returns the format."""
    from repalign.safe_write import write_atomic
    from repalign.text import valid_unicode

    fmt = output_format(path)
    write_atomic(path, valid_unicode(RENDERERS[fmt](result)).encode("utf-8"), "the report")
    return fmt


def plot_panels(result) -> list[dict]:
    """The heatmap panels of a sweep or a matrix, for :func:`repalign.plot.save_heatmaps`."""
    from repalign.results import MatrixResult

    panels = []
    if isinstance(result, MatrixResult):
        names = [i.name for i in result.inputs]
        for metric in result.metric_names:
            grid = result.grid(metric)
            if result.reference is not None:
                rows, cols = [names[result.reference]], [names[j] for j in result.order]
                grid = [[grid[result.reference][j] for j in result.order]]
            else:
                rows = cols = names
            rng = result.range(metric)
            panels.append({"title": metric, "values": grid, "row_labels": rows, "col_labels": cols,
                           "row_axis": "reference" if result.reference is not None else "input",
                           "col_axis": "input", "vmin": rng[0], "vmax": rng[1], "annotate": True})
        return [_plain_labels(p) for p in panels]
    sw = result.sweep
    a, b = result.inputs
    for m in result.metrics:
        panels.append({"title": m.name, "values": [[c.value for c in row] for row in sw.cells[m.name]],
                       "row_labels": list(sw.layers_a), "col_labels": list(sw.layers_b),
                       "row_axis": f"layer of a ({a.name})", "col_axis": f"layer of b ({b.name})",
                       "vmin": m.range[0], "vmax": m.range[1], "best": sw.best[m.name], "annotate": True})
    return [_plain_labels(p) for p in panels]


def _plain_labels(panel: dict) -> dict:
    """Labels as they are shown everywhere else: one line, undecodable bytes as \\xff (SVG/PDF need valid text)."""
    for key in ("row_labels", "col_labels"):
        panel[key] = [shown(x) for x in panel[key]]
    for key in ("row_axis", "col_axis"):
        panel[key] = shown(panel[key])
    return panel


# ---------------------------------------------------------------- matrix reports

MATRIX_CSV_COLUMNS = ["a", "b", "metric", "value", "ci_low", "ci_high", "ci_method", "chance", "null_sd", "z",
                      "p_value", "calibrated", "permutations", "layer_a", "layer_b", "k", "distance", "estimator",
                      "n", "preprocessing", "check", "reason"]


def _pairs(result: MatrixResult):
    """(cell, metric result) in report order: the cells, then the diagonal."""
    for c in result.cells + result.diagonal:
        for m in c.metrics:
            yield c, m


def _cell_check(result: MatrixResult, c, name: str) -> str:
    mine = [x for x in result.checks if x.metric == name and x.pair == (c.a, c.b)]
    if not mine:
        return ""
    return "pass" if all(x.passed for x in mine) else "FAIL"


def _matrix_csv(result: MatrixResult) -> str:
    """Long form: one row per (input, input, metric)."""
    rows = [[result.inputs[c.a].name, result.inputs[c.b].name, m.name, m.value, m.ci_low, m.ci_high, m.ci_method,
             m.chance, m.null_sd, m.z, m.p_value, m.calibrated, m.permutations, m.params.get("layer_a"),
             m.params.get("layer_b"), m.params.get("k"), m.params.get("distance"), m.params.get("estimator"),
             result.n, result.preprocessing.describe(), _cell_check(result, c, m.name).lower(),
             m.reason or m.ci_reason]
            for c, m in _pairs(result)]
    return _csv(MATRIX_CSV_COLUMNS, rows)


def _matrix_rows(result: MatrixResult) -> list[tuple]:
    """(a name, b name, metric result, check mark) for the pairs, in report order."""
    return [(result.inputs[c.a].name, result.inputs[c.b].name, m, _cell_check(result, c, m.name))
            for c in result.cells for m in c.metrics]


def _matrix_markdown(result: MatrixResult) -> str:
    lines = [f"**repalign {result.version}** · matrix of {len(result.inputs)} inputs · n = {result.n} · "
             f"preprocessing: {result.preprocessing.describe()}", ""]
    lines += [f"- {shown(i.label)}: `{shown(i.name)}` ({_shape(i)}{_layers_of(i)})" for i in result.inputs]
    names = [shown(i.name) for i in result.inputs]
    for metric in result.metric_names:
        grid = result.grid(metric)
        lines += ["", f"**{metric}**", ""]
        if result.reference is not None:
            lines += [f"| input | {metric} vs `{names[0]}` |", "|---|---:|"]
            lines += [f"| `{names[j]}` | {_num(grid[0][j])} |" for j in result.order]
        else:
            lines += ["| | " + " | ".join(shown(i.label) for i in result.inputs) + " |",
                      "|---|" + "---:|" * len(names)]
            lines += [f"| {shown(result.inputs[p].label)} | " + " | ".join(_num(v, 3) for v in row) + " |"
                      for p, row in enumerate(grid)]
    head = f"| a | b | metric | score | {_level(result)} | chance ± sd | z | p | parameters |"
    rule = "|---|---|---|---:|---|---:|---:|---:|---|"
    if result.checks:
        head += " check |"
        rule += ":---:|"
    lines += ["", head, rule]
    for a, b, m, mark in _matrix_rows(result):
        row = (f"| `{shown(a)}` | `{shown(b)}` | {m.name} | {_num(m.value)} | {_ci(m)} | {_chance(m)} | {_z(m)} | "
               f"{_p(m)} | {_params(m)} |")
        if result.checks:
            row += f" {'✅ pass' if mark == 'pass' else '❌ FAIL' if mark else ''} |"
        lines.append(row)
    lines += ["", f"_{CHANCE_NOTE}. {_uncertainty_line(result)}._"]
    lines += [f"- ❌ {c.message}" for c in result.checks if not c.passed]
    lines += [f"> {shown(note)}" for note in result.notes]
    return "\n".join(lines) + "\n"


def _matrix_heatmap(result: MatrixResult, metric: str):
    from rich.table import Table
    from rich.text import Text

    grid = result.grid(metric)
    lo, hi = result.range(metric)
    t = Table(show_edge=False, header_style="bold", pad_edge=False, padding=(0, 1))
    t.add_column("", no_wrap=True, style="bold")
    cols = result.order if result.reference is not None else range(len(result.inputs))
    rows = [0] if result.reference is not None else range(len(result.inputs))
    for j in cols:
        t.add_column(shown(result.inputs[j].label), justify="right", no_wrap=True)
    for p in rows:
        cells = []
        for q in cols:
            v = grid[p][q]
            if v is None:
                cells.append("—")
            else:
                share = 0.0 if hi <= lo else min(max((v - lo) / (hi - lo), 0.0), 1.0)
                cells.append(Text(f"{v:.3f}", style=_colour(share)))
        t.add_row(shown(result.inputs[p].label), *cells)
    return t


def _matrix_table(result: MatrixResult, explain: bool = False):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_column(style="dim")
    for i, info in enumerate(result.inputs):
        tag = " (reference)" if result.reference == i else ""
        head.add_row(shown(info.label), shown(info.name) + tag, _shape(info) + _layers_of(info))
    head.add_row("n", f"{result.n} paired items", "")
    if result.pairing is not None and (result.pairing.by != "row" or result.pairing.max_rows is not None):
        text = f"by id: {result.pairing.paired} items present in every input"
        if result.pairing.max_rows is not None:
            text += f"; a random {result.pairing.max_rows} of them (seed {result.pairing.subsample_seed})"
        head.add_row("pairs", text, "")
    head.add_row("prep", result.preprocessing.describe(), "")
    parts = [head, Text("")]
    for metric in result.metric_names:
        title = f"{metric} against input {result.inputs[0].label}, best first" if result.reference is not None \
            else f"{metric} for every pair of inputs"
        parts += [Text(title, style="bold"), _matrix_heatmap(result, metric), Text("")]
    t = Table(show_edge=False, header_style="bold")
    for col, just in (("a", "left"), ("b", "left"), ("metric", "left"), ("score", "right"), (_level(result), "left"),
                      ("chance ± sd", "right"), ("z", "right"), ("p", "right"), ("parameters", "left")):
        t.add_column(col, justify=just, no_wrap=True)
    if result.checks:
        t.add_column("check", no_wrap=True)
    for c in result.cells:
        for m in c.metrics:
            mark = _cell_check(result, c, m.name)
            cells = [shown(result.inputs[c.a].label), shown(result.inputs[c.b].label), m.name, _num(m.value), _ci(m),
                     _chance(m), _z(m), _p(m), _params(m)] + ([mark] if result.checks else [])
            t.add_row(*cells, style="bold red" if mark == "FAIL" else None)
    parts += [t, Text(CHANCE_NOTE + ".", style="dim")]
    if result.uncertainty is not None:
        parts.append(Text(_uncertainty_line(result), style="dim"))
    return Group(*parts)
