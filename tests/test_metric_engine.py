"""The metric engine: a metric registered from inside a test runs through compare, sweep, matrix, every output
format and the checks, with no other file touched; the -m grammar; direction-aware bests and gates."""

from __future__ import annotations

import json
import math

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

from repalign import metrics
from repalign.cli import app
from repalign.errors import UsageError
from repalign.metrics import REGISTRY, MetricSpec, Param, Work, finish, parse_metrics
from repalign.metrics.spec import integer
from repalign.report.json import report_schema

runner = CliRunner()


def _norm_gap(a: np.ndarray, b: np.ndarray, power: int) -> float:
    """The toy metric's oracle: mean |‖a_i‖ − ‖b_i‖|^power (a distance: 0 = same row norms)."""
    return float(np.mean(np.abs(np.linalg.norm(a, axis=1) - np.linalg.norm(b, axis=1)) ** power))


def _toy_compute(p, params):
    value = _norm_gap(p.a, p.b, params["power"])
    return finish(p, TOY, params, value, shown=dict(params))


def _toy_null(p, params, perms):
    return np.array([_norm_gap(p.a, p.b[perm], params["power"]) for perm in perms])


TOY = MetricSpec("toy-gap", "row-norm gap", (0.0, math.inf), "mean gap between the two sides' row norms (a test)",
                 _toy_compute, higher_is_better=False,
                 params=(Param("power", 1, integer(1, 4), "exponent of the gap"),), work=Work(arrays=True),
                 permutation_null=_toy_null, cheap_null=True)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(REGISTRY, TOY.name, TOY)
    return TOY


def _json(result) -> dict:
    assert result.exit_code in (0, 1), result.output + str(result.exception)
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, report_schema())
    return doc


def test_toy_metric_in_compare_with_every_format(toy, write, rng, tmp_path):
    X = rng.standard_normal((60, 5))
    Y = X * rng.uniform(0.5, 1.5, (60, 1)) + 0.1 * rng.standard_normal((60, 5))
    a, b = write.npy(X, "a.npy"), write.npy(Y, "b.npy")
    doc = _json(runner.invoke(app, ["compare", a, b, "-m", "toy-gap:power=2,mknn", "-f", "json", "--seed", "1"]))
    (m,) = [m for m in doc["metrics"] if m["name"] == "toy-gap"]
    assert m["id"] == "toy-gap:power=2" and m["params"] == {"power": 2} and m["direction"] == "lower"
    assert m["value"] == pytest.approx(_norm_gap(X, Y, 2), rel=1e-12)
    assert m["range"] == [0.0, None]
    # Cheap null: permutations by default; a distance's p-value counts nulls at or below the observed value.
    null = _toy_null(type("P", (), {"a": X, "b": Y})(), {"power": 2}, [])  # empty: shape only
    assert null.size == 0 and m["permutations"] == 1000 and 0 < m["p_value"] <= 1
    assert m["ci_low"] is None and "no validated interval" in m["ci_reason"]
    for fmt in ("table", "csv", "markdown"):
        out = runner.invoke(app, ["compare", a, b, "-m", "toy-gap:power=2", "-f", fmt, "--seed", "1"])
        assert out.exit_code == 0 and "toy-gap:power=2" in out.stdout, (fmt, out.output)
    pytest.importorskip("matplotlib")
    png = tmp_path / "t.png"
    sweep3 = write.npy(np.stack([X, Y, 2 * Y], axis=1), "s.npy")
    out = runner.invoke(app, ["compare", sweep3, b, "-m", "toy-gap", "--plot", str(png), "--seed", "1"])
    assert out.exit_code == 0 and png.stat().st_size > 0, out.output


def test_toy_metric_sweep_picks_the_smallest_distance(toy, write, rng):
    X = rng.standard_normal((50, 4))
    layers = np.stack([3 * X, X + 0.01, 5 * X], axis=1)  # layer 1 has nearly X's row norms
    a, b = write.npy(layers, "layers.npy"), write.npy(X, "x.npy")
    doc = _json(runner.invoke(app, ["compare", a, b, "-m", "toy-gap", "-f", "json", "--seed", "2"]))
    values = [_norm_gap(layers[:, i], X, 1) for i in range(3)]
    sw = doc["sweep"]["metrics"]["toy-gap"]
    assert sw["direction"] == "lower" and sw["best"]["layer_a"] == "1"
    assert [row[0] for row in sw["value"]] == pytest.approx(values, rel=1e-12)
    (m,) = doc["metrics"]
    assert m["value"] == pytest.approx(min(values)) and m["params"]["layer_a"] == "1"
    # The best-pair p-value: the same permutation applied to every layer, the min taken (sweep default 200).
    assert m["permutations"] == 200 and m["p_value"] == pytest.approx(1 / 201)


def test_toy_metric_in_matrix_and_gates(toy, write, rng, tmp_path):
    X = rng.standard_normal((40, 3))
    paths = [write.npy(X * s, f"m{s}.npy") for s in (1, 2, 3)]
    out = runner.invoke(app, ["matrix", *paths, "-m", "toy-gap", "-f", "json", "--fail-above", "toy-gap=1.5",
                              "--seed", "3"])
    doc = _json(out)
    grid = doc["matrix"]["toy-gap"]
    norms = [np.linalg.norm(X * s, axis=1) for s in (1, 2, 3)]
    for i in range(3):
        for j in range(3):
            assert grid[i][j] == pytest.approx(float(np.mean(np.abs(norms[i] - norms[j]))), abs=1e-12)
    assert out.exit_code == 1  # 1 vs 3 is 2× the mean norm apart
    # --max-drop of a distance: a rise is the drop.
    base = tmp_path / "base.json"
    _ = runner.invoke(app, ["compare", paths[0], paths[1], "-m", "toy-gap", "-f", "json", "-o", str(base)])
    worse = runner.invoke(app, ["compare", paths[0], paths[2], "-m", "toy-gap", "--baseline", str(base),
                                "--max-drop", "toy-gap=0.01", "-f", "json"])
    (check,) = _json(worse)["checks"]
    assert worse.exit_code == 1 and not check["passed"] and "rise" in check["message"]
    better = runner.invoke(app, ["compare", paths[0], paths[0], "-m", "toy-gap", "--baseline", str(base),
                                 "--max-drop", "toy-gap=0.01", "-f", "json"])
    assert better.exit_code == 0


def test_metric_listing_comes_from_the_registry(toy):
    out = runner.invoke(app, ["metrics", "-f", "json"])
    names = [e["name"] for e in json.loads(out.stdout)]
    assert names == list(REGISTRY) and "toy-gap" in names
    out = runner.invoke(app, ["compare", "x", "y", "-m", "help"])
    assert out.exit_code == 0 and "toy-gap: row-norm gap" in out.stdout and "lower = more aligned" in out.stdout
    assert "toy-gap" in report_schema()["$defs"]["metric"]["properties"]["name"]["enum"]


@pytest.mark.parametrize("text, ids", [
    ("mknn", ["mknn"]),
    ("toy-gap:power=2,mknn", ["toy-gap:power=2", "mknn"]),
    ("mknn,toy-gap:power=2,cka", ["mknn", "toy-gap:power=2", "cka"]),
    ("toy-gap,toy-gap:power=1", ["toy-gap"]),  # the same parameters twice: one metric
    ("toy-gap,toy-gap:power=3", ["toy-gap", "toy-gap:power=3"]),  # different parameters: both kept
    (" MKNN , cka ", ["mknn", "cka"]),
])
def test_selection_grammar(toy, text, ids):
    choices = parse_metrics(text)
    assert [c.id for c in choices] == ids
    assert all(dict(c.params).keys() == {p.name for p in c.spec.params} for c in choices)


@pytest.mark.parametrize("text, message", [
    ("nope", "unknown metric 'nope'"),
    ("power=2", "comes before any metric name"),
    ("toy-gap:", "nothing after ':'"),
    ("toy-gap:colour=red", "has no parameter 'colour' (its parameters: power)"),
    ("toy-gap:power=9", "power=9: 9 is out of range"),
    ("toy-gap:power=x", "'x' is not a whole number"),
    ("toy-gap:power=2,power=3", "given twice"),
    ("toy-gap:power", "must be PARAM=VALUE"),
    ("mknn:k=3", "metric 'mknn' has no parameter 'k' (its parameters: none)"),
    (",", "no metric selected"),
])
def test_selection_errors(toy, text, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_metrics(text)


def test_every_metric_module_registers_one_spec():
    for name, spec in REGISTRY.items():
        assert spec.name == name and spec.description and spec.chance and spec.title
        assert spec.range[0] < spec.range[1]
        assert isinstance(spec.work, Work) and any(vars(spec.work).values()), name
    assert metrics.DEFAULT_METRICS == ("mknn", "cka")


def test_every_metric_in_a_sweep_and_a_matrix(write, rng):
    """Sweeps and matrices run every registered metric, each with its own max-over-pairs null."""
    n, d = 60, 12
    X = rng.standard_normal((n, d))
    layers = np.stack([X + s * rng.standard_normal((n, d)) for s in (0.3, 1.0, 3.0)], axis=1)
    a, b = write.npy(layers, "layers.npy"), write.npy(X, "x.npy")
    every = ",".join(REGISTRY)
    out = runner.invoke(app, ["compare", a, b, "-m", every, "-f", "json", "--seed", "4", "-k", "5",
                              "--permutations", "30", "--resamples", "0"])
    doc = _json(out)
    assert out.exit_code == 0 and [m["name"] for m in doc["metrics"]] == list(REGISTRY)
    for m in doc["metrics"]:
        grid = doc["sweep"]["metrics"][m["id"]]
        values = [row[0] for row in grid["value"]]
        assert m["value"] == (max(values) if m["direction"] == "higher" else min(values)), m["id"]
        # Every metric has a permutation null, and the sweep's is the best over the three layers.
        assert m["permutations"] == 30 and 0 < m["p_value"] <= 1, m["id"]
    out = runner.invoke(app, ["matrix", a, b, write.npy(2 * X, "x2.npy"), "-m", every, "-f", "json",
                              "--seed", "4", "-k", "5", "--resamples", "0", "--permutations", "0"])
    doc = _json(out)
    assert out.exit_code == 0 and doc["metrics"] == list(REGISTRY)
    for name in REGISTRY:
        grid = doc["matrix"][name]
        assert grid[1][2] is not None, name
        if REGISTRY[name].symmetric is True:
            assert grid[2][1] == grid[1][2], name
