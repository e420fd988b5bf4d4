"""CI gating: thresholds, baselines, --output, --quiet, the JSON schema."""

import json
from importlib.resources import files as pkg_files

import jsonschema
import pytest
from test_cli import expect_input_error, run

SCHEMA = json.loads(pkg_files("repalign").joinpath("schema/report.schema.json").read_text())


def validate(doc):
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)


@pytest.fixture
def files(write, golden):
    X, Y = golden
    return write.npy(X, "x.npy"), write.npy(Y, "y.npy")


FAST = ["--resamples", "200", "--permutations", "99", "--seed", "1"]


def test_thresholds_pass_and_fail(files):
    # Golden data: mknn 0.279, cka 0.5576.
    ok = run("compare", *files, *FAST, "--fail-under", "mknn=0.25", "--fail-under", "cka=0.5", "-f", "json")
    assert ok.exit_code == 0 and ok.stderr == ""
    doc = json.loads(ok.stdout)
    validate(doc)
    assert [(c["metric"], c["kind"], c["bound"], c["passed"]) for c in doc["checks"]] == [
        ("mknn", "fail-under", 0.25, True), ("cka", "fail-under", 0.5, True)]
    bad = run("compare", *files, *FAST, "--fail-under", "mknn=0.3,cka=0.5", "--fail-above", "cka=0.55", "-f", "json")
    assert bad.exit_code == 1
    assert bad.stderr.splitlines() == ["FAIL: mknn = 0.2790 is under 0.3 (--fail-under)",
                                       "FAIL: cka = 0.5576 is above 0.55 (--fail-above)"]
    doc = json.loads(bad.stdout)
    validate(doc)
    assert [c["passed"] for c in doc["checks"]] == [False, True, False]


def test_bound_on_interval_end(files):
    r = run("compare", *files, *FAST, "-f", "json", "--on", "ci-low", "--fail-under", "mknn=0.25")
    doc = json.loads(r.stdout)
    low = doc["metrics"][0]["ci_low"]
    assert doc["checks"][0]["observed"] == low and doc["checks"][0]["on"] == "ci-low"
    assert r.exit_code == (1 if low < 0.25 else 0)
    expect_input_error(["compare", *files, "--resamples", "0", "--on", "ci-low", "--fail-under", "mknn=0.1"],
                       "--on ci-low needs confidence intervals")


def test_table_and_markdown_mark_failures(files):
    t = run("compare", *files, *FAST, "--fail-under", "mknn=0.3", env={"NO_COLOR": "1"})
    assert t.exit_code == 1
    row = next(line for line in t.stdout.splitlines() if line.strip().startswith("mknn"))
    assert row.rstrip().endswith("FAIL")
    m = run("compare", *files, *FAST, "--fail-under", "mknn=0.3", "--fail-under", "cka=0.5", "-f", "markdown")
    assert "❌ FAIL |" in m.stdout and "✅ pass |" in m.stdout and "- ❌ mknn = 0.2790 is under 0.3" in m.stdout


def test_baseline_and_max_drop(files, write, golden, tmp_path):
    base = tmp_path / "base.json"
    assert run("compare", *files, *FAST, "--output", base).exit_code == 0
    X, Y = golden
    noisy = write.npy(Y + 3.0 * __import__("numpy").random.default_rng(0).standard_normal(Y.shape), "noisy.npy")
    r = run("compare", files[0], noisy, *FAST, "--baseline", base, "--max-drop", "mknn=0.05", "-f", "json")
    doc = json.loads(r.stdout)
    validate(doc)
    row = doc["baseline"]["metrics"][0]
    assert row["metric"] == "mknn" and row["old"] == pytest.approx(0.279)
    assert row["diff"] == pytest.approx(row["new"] - row["old"])
    assert r.exit_code == (1 if -row["diff"] > 0.05 else 0) == 1
    assert "FAIL: mknn changed by" in r.stderr and "a drop of more than 0.05 fails" in r.stderr
    same = run("compare", *files, *FAST, "--baseline", base, "--max-drop", "mknn=0", "-f", "json")
    assert same.exit_code == 0 and json.loads(same.stdout)["checks"][0]["observed"] == 0.0


def test_bad_baselines(files, tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema_version": 0, "metrics": []}))
    expect_input_error(["compare", *files, "--baseline", old], "old.json", "schema version 0")
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    expect_input_error(["compare", *files, "--baseline", junk], "junk.json", "not a JSON report")
    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    expect_input_error(["compare", *files, "--baseline", other], "other.json", "not a repalign JSON report")
    expect_input_error(["compare", *files, "--baseline", tmp_path / "none.json"], "none.json", "no such")
    expect_input_error(["compare", *files, "--max-drop", "mknn=0.1"], "--max-drop needs --baseline")


@pytest.mark.parametrize("args,needle", [
    (["--fail-under", "mknn"], "expects METRIC=NUMBER"),
    (["--fail-under", "nope=1"], "unknown metric 'nope'"),
    (["--fail-under", "mknn=high"], "'high' is not a number"),
    (["--fail-under", "mknn=nan"], "finite"),
    (["--fail-above", "cka-unbiased=0.1"], "not computed (add --metric cka-unbiased)"),
    (["--on", "middle", "--fail-under", "mknn=0.1"], "unknown --on"),
])
def test_bad_gates(files, args, needle):
    expect_input_error(["compare", *files, *args], needle)


def test_output_file_by_suffix_and_quiet(files, write, golden, tmp_path):
    out_json, out_md, out_csv = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.csv"
    for out in (out_json, out_md, out_csv):
        r = run("compare", *files, *FAST, "--output", out, env={"NO_COLOR": "1"})
        assert r.exit_code == 0 and "mknn" in r.stdout  # the table still goes to the terminal
    validate(json.loads(out_json.read_text()))
    assert out_md.read_text().startswith("**repalign") and out_csv.read_text().startswith("metric,value")
    half = write.npy(golden[0].astype("float16"), "half.npy")
    loud = run("compare", half, files[1], *FAST)
    assert "warning:" in loud.stderr
    quiet = run("compare", half, files[1], *FAST, "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "" and "mknn" in quiet.stdout
    expect_input_error(["compare", *files, "--output", tmp_path / "no" / "dir" / "r.json"], "cannot write")


def test_reports_validate_against_schema(files, write, rng):
    import numpy as np

    for args in ([], ["--resamples", "0", "--permutations", "0"], ["-m", "mknn,cka,cka-unbiased", *FAST],
                 ["--preset", "prh", *FAST], ["--ci-method", "ij", *FAST], ["--ci-method", "jackknife", *FAST]):
        validate(json.loads(run("compare", *files, *args, "-f", "json").stdout))
    const = write.npy(np.ones((20, 3)), "const.npy")
    other = write.npy(rng.standard_normal((20, 3)), "other.npy")
    doc = json.loads(run("compare", const, other, "-m", "cka", "-f", "json", *FAST).stdout)
    validate(doc)
    assert doc["metrics"][0]["value"] is None


def test_schema_command_prints_the_schema():
    r = run("schema")
    assert r.exit_code == 0 and json.loads(r.stdout) == SCHEMA
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
