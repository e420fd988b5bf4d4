"""Renderers on hand-built and small real results, compared with the full expected text."""

import csv
import dataclasses
import io
import json

import numpy as np
import pytest
from conftest import make_pair
from typer.testing import CliRunner

from repalign import checks, report
from repalign.cli import app
from repalign.pairing import Pairing
from repalign.preprocess import Preprocessing
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
        "name": "cka", "value": None, "params": {"kernel": "linear", "estimator": "biased"}, "chance": None,
        "range": [0.0, 1.0], "reason": UNDEFINED, "null_sd": None, "z": None, "p_value": None, "calibrated": None,
        "permutations": 0, "ci_low": None, "ci_high": None, "ci_method": None, "ci_covers": None,
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
        "metric,value,ci_low,ci_high,ci_method,chance,null_sd,z,p_value,calibrated,permutations,k,distance,"
        "estimator,n,a,b,preprocessing,confidence,resamples,seed,check,baseline,diff,reason\n"
        "mknn,0.25,0.24,0.26,bootstrap-percentile,0.01001001001001001,0.002,120.0,0.000999000999000999,0.2,1000,"
        f"10,cosine,,1000,a.npy,b.h5:emb/final,\"{PREP}\",0.9,1000,7,,,,\n"
        f"cka,,,,,,,,,,0,,,biased,1000,a.npy,b.h5:emb/final,\"{PREP}\",0.9,1000,7,,,,{UNDEFINED}\n"
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
    assert report._baseline_cells(result, "mknn") == ("0.5000", "-0.2500")
    assert report._baseline_cells(result, "cka") == ("—", "—")
    assert report._baseline_raw(result, "cka") == (None, None)
    assert report._baseline_raw(result, "mknn") == (0.5, -0.25)
    assert report._baseline_cells(RESULT, "mknn") == ("—", "—")


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
