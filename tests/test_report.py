"""Renderers on a hand-built result, compared with the full expected text."""

import json

from repalign import report
from repalign.preprocess import Preprocessing
from repalign.results import ComparisonResult, InputInfo, MetricResult

RESULT = ComparisonResult(
    inputs=(InputInfo("a", "a.npy", None, "npy", (1000, 8), "float32"),
            InputInfo("b", "b.h5", "emb/final", "hdf5", (1000, 4), "float16")),
    n=1000,
    preprocessing=Preprocessing(clip=0.95, normalize=True, preset="prh"),
    metrics=(
        MetricResult("mknn", 0.25, {"k": 10, "distance": "cosine"}, chance=10 / 999),
        MetricResult("cka", None, {"kernel": "linear", "estimator": "biased"},
                     reason="b.h5:emb/final has all rows identical (zero variance); CKA is undefined"),
    ),
    notes=("b.h5:emb/final: float16 values widened to float32",),
    version="9.9.9",
    timing={"total_seconds": 1.5},
)


def test_json_round_trip():
    text = report.to_json(RESULT)
    doc = json.loads(text)
    assert doc["metrics"][1] == {"name": "cka", "value": None,
                                 "params": {"kernel": "linear", "estimator": "biased"}, "chance": None,
                                 "range": [0.0, 1.0],
                                 "reason": "b.h5:emb/final has all rows identical (zero variance); CKA is undefined"}
    assert ComparisonResult.from_dict(doc) == RESULT
    assert list(doc) == ["schema_version", "repalign_version", "inputs", "n", "preprocessing", "metrics", "notes",
                         "timing"]


def test_csv():
    assert report.to_csv(RESULT) == (
        "metric,value,chance,k,distance,estimator,n,a,b,preprocessing,reason\n"
        "mknn,0.25,0.01001001001001001,10,cosine,,1000,a.npy,b.h5:emb/final,"
        "\"clip |x| at the 0.95 quantile of all entries, then L2-normalise rows (preset prh)\",\n"
        "cka,,,,,biased,1000,a.npy,b.h5:emb/final,"
        "\"clip |x| at the 0.95 quantile of all entries, then L2-normalise rows (preset prh)\","
        "b.h5:emb/final has all rows identical (zero variance); CKA is undefined\n"
    )


def test_markdown():
    assert report.to_markdown(RESULT) == (
        "**repalign 9.9.9** · n = 1000 · preprocessing: clip |x| at the 0.95 quantile of all entries, "
        "then L2-normalise rows (preset prh)\n"
        "\n"
        "- a: `a.npy` (1000×8 float32)\n"
        "- b: `b.h5:emb/final` (1000×4 float16)\n"
        "\n"
        "| metric | score | chance | parameters |\n"
        "|---|---:|---:|---|\n"
        "| mknn | 0.2500 | 0.0100 | k=10, cosine |\n"
        "| cka | — | — | linear, biased |\n"
        "\n"
        f"_{report.CHANCE_NOTE}_\n"
        "> cka: b.h5:emb/final has all rows identical (zero variance); CKA is undefined\n"
        "> b.h5:emb/final: float16 values widened to float32\n"
    )


def test_table_text():
    text = report.to_text(RESULT, width=120)
    lines = [line.rstrip() for line in text.splitlines()]
    assert lines[0].split() == ["a", "a.npy", "1000×8", "float32"]
    assert lines[1].split() == ["b", "b.h5:emb/final", "1000×4", "float16"]
    assert lines[2].split() == ["n", "1000", "paired", "items"]
    assert "preset prh" in lines[3]
    body = [line for line in lines if line.strip().startswith(("mknn", "cka"))]
    assert body[0].replace("│", " ").split() == ["mknn", "0.2500", "0.0100", "k=10,", "cosine"]
    assert body[1].replace("│", " ").split() == ["cka", "—", "—", "linear,", "biased"]
    assert any(line.startswith("cka: b.h5:emb/final has all rows identical") for line in lines)
    assert not any("widened" in line for line in lines)  # notes go to stderr, not into the table
    assert "\x1b[" not in text
