"""Terminal tables at 60, 80 and 120 columns: every score, interval and heatmap number in full, no line too long."""

import json
import re
from collections import Counter

import numpy as np
import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from repalign.cli import app
from repalign.results import ComparisonResult, MatrixResult

runner = CliRunner()
WIDTHS = (60, 80, 120)
FAST = ("-B", "30", "-P", "20", "--seed", "1")
ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
HEAT = re.compile(r"-?\d+\.\d{3}(?!\d)")
"""A heatmap cell (3 decimals); the metric table's numbers have 4 and do not match."""


def terminal(width, **extra):
    """What the CLI sees on a terminal of ``width`` columns; rich takes FORCE_COLOR as "this is a terminal"."""
    return {"FORCE_COLOR": "1", "NO_COLOR": "1", "COLUMNS": str(width), "TTY_COMPATIBLE": None, **extra}


def run(*args, env):
    return runner.invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("width")
    rng = np.random.default_rng(0)
    base = rng.normal(size=(120, 6))

    def view(dim, noise=1.0):
        return base @ rng.normal(size=(6, dim)) + noise * rng.normal(size=(120, dim))

    for name, dim in (("a", 16), ("b", 12), ("c", 10)):
        np.save(d / f"{name}.npy", view(dim))
    # Sweeps with more layers than fit side by side in 120 columns (13 × 11 heatmaps).
    np.save(d / "la.npy", np.stack([view(16, i + 1) for i in range(13)], axis=1))
    np.save(d / "lb.npy", np.stack([view(12, i + 1) for i in range(11)], axis=1))
    # Long layer names make the best-pair parameters long, as with real model keys.
    layers = {f"model.encoder.layers.{i}.output.last_hidden_state": view(16, i + 1) for i in range(3)}
    np.savez(d / "long.npz", **layers, **{"x" * 90: view(8)})
    r = run("compare", d / "a.npy", d / "b.npy", *FAST, "-f", "json", env={})
    assert r.exit_code == 0, r.stderr
    (d / "base.json").write_text(r.stdout)
    return d


CASES = {
    "compare": lambda d: ["compare", d / "a.npy", d / "b.npy"],
    "explain": lambda d: ["compare", d / "a.npy", d / "b.npy", "-m", "mknn,cka,cka-unbiased", "--explain"],
    "baseline": lambda d: ["compare", d / "a.npy", d / "c.npy", "--baseline", d / "base.json",
                           "--max-drop", "mknn=0.01", "--fail-under", "cka=0.2"],
    "sweep": lambda d: ["compare", d / "la.npy", d / "lb.npy", "-m", "mknn,cka"],
    "long-sweep": lambda d: ["compare", f"{d / 'long.npz'}:model.*", d / "b.npy", "-m", "mknn,cka,cka-unbiased"],
    "matrix": lambda d: ["matrix", d / "a.npy", d / "b.npy", d / "c.npy", "--fail-under", "mknn=0.3"],
    "reference": lambda d: ["matrix", d / "b.npy", d / "c.npy", "--reference", d / "a.npy"],
}


def expected(result):
    """(lines: tuples of strings one line must hold, in order), (heatmap cells as a multiset)."""
    if isinstance(result, ComparisonResult):
        rows = [((m.name,), m) for m in result.metrics]
        heat = [v for name in (result.sweep.cells if result.sweep else ()) for row in result.sweep.values(name)
                for v in row]
    else:
        labels = [i.label for i in result.inputs]
        rows = [((labels[c.a], labels[c.b], m.name), m) for c in result.cells for m in c.metrics]
        grids = [result.grid(name) for name in result.metric_names]
        if result.reference is None:
            heat = [v for g in grids for row in g for v in row]
        else:
            heat = [g[result.reference][j] for g in grids for j in result.order]
    # Every metric here has a value and an interval, so no row is checked against a dash.
    assert rows and all(m.value is not None and m.ci_low is not None and m.ci_high is not None for _, m in rows)
    lines = [(*who, f"{m.value:.4f}", f"[{m.ci_low:.4f}, {m.ci_high:.4f}]") for who, m in rows]
    if isinstance(result, ComparisonResult) and result.baseline is not None:
        lines += [(r.metric, f"{r.old:.4f}", f"{r.diff:+.4f}") for r in result.baseline.rows]
    return lines, Counter(f"{v:.3f}" for v in heat if v is not None)


def holds(line, parts):
    at = 0
    for part in parts:
        at = line.find(part, at)
        if at < 0:
            return False
        at += len(part)
    return True


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("kind", CASES)
def test_every_number_in_full(data, tmp_path, kind, width):
    report = tmp_path / "r.json"
    r = run(*CASES[kind](data), *FAST, "--output", report, env=terminal(width))
    assert r.exit_code in (0, 1), r.stderr
    doc = json.loads(report.read_text())
    result = MatrixResult.from_dict(doc) if doc.get("kind") == "matrix" else ComparisonResult.from_dict(doc)
    text = r.stdout
    assert "\x1b" not in text
    lines = text.splitlines()
    assert max(cell_len(line) for line in lines) <= width
    must, heat = expected(result)
    for parts in must:
        assert any(holds(line, parts) for line in lines), (parts, text)
    assert not heat - Counter(HEAT.findall(text)), text


@pytest.mark.parametrize("width", WIDTHS)
def test_inspect_keys_fold_and_shapes_stay_whole(data, width):
    r = run("inspect", data / "long.npz", env=terminal(width))
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= width and "…" not in r.stdout
    assert "120×16" in r.stdout and "120×8" in r.stdout
    keys = "".join(line.split("│")[0].strip() for line in lines if "│" in line)
    for i in range(3):
        assert f"model.encoder.layers.{i}.output.last_hidden_state" in keys
    assert "x" * 90 in keys


def test_narrow_terminal_says_what_it_left_out(data):
    r = run(*CASES["compare"](data), *FAST, env=terminal(60))
    assert "z ┃" not in r.stdout and "p, z" in r.stdout and "left out to fit 60 columns" in r.stdout
    assert "mknn parameters: k=10, cosine" in r.stdout


def test_piped_output_is_120_columns_whatever_the_terminal_says(data):
    """Off a terminal (a pipe, a file) the report is laid out for 120 columns, as before."""
    args = [*CASES["sweep"](data), *FAST]
    piped = run(*args, env={"COLUMNS": "60", "NO_COLOR": "1", "FORCE_COLOR": None, "TTY_COMPATIBLE": None})
    wide = run(*args, env=terminal(120))
    assert piped.stdout == wide.stdout and max(cell_len(line) for line in piped.stdout.splitlines()) > 80


def test_colour_changes_no_character(data):
    """With colour the same text is laid out (escape codes take no columns); NO_COLOR leaves no escape code."""
    args = [*CASES["sweep"](data), *FAST]
    coloured = run(*args, env=terminal(80, NO_COLOR=None))
    plain = run(*args, env=terminal(80))
    assert "\x1b[" in coloured.stdout and "\x1b" not in plain.stdout
    assert ESCAPE.sub("", coloured.stdout) == plain.stdout


def test_ascii_terminal_fits_too(data):
    """ASCII output widens some cells (± becomes +/-); the fitting measures the converted table."""
    args = [str(a) for a in (*CASES["baseline"](data), *FAST)]
    r = CliRunner(charset="ascii").invoke(app, args, env=terminal(60))
    assert r.exit_code in (0, 1), r.stderr
    assert "+/-" in r.stdout and r.stdout.isascii() and max(len(line) for line in r.stdout.splitlines()) <= 60
