"""Renderers on hand-built and small real results, compared with the full expected text."""

import csv
import dataclasses
import io
import json
import re

import numpy as np
import pytest
from conftest import make_pair
from typer.testing import CliRunner

from repalign import checks, report
from repalign.cli import app
from repalign.pairing import Pairing
from repalign.preprocess import Preprocessing
from repalign.report import common
from repalign.results import (
    Baseline,
    BaselineRow,
    Check,
    ComparisonResult,
    InputInfo,
    MatrixCell,
    MatrixResult,
    MetricResult,
    Sweep,
    UncertaintySettings,
)

FAST = ["--resamples", "0", "--permutations", "0", "--seed", "1"]

UNDEFINED = "b.h5:emb/final has all rows identical (zero variance); CKA is undefined"
RESULT = ComparisonResult(
    inputs=(InputInfo("a", "a.npy", None, "npy", (1000, 8), "float32"),
            InputInfo("b", "b.h5", "emb/final", "hdf5", (1000, 4), "float16")),
    n=1000,
    preprocessing=Preprocessing(clip=0.95, normalize=True, preset="prh"),
    metrics=(
        MetricResult("mknn", 0.25, {"k": 10, "distance": "cosine"}, chance=10 / 999, null_sd=0.002, z=120.0,
                     p_value=1 / 1001, calibrated=0.2, permutations=1000, ci_low=0.24, ci_high=0.26,
                     ci_method="bootstrap-percentile", ci_covers="the mean of mknn"),
        MetricResult("cka", None, {"kernel": "linear", "estimator": "biased"}, reason=UNDEFINED,
                     ci_reason="no value"),
    ),
    notes=("b.h5:emb/final: float16 values widened to float32",),
    version="9.9.9",
    timing={"total_seconds": 1.5},
    uncertainty=UncertaintySettings(resamples=1000, confidence=0.9, seed=7, ci_method="auto", permutations=1000),
)
PREP = "clip |x| at the 0.95 quantile of all entries, then L2-normalise rows (preset prh)"


def test_json_round_trip():
    doc = json.loads(report.to_json(RESULT))
    assert doc["metrics"][1] == {
        "id": "cka", "direction": "higher",
        "name": "cka", "value": None, "params": {"kernel": "linear", "estimator": "biased"}, "chance": None,
        "range": [0.0, 1.0], "reason": UNDEFINED, "null_sd": None, "z": None, "p_value": None, "p_method": None,
        "calibrated": None, "permutations": 0, "ci_low": None, "ci_high": None, "ci_method": None, "ci_covers": None,
        "ci_reason": "no value"}
    assert doc["uncertainty"] == {"resamples": 1000, "confidence": 0.9, "seed": 7, "ci_method": "auto",
                                  "permutations": 1000}
    assert ComparisonResult.from_dict(doc) == RESULT
    assert list(doc) == ["schema_version", "repalign_version", "inputs", "n", "pairing", "preprocessing", "metrics",
                         "uncertainty", "checks", "baseline", "sweep", "notes", "timing"]
    from test_checks import validate

    validate(doc)


def test_csv():
    assert report.to_csv(RESULT) == (
        "metric,value,ci_low,ci_high,ci_method,chance,null_sd,z,p_value,p_method,calibrated,permutations,k,distance,"
        "estimator,n,a,b,preprocessing,confidence,resamples,seed,check,baseline,diff,reason,search,recall_at_k,"
        "search_shift,search_shift_low,search_shift_high\n"
        "mknn,0.25,0.24,0.26,bootstrap-percentile,0.01001001001001001,0.002,120.0,0.000999000999000999,,0.2,1000,"
        f"10,cosine,,1000,a.npy,b.h5:emb/final,\"{PREP}\",0.9,1000,7,,,,,exact,,,,\n"
        f"cka,,,,,,,,,,,0,,,biased,1000,a.npy,b.h5:emb/final,\"{PREP}\",0.9,1000,7,,,,{UNDEFINED},exact,,,,\n"
    )


def test_markdown():
    assert report.to_markdown(RESULT) == (
        f"**repalign 9.9.9** · n = 1000 · preprocessing: {PREP}\n"
        "\n"
        "- a: `a.npy` (1000×8 float32)\n"
        "- b: `b.h5:emb/final` (1000×4 float16)\n"
        "\n"
        "| metric | score | 90% CI | chance ± sd | z | p | calibrated | parameters |\n"
        "|---|---:|---|---:|---:|---:|---:|---|\n"
        "| mknn | 0.2500 | [0.2400, 0.2600] | 0.0100 ± 0.0020 | 120.0 | 0.000999 | 0.2000 | k=10, cosine |\n"
        "| cka | — | — | — | — | — | — | linear, biased |\n"
        "\n"
        f"_{report.CHANCE_NOTE}. 1000 resamples (bootstrap-percentile); 1000 permutations; seed 7._\n"
        f"> cka: {UNDEFINED}\n"
        "> b.h5:emb/final: float16 values widened to float32\n"
    )


def test_table_text():
    text = report.to_text(RESULT, width=140)
    lines = [line.rstrip() for line in text.splitlines()]
    assert lines[0].split() == ["a", "a.npy", "1000×8", "float32"]
    assert lines[1].split() == ["b", "b.h5:emb/final", "1000×4", "float16"]
    assert lines[2].split() == ["n", "1000", "paired", "items"]
    assert "preset prh" in lines[3]
    body = [line.replace("│", " ").split() for line in lines if line.strip().startswith(("mknn", "cka"))]
    assert body[0] == ["mknn", "0.2500", "[0.2400,", "0.2600]", "0.0100", "±", "0.0020", "120.0", "0.000999", "k=10,",
                       "cosine"]
    assert body[1] == ["cka", "—", "—", "—", "—", "—", "linear,", "biased"]
    assert f"cka: {UNDEFINED}" in lines
    assert not any("widened" in line for line in lines)  # notes go to stderr, not into the table
    assert "\x1b[" not in text


def test_explain_lines():
    lines = report.explain_lines(RESULT)
    assert lines[0] == ("mknn = 0.2500, 25.0× its chance level 0.0100, 120.0 null standard deviations above chance"
                        " (permutation p = 0.000999 from 1000). The 90% CI [0.2400, 0.2600] excludes chance.")
    assert lines[1] == f"cka: undefined: {UNDEFINED}."


# ------------------------------------------------------------------ baseline, checks and id pairing

UNBIASED = MetricResult("cka-unbiased", 0.5, {"kernel": "linear", "estimator": "unbiased"}, chance=0.0,
                        range=(-1.0, 1.0), null_sd=0.05, z=10.0, ci_low=0.45, ci_high=0.55,
                        ci_method="jackknife-normal", ci_covers="unbiased CKA")
BY_ID = Pairing("id", ("id", "id"), (1200, 1100), 1000, (200, 100))
THREE = dataclasses.replace(RESULT, metrics=RESULT.metrics + (UNBIASED,), pairing=BY_ID)
PAIRING = "by id (id / id): 1000 paired of 1200 and 1100; dropped 200 from a, 100 from b"


@pytest.fixture
def gated(tmp_path):
    """THREE checked against a baseline file written here (mknn and cka changed, cka-unbiased absent)."""
    doc = json.loads(report.to_json(THREE))
    doc["metrics"][0]["value"] = 0.3125
    doc["metrics"][1]["value"] = 0.75
    del doc["metrics"][2]
    path = tmp_path / "base.json"
    path.write_text(json.dumps(doc))
    result = checks.evaluate(THREE, fail_under={"mknn": 0.3, "cka-unbiased": 0.4}, baseline=str(path),
                             max_drop={"mknn": 0.01})
    old = {m["name"]: m["value"] for m in json.loads(path.read_text())["metrics"]}
    return result, old


def test_markdown_with_baseline_checks_and_pairing(gated):
    result, old = gated
    change = f"{0.25 - old['mknn']:+.4f}"
    assert change == "-0.0625"
    assert report.to_markdown(result) == (
        f"**repalign 9.9.9** · n = 1000 · preprocessing: {PREP}\n"
        "\n"
        "- a: `a.npy` (1000×8 float32)\n"
        "- b: `b.h5:emb/final` (1000×4 float16)\n"
        f"- pairing: {PAIRING}\n"
        "\n"
        "| metric | score | 90% CI | chance ± sd | z | p | calibrated | parameters | baseline | change | check |\n"
        "|---|---:|---|---:|---:|---:|---:|---|---:|---:|:---:|\n"
        "| mknn | 0.2500 | [0.2400, 0.2600] | 0.0100 ± 0.0020 | 120.0 | 0.000999 | 0.2000 | k=10, cosine | "
        f"{old['mknn']:.4f} | {change} | ❌ FAIL |\n"
        f"| cka | — | — | — | — | — | — | linear, biased | {old['cka']:.4f} | — |  |\n"
        "| cka-unbiased | 0.5000 | [0.4500, 0.5500] | 0.0000 ± 0.0500 | 10.0 | — | — | linear, unbiased | — | — "
        "| ✅ pass |\n"
        "\n"
        f"_{report.CHANCE_NOTE}. 1000 resamples (bootstrap-percentile, jackknife-normal); 1000 permutations; "
        "seed 7._\n"
        "- ❌ mknn = 0.2500 is under 0.3\n"
        "- ✅ cka-unbiased = 0.5000 is not under 0.4\n"
        f"- ❌ mknn changed by {change} ({old['mknn']:.4f} → 0.2500); a drop of more than 0.01 fails\n"
        f"> cka: {UNDEFINED}\n"
        "> b.h5:emb/final: float16 values widened to float32\n"
    )


def test_csv_with_baseline_and_checks(gated):
    result, old = gated
    rows = list(csv.DictReader(io.StringIO(report.to_csv(result))))
    assert [(r["metric"], r["check"], r["baseline"], r["diff"]) for r in rows] == [
        ("mknn", "fail", repr(old["mknn"]), repr(0.25 - old["mknn"])),
        ("cka", "", repr(old["cka"]), ""),
        ("cka-unbiased", "pass", "", ""),
    ]
    assert rows[2]["chance"] == "0.0" and rows[2]["estimator"] == "unbiased" and rows[2]["reason"] == ""


def test_table_with_baseline_checks_pairing_and_explain(gated):
    result, old = gated
    lines = [line.rstrip() for line in report.to_text(result, width=200, explain=True).splitlines()]
    assert lines[2].split() == ["n", "1000", "paired", "items"]
    assert lines[3].split(maxsplit=1) == ["pairs", PAIRING]
    header = next(line for line in lines if line.lstrip().startswith("metric"))
    assert [c.strip() for c in header.split("┃")] == ["metric", "score", "90% CI", "chance ± sd", "z", "p",
                                                      "parameters", "baseline", "change", "check"]
    body = {c[0]: c for c in ([x.strip() for x in line.split("│")] for line in lines if "│" in line)}
    assert body["mknn"][7:] == [f"{old['mknn']:.4f}", f"{0.25 - old['mknn']:+.4f}", "FAIL"]
    assert body["cka"][7:] == [f"{old['cka']:.4f}", "—", ""]
    assert body["cka-unbiased"] == ["cka-unbiased", "0.5000", "[0.4500, 0.5500]", "0.0000 ± 0.0500", "10.0", "—",
                                    "linear, unbiased", "—", "—", "pass"]
    explained = report.explain_lines(result)
    assert lines[-len(explained):] == explained  # the last lines, unwrapped at this width
    assert explained[2] == ("cka-unbiased = 0.5000, chance level 0.0000, 10.0 null standard deviations above "
                            "chance. The 90% CI [0.4500, 0.5500] excludes chance.")


def test_baseline_without_a_row_for_the_metric():
    """A baseline that lacks a metric shows dashes in both columns (not a crash, not a zero)."""
    base = Baseline("old.json", (BaselineRow("mknn", 0.5, 0.25, -0.25),))
    result = dataclasses.replace(RESULT, baseline=base)
    assert common.baseline_cells(result, "mknn") == ("0.5000", "-0.2500")
    assert common.baseline_cells(result, "cka") == ("—", "—")
    assert common.baseline_raw(result, "cka") == (None, None)
    assert common.baseline_raw(result, "mknn") == (0.5, -0.25)
    assert common.baseline_cells(RESULT, "mknn") == ("—", "—")


def test_baseline_columns_from_a_real_run(tmp_path, pair_files):
    """compare --baseline: the table shows the numbers of the file written here and the change to this run."""
    base = json.loads(run(["compare", *pair_files, "-m", "mknn,cka", "-f", "json", *FAST]))
    base["metrics"][0]["value"] = 0.5
    base["metrics"][1]["value"] = 0.125
    path = tmp_path / "base.json"
    path.write_text(json.dumps(base))
    before = path.read_bytes()
    now = {m["name"]: m["value"] for m in json.loads(run(["compare", *pair_files, "-m", "mknn,cka", "-f", "json",
                                                            *FAST]))["metrics"]}
    md = run(["compare", *pair_files, "-m", "mknn,cka", "-f", "markdown", "--baseline", str(path), *FAST])
    rows = {c[1].strip(): [x.strip() for x in c[1:-1]] for c in (line.split("|") for line in md.splitlines())
            if len(c) > 2 and c[1].strip() in ("mknn", "cka")}
    assert rows["mknn"][-2:] == ["0.5000", f"{now['mknn'] - 0.5:+.4f}"]
    assert rows["cka"][-2:] == ["0.1250", f"{now['cka'] - 0.125:+.4f}"]
    text = run(["compare", *pair_files, "-m", "mknn,cka", "--baseline", str(path), *FAST])
    body = {c[0]: c for c in ([x.strip() for x in line.split("│")] for line in text.splitlines() if "│" in line)}
    assert body["mknn"][-2:] == ["0.5000", f"{now['mknn'] - 0.5:+.4f}"]
    assert body["cka"][-2:] == ["0.1250", f"{now['cka'] - 0.125:+.4f}"]
    assert path.read_bytes() == before


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    X, Y = make_pair(np.random.default_rng(0), n=40, d1=6, d2=5)
    np.save(root / "a.npy", X)
    np.save(root / "b.npy", Y)
    return [str(root / "a.npy"), str(root / "b.npy")]


def run(args, code=0):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == code, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


# ------------------------------------------------------------------ a layer sweep


def cells(line):
    """The cells of a rich table row (header or body), stripped."""
    return [x.strip() for x in re.split("[│┃]", line)]


def _cells(name, grid, chance=0.1):
    return tuple(tuple(MetricResult(name, v, chance=None if v is None else chance, null_sd=None if v is None else 0.05,
                                    z=None if v is None else (v - chance) / 0.05) for v in row) for row in grid)


MKNN_GRID = [[0.1, 0.3], [0.2, None]]
CKA_GRID = [[0.5, 0.4], [0.6, 0.7]]
SWEEP = ComparisonResult(
    inputs=(InputInfo("a", "a.h5", "layers/*", "hdf5", (100, 16), "float32", layers=("0", "1")),
            InputInfo("b", "b.npy", None, "npy", (100, 2, 8), "float64", layers=("x", "y"))),
    n=100,
    preprocessing=Preprocessing(),
    metrics=(
        MetricResult("mknn", 0.3, {"k": 10, "distance": "cosine", "layer_a": "0", "layer_b": "y"}, chance=0.1,
                     null_sd=0.05, z=4.0, p_value=0.005, calibrated=0.25, permutations=200, ci_low=0.2, ci_high=0.4,
                     ci_method="ij-normal, Bonferroni over 4 layer pairs"),
        MetricResult("cka", 0.7, {"kernel": "linear", "estimator": "biased", "layer_a": "1", "layer_b": "y"},
                     chance=0.01, null_sd=0.02, z=34.5, ci_reason="intervals off for this test"),
    ),
    uncertainty=UncertaintySettings(resamples=100, confidence=0.95, seed=3, permutations=200),
    version="9.9.9",
    sweep=Sweep(("0", "1"), ("x", "y"), {"mknn": _cells("mknn", MKNN_GRID), "cka": _cells("cka", CKA_GRID, 0.01)},
                {"mknn": (0, 1), "cka": (1, 1)}),
)


def test_sweep_markdown():
    assert report.to_markdown(SWEEP) == (
        "**repalign 9.9.9** · n = 100 · preprocessing: none\n"
        "\n"
        "- a: `a.h5:layers/*` (100×16 float32)\n"
        "- b: `b.npy` (100×2×8 float64)\n"
        "\n"
        "| metric | score | 95% CI | chance ± sd | z | p | calibrated | parameters |\n"
        "|---|---:|---|---:|---:|---:|---:|---|\n"
        "| mknn | 0.3000 | [0.2000, 0.4000] | 0.1000 ± 0.0500 | 4.0 | 0.005 | 0.2500 | k=10, cosine; best pair: "
        "a layer 0, b layer y |\n"
        "| cka | 0.7000 | — | 0.0100 ± 0.0200 | 34.5 | — | — | linear, biased; best pair: a layer 1, b layer y |\n"
        "\n"
        f"_{report.CHANCE_NOTE}. 100 resamples (ij-normal); intervals of best layer pairs Bonferroni-widened over "
        "the pairs; 200 permutations; seed 3._\n"
        "\n"
        "**mknn** by layer pair (rows: a, columns: b; **bold** = best)\n"
        "\n"
        "| a \\ b | x | y |\n"
        "|---|---:|---:|\n"
        "| 0 | 0.100 | **0.300** |\n"
        "| 1 | 0.200 | — |\n"
        "\n"
        "**cka** by layer pair (rows: a, columns: b; **bold** = best)\n"
        "\n"
        "| a \\ b | x | y |\n"
        "|---|---:|---:|\n"
        "| 0 | 0.500 | 0.400 |\n"
        "| 1 | 0.600 | **0.700** |\n"
    )


def test_sweep_table_heatmaps_and_best_layers():
    text = report.to_text(SWEEP, width=200, explain=True)
    lines = [line.rstrip() for line in text.splitlines()]
    assert lines[0].split() == ["a", "a.h5:layers/*", "100×16", "float32", "(2", "layers)"]
    assert lines[1].split() == ["b", "b.npy", "100×2×8", "float64", "(2", "layers)"]
    assert not any(line.startswith("pairs") for line in lines)  # row pairing is not worth a line
    start = lines.index("mknn by layer pair (rows: layers of a, columns: layers of b; * = best)")
    assert [cells(line) for line in lines[start + 1:start + 5] if "━" not in line] == [
        ["a \\ b", "x", "y"], ["0", "0.100", "0.300*"], ["1", "0.200", "—"]]
    start = lines.index("cka by layer pair (rows: layers of a, columns: layers of b; * = best)")
    assert [cells(line) for line in lines[start + 3:start + 5]] == [["0", "0.500", "0.400"], ["1", "0.600", "0.700*"]]
    for line in ["mknn: best layer of b for each layer of a: 0→y, 1→x",
                 "mknn: best layer of a for each layer of b: x→1, y→0",
                 "cka: best layer of b for each layer of a: 0→x, 1→y",
                 "cka: best layer of a for each layer of b: x→1, y→1"]:
        assert line in lines
    explained = report.explain_lines(SWEEP)
    assert "This is the best of 4 layer pairs" in explained[0] and "This is the best of 4" in explained[1]
    assert explained[1].startswith("cka = 0.7000, 70.0× its chance level 0.0100, 34.5 null standard deviations "
                                   "above chance. No interval: intervals off for this test.")
    assert "cka = 0.7000, 70.0× its chance level 0.0100" in text  # --explain lines are in the table


def test_sweep_csv():
    rows = list(csv.DictReader(io.StringIO(report.to_csv(SWEEP))))
    assert list(rows[0]) == report.SWEEP_CSV_COLUMNS
    got = [(r["layer_a"], r["layer_b"], r["metric"], r["value"], r["best"], r["ci_low"], r["p_value"]) for r in rows]
    assert got == [("0", "x", "mknn", "0.1", "false", "", ""), ("0", "y", "mknn", "0.3", "true", "0.2", "0.005"),
                   ("1", "x", "mknn", "0.2", "false", "", ""), ("1", "y", "mknn", "", "false", "", ""),
                   ("0", "x", "cka", "0.5", "false", "", ""), ("0", "y", "cka", "0.4", "false", "", ""),
                   ("1", "x", "cka", "0.6", "false", "", ""), ("1", "y", "cka", "0.7", "true", "", "")]
    assert rows[1]["z"] == repr((0.3 - 0.1) / 0.05) and rows[1]["a"] == "a.h5:layers/*"


def test_sweep_plot_panels():
    common = {"row_labels": ["0", "1"], "col_labels": ["x", "y"], "row_axis": "layer of a (a.h5:layers/*)",
              "col_axis": "layer of b (b.npy)", "annotate": True}
    panels = report.plot_panels(SWEEP, "fixed")
    chances = [p.pop("chance") for p in panels]
    assert panels == [
        dict(common, title="mknn", values=MKNN_GRID, vmin=0.0, vmax=1.0, best=(0, 1),
             colorbar_label="mknn (higher = more aligned)"),
        dict(common, title="cka", values=CKA_GRID, vmin=0.0, vmax=1.0, best=(1, 1),
             colorbar_label="cka (higher = more aligned)"),
    ]
    assert chances == pytest.approx([0.1, 0.01])


# ------------------------------------------------------------------ matrix reports


def _mk(v, layer_b=None):
    params = {"k": 10, "distance": "cosine", **({"layer_b": layer_b} if layer_b else {})}
    return MetricResult("mknn", v, params, chance=0.08, null_sd=0.01, z=(v - 0.08) / 0.01, p_value=1 / 101,
                        permutations=100, ci_reason="intervals off (--resamples 0)")


def _ck(v, reason=None):
    return MetricResult("cka", v, {"kernel": "linear", "estimator": "biased"}, reason=reason)


NO_CKA = "r.npy has all rows identical (zero variance); CKA is undefined"
MATRIX = MatrixResult(
    inputs=(InputInfo("0", "p.npy", None, "npy", (50, 4), "float32"),
            InputInfo("1", "q.h5", "emb", "hdf5", (50, 3, 6), "float32", layers=("l0", "l1", "l2")),
            InputInfo("2", "r.npy", None, "npy", (50, 4), "float64")),
    n=50,
    preprocessing=Preprocessing(),
    metric_names=("mknn", "cka"),
    cells=(MatrixCell(0, 1, (_mk(0.3, "l2"), _ck(0.6))), MatrixCell(0, 2, (_mk(0.2), _ck(None, NO_CKA))),
           MatrixCell(1, 2, (_mk(0.25, "l1"), _ck(0.5)))),
    diagonal=tuple(MatrixCell(p, p, (_mk(1.0), _ck(1.0))) for p in range(3)),
    notes=("q.h5:emb: 3 layers",),
    uncertainty=UncertaintySettings(resamples=0, confidence=0.95, seed=5, permutations=100),
    version="9.9.9",
    checks=(Check("mknn", "fail-under", 0.22, "value", 0.3, True, "mknn = 0.3000 is not under 0.22 (p.npy vs q.h5:emb)",
                  (0, 1)),
            Check("mknn", "fail-under", 0.22, "value", 0.2, False, "mknn = 0.2000 is under 0.22 (p.npy vs r.npy)",
                  (0, 2)),
            Check("mknn", "fail-under", 0.22, "value", 0.25, True,
                  "mknn = 0.2500 is not under 0.22 (q.h5:emb vs r.npy)", (1, 2))),
    pairing=Pairing("id", ("id", "id"), (60, 55), 50, (10, 5), max_rows=40, subsample_seed=5),
)
REFERENCED = MatrixResult(
    inputs=tuple(InputInfo(str(i), f"{name}.npy", None, "npy", (50, 4), "float32")
                 for i, name in enumerate(["ref", "x", "y"])),
    n=50, preprocessing=Preprocessing(), metric_names=("mknn",),
    cells=(MatrixCell(0, 2, (_mk(0.4),)), MatrixCell(0, 1, (_mk(0.3),))),  # best first
    reference=0, version="9.9.9",
)


def test_matrix_markdown_every_pair():
    p = f"{1 / 101:.3g}"
    assert report.to_markdown(MATRIX) == (
        "**repalign 9.9.9** · matrix of 3 inputs · n = 50 · preprocessing: none\n"
        "\n"
        "- 0: `p.npy` (50×4 float32)\n"
        "- 1: `q.h5:emb` (50×3×6 float32 (3 layers))\n"
        "- 2: `r.npy` (50×4 float64)\n"
        "\n"
        "**mknn**\n"
        "\n"
        "| | 0 | 1 | 2 |\n"
        "|---|---:|---:|---:|\n"
        "| 0 | 1.000 | 0.300 | 0.200 |\n"
        "| 1 | 0.300 | 1.000 | 0.250 |\n"
        "| 2 | 0.200 | 0.250 | 1.000 |\n"
        "\n"
        "**cka**\n"
        "\n"
        "| | 0 | 1 | 2 |\n"
        "|---|---:|---:|---:|\n"
        "| 0 | 1.000 | 0.600 | — |\n"
        "| 1 | 0.600 | 1.000 | 0.500 |\n"
        "| 2 | — | 0.500 | 1.000 |\n"
        "\n"
        "| a | b | metric | score | 95% CI | chance ± sd | z | p | parameters | check |\n"
        "|---|---|---|---:|---|---:|---:|---:|---|:---:|\n"
        f"| `p.npy` | `q.h5:emb` | mknn | 0.3000 | — | 0.0800 ± 0.0100 | 22.0 | {p} | k=10, cosine; best pair: "
        "b layer l2 | ✅ pass |\n"
        "| `p.npy` | `q.h5:emb` | cka | 0.6000 | — | — | — | — | linear, biased |  |\n"
        f"| `p.npy` | `r.npy` | mknn | 0.2000 | — | 0.0800 ± 0.0100 | 12.0 | {p} | k=10, cosine | ❌ FAIL |\n"
        "| `p.npy` | `r.npy` | cka | — | — | — | — | — | linear, biased |  |\n"
        f"| `q.h5:emb` | `r.npy` | mknn | 0.2500 | — | 0.0800 ± 0.0100 | 17.0 | {p} | k=10, cosine; best pair: "
        "b layer l1 | ✅ pass |\n"
        "| `q.h5:emb` | `r.npy` | cka | 0.5000 | — | — | — | — | linear, biased |  |\n"
        "\n"
        f"_{report.CHANCE_NOTE}. intervals off; 100 permutations; seed 5._\n"
        "- ❌ mknn = 0.2000 is under 0.22 (p.npy vs r.npy)\n"
        "> q.h5:emb: 3 layers\n"
    )


def test_matrix_markdown_against_a_reference():
    assert report.to_markdown(REFERENCED) == (
        "**repalign 9.9.9** · matrix of 3 inputs · n = 50 · preprocessing: none\n"
        "\n"
        "- 0: `ref.npy` (50×4 float32)\n"
        "- 1: `x.npy` (50×4 float32)\n"
        "- 2: `y.npy` (50×4 float32)\n"
        "\n"
        "**mknn**\n"
        "\n"
        "| input | mknn vs `ref.npy` |\n"
        "|---|---:|\n"
        "| `y.npy` | 0.4000 |\n"
        "| `x.npy` | 0.3000 |\n"
        "\n"
        "| a | b | metric | score | CI | chance ± sd | z | p | parameters |\n"
        "|---|---|---|---:|---|---:|---:|---:|---|\n"
        f"| `ref.npy` | `y.npy` | mknn | 0.4000 | — | 0.0800 ± 0.0100 | 32.0 | {1 / 101:.3g} | k=10, cosine |\n"
        f"| `ref.npy` | `x.npy` | mknn | 0.3000 | — | 0.0800 ± 0.0100 | 22.0 | {1 / 101:.3g} | k=10, cosine |\n"
        "\n"
        f"_{report.CHANCE_NOTE}. intervals and p-values not computed._\n"
    )


def test_matrix_table_every_pair():
    lines = [line.rstrip() for line in report.to_text(MATRIX, width=200).splitlines()]
    assert lines[1].split() == ["1", "q.h5:emb", "50×3×6", "float32", "(3", "layers)"]
    assert lines[4].split(maxsplit=1) == ["pairs", "by id: 50 items present in every input; a random 40 of them "
                                                   "(seed 5)"]
    start = lines.index("cka for every pair of inputs")
    assert [cells(line) for line in lines[start + 1:start + 6] if "━" not in line] == [
        ["", "0", "1", "2"], ["0", "1.000", "0.600", "—"], ["1", "0.600", "1.000", "0.500"],
        ["2", "—", "0.500", "1.000"]]
    body = [cells(line) for line in lines if line.startswith(" ") and "│" in line and cells(line)[2] in ("mknn", "cka")]
    assert [(c[0], c[1], c[2], c[3], c[-1]) for c in body] == [
        ("0", "1", "mknn", "0.3000", "pass"), ("0", "1", "cka", "0.6000", ""), ("0", "2", "mknn", "0.2000", "FAIL"),
        ("0", "2", "cka", "—", ""), ("1", "2", "mknn", "0.2500", "pass"), ("1", "2", "cka", "0.5000", "")]
    assert lines[-1] == "intervals off; 100 permutations; seed 5"


def test_matrix_table_against_a_reference():
    lines = [line.rstrip() for line in report.to_text(REFERENCED, width=200).splitlines()]
    assert lines[0].split() == ["0", "ref.npy", "(reference)", "50×4", "float32"]
    assert not any(line.startswith("pairs") for line in lines)
    start = lines.index("mknn against input 0, best first")
    assert [cells(line) for line in lines[start + 1:start + 4] if "━" not in line] == [
        ["", "2", "1"], ["0", "0.400", "0.300"]]
    assert "check" not in cells(next(line for line in lines if line.lstrip().startswith("a ")))
    assert lines[-1].startswith("chance ± sd")  # no uncertainty line without settings


def test_matrix_csv_checks_and_json_round_trip():
    rows = list(csv.DictReader(io.StringIO(report.to_csv(MATRIX))))
    assert [(r["a"], r["b"], r["metric"], r["value"], r["check"], r["layer_b"]) for r in rows[:6]] == [
        ("p.npy", "q.h5:emb", "mknn", "0.3", "pass", "l2"), ("p.npy", "q.h5:emb", "cka", "0.6", "", ""),
        ("p.npy", "r.npy", "mknn", "0.2", "fail", ""), ("p.npy", "r.npy", "cka", "", "", ""),
        ("q.h5:emb", "r.npy", "mknn", "0.25", "pass", "l1"), ("q.h5:emb", "r.npy", "cka", "0.5", "", "")]
    assert rows[3]["reason"] == NO_CKA
    assert [(r["a"], r["b"], r["value"]) for r in rows[6:]] == [
        (a, a, "1.0") for a in ("p.npy", "q.h5:emb", "r.npy") for _ in range(2)]
    for result in (MATRIX, REFERENCED):
        doc = json.loads(report.to_json(result))
        assert MatrixResult.from_dict(doc) == result
        from test_checks import validate

        validate(doc)


def test_matrix_plot_panels():
    names = ["p.npy", "q.h5:emb", "r.npy"]

    def plain(panels):
        """The panels without the colour bar's label and chance marker (checked in test_plot.py)."""
        return [{k: v for k, v in p.items() if k not in ("colorbar_label", "chance", "chance_range")}
                for p in panels]

    data = report.plot_panels(MATRIX)
    assert (data[0]["vmin"], data[0]["vmax"]) == (0.2, 0.3)  # the data's range, diagonal left out
    assert data[0]["colorbar_label"] == "mknn (higher = more aligned)" and data[0]["chance"] == 0.08
    assert plain(report.plot_panels(MATRIX, "fixed")) == [
        {"title": "mknn", "values": [[1.0, 0.3, 0.2], [0.3, 1.0, 0.25], [0.2, 0.25, 1.0]], "row_labels": names,
         "col_labels": names, "row_axis": "input", "col_axis": "input", "vmin": 0.0, "vmax": 1.0, "annotate": True},
        {"title": "cka", "values": [[1.0, 0.6, None], [0.6, 1.0, 0.5], [None, 0.5, 1.0]], "row_labels": names,
         "col_labels": names, "row_axis": "input", "col_axis": "input", "vmin": 0.0, "vmax": 1.0, "annotate": True},
    ]
    assert plain(report.plot_panels(REFERENCED, "fixed")) == [
        {"title": "mknn", "values": [[0.4, 0.3]], "row_labels": ["ref.npy"], "col_labels": ["y.npy", "x.npy"],
         "row_axis": "reference", "col_axis": "input", "vmin": 0.0, "vmax": 1.0, "annotate": True}]


def test_markdown_without_uncertainty_settings():
    """A report without settings (e.g. read from a document with "uncertainty": null) says so in words."""
    text = report.to_markdown(dataclasses.replace(RESULT, uncertainty=None))
    assert f"_{report.CHANCE_NOTE}. intervals and p-values not computed._\n" in text
    assert "| metric | score | CI |" in text


def test_matrix_markdown_of_a_real_run(pair_files, tmp_path):
    """repalign matrix -f markdown shows the numbers of the JSON report of the same run."""
    third = str(tmp_path / "c.npy")
    np.save(third, np.load(pair_files[0])[:, ::-1] + 0.1 * np.load(pair_files[1])[:, :1])
    files = [*pair_files, third]
    doc = json.loads(run(["matrix", *files, "-m", "mknn,cka", "-f", "json", *FAST]))
    md = run(["matrix", *files, "-m", "mknn,cka", "-f", "markdown", *FAST]).splitlines()
    for metric in ("mknn", "cka"):
        start = md.index(f"**{metric}**")
        assert md[start + 2:start + 7] == ["| | 0 | 1 | 2 |", "|---|---:|---:|---:|"] + [
            f"| {p} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for p, row in enumerate(doc["matrix"][metric])]
    rows = [line for line in md if line.startswith("| `")]
    expected = [f"| `{files[c['a']]}` | `{files[c['b']]}` | {m['name']} | {m['value']:.4f} |"
                for c in doc["cells"] for m in c["metrics"]]
    assert [row[:len(e)] for row, e in zip(rows, expected)] == expected and len(rows) == 6


def test_explain_below_chance_and_warnings():
    weak = dataclasses.replace(RESULT, metrics=(
        MetricResult("mknn", 0.05, {"k": 10, "distance": "cosine"}, chance=0.0625, null_sd=0.01, z=-1.25,
                     ci_low=0.03, ci_high=0.07),
        MetricResult("cka", 0.3, {"kernel": "linear", "estimator": "biased"}, chance=0.2, null_sd=0.05, z=2.0,
                     ci_low=0.25, ci_high=0.35)))
    assert report.explain_lines(weak) == [
        "mknn = 0.0500, 0.8× its chance level 0.0625, 1.2 null standard deviations below chance. The 90% CI "
        "[0.0300, 0.0700] does not exclude chance: no evidence of agreement beyond random pairing. Warning: k is "
        "large for n (chance level 0.062); mknn is only comparable between runs with the same n and k.",
        "cka = 0.3000, 1.5× its chance level 0.2000, 2.0 null standard deviations above chance. The 90% CI "
        "[0.2500, 0.3500] excludes chance. Warning: d is comparable to n, so biased CKA is inflated (unrelated data "
        "would score 0.200 on average); cka-unbiased does not have this bias.",
    ]


def test_one_layer_of_a_long_labels_and_bare_metrics():
    """A 1×2 sweep: only the 'best layer of b' line, long labels keep their end; a metric with no chance,
    z or interval explains just its value; no settings means no settings line in the table."""
    long_b = ("layers/block_10/output", "layers/block_11/output")
    bare = MetricResult("cka", 0.7, {"kernel": "linear", "estimator": "biased", "layer_a": "0",
                                     "layer_b": long_b[1]})
    result = dataclasses.replace(SWEEP, metrics=(bare,), uncertainty=None, sweep=Sweep(
        ("0",), long_b, {"cka": _cells("cka", [[0.5, 0.7]], 0.01)}, {"cka": (0, 1)}))
    lines = [line.rstrip() for line in report.to_text(result, width=200, explain=True).splitlines()]
    start = lines.index("cka by layer pair (rows: layers of a, columns: layers of b; * = best)")
    assert cells(lines[start + 1]) == ["a \\ b", "…k_10/output", "…k_11/output"]  # 12 characters
    assert cells(lines[start + 3]) == ["0", "0.500", "0.700*"]
    assert [line for line in lines if "best layer of" in line] == [
        "cka: best layer of b for each layer of a: 0→layers/block_11/output"]
    assert report.explain_lines(result)[0].startswith("cka = 0.7000. This is the best of 2 layer pairs:")
    assert any(line.startswith("cka = 0.7000. This is the best of 2 layer pairs") for line in lines)
    assert not any("permutations; seed" in line for line in lines)


def test_matrix_table_pairs_by_id_without_subsample():
    result = dataclasses.replace(MATRIX, pairing=Pairing("id", ("id", "id"), (60, 55), 50, (10, 5)))
    lines = [line.rstrip() for line in report.to_text(result, width=200).splitlines()]
    assert lines[4].split(maxsplit=1) == ["pairs", "by id: 50 items present in every input"]


def test_one_layer_of_b_gives_only_the_other_line():
    sweep = Sweep(("0", "1"), ("x",), {"cka": _cells("cka", [[0.5], [0.7]], 0.01)}, {"cka": (1, 0)})
    assert report.sweep_lines(dataclasses.replace(SWEEP, sweep=sweep)) == [
        "cka: best layer of a for each layer of b: x→1"]


@pytest.mark.parametrize("name, fmt", [("r.json", "json"), ("r.CSV", "csv"), ("r.md", "markdown"),
                                       ("r.markdown", "markdown"), ("r.txt", "table")])
def test_write_picks_the_renderer_by_suffix(tmp_path, name, fmt):
    path = tmp_path / name
    assert report.write(RESULT, str(path)) == fmt
    assert path.read_text(encoding="utf-8") == report.RENDERERS[fmt](RESULT)


@pytest.mark.parametrize("name", ["r.out", "r"])
def test_write_refuses_an_unknown_suffix(tmp_path, name):
    from repalign.errors import UsageError

    with pytest.raises(UsageError, match=".json, .csv, .md"):
        report.write(RESULT, str(tmp_path / name))
    assert not (tmp_path / name).exists()


def test_write_to_a_directory_is_a_usage_error(tmp_path):
    from repalign.errors import UsageError

    folder = tmp_path / "out.json"
    folder.mkdir()
    with pytest.raises(UsageError, match="cannot write the report") as info:
        report.write(RESULT, str(folder))
    assert "\n" not in str(info.value)
