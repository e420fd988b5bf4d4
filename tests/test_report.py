"""Renderers on a hand-built result, compared with the full expected text."""

import json

from repalign import report
from repalign.preprocess import Preprocessing
from repalign.results import ComparisonResult, InputInfo, MetricResult, UncertaintySettings

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
