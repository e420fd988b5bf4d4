"""Options at their edges, hostile --baseline files, and numbers that do not depend on the BLAS thread count.

Every case ends in one of the documented ways: exit 0 (or 1, a failed gate) with a valid report, or exit 2
with exactly one ``Error:`` line naming the option (or the baseline file and its field); never exit 3, never
a traceback, and the input files are byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import golden_pair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from repalign.cli import app

runner = CliRunner()
FAST = ["--resamples", "0", "--permutations", "0", "-f", "json", "--seed", "1"]
HUGE = str(10**12)
DIGITS = "9" * 5000  # past Python's int-from-string limit

pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The golden pair (100×10), a 3-layer input of the same items, and a third input for a matrix."""
    root = tmp_path_factory.mktemp("options")
    X, Y = golden_pair()
    rng = np.random.default_rng(5)
    np.save(root / "a.npy", X)
    np.save(root / "b.npy", Y)
    np.save(root / "la.npy", np.stack([X, X + rng.standard_normal(X.shape), Y], axis=1))
    np.save(root / "c.npy", Y + rng.standard_normal(Y.shape))
    return root


def snapshot(root: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def invoke(root: Path, argv: list[str]):
    before = snapshot(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        r = runner.invoke(app, argv)
    finally:
        os.chdir(cwd)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert snapshot(root) == before, "an input file was modified"
    assert "Traceback" not in r.output, r.output
    return r


def assert_error(r, needle: str) -> str:
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    # Click's own parse errors (e.g. an integer too long) add Usage lines; ours are the one line alone.
    assert len(lines) == 1, r.stderr
    assert needle in lines[0], (needle, lines[0])
    return lines[0]


def assert_report(r) -> dict:
    assert r.exit_code in (0, 1), (r.exit_code, r.output)
    doc = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the report"))
    for line in r.stderr.splitlines():
        assert line.startswith(("warning:", "FAIL:")), r.stderr
    if doc.get("kind") != "matrix":  # a matrix lists metric names; its cells are checked by parse_constant
        assert all(m["value"] is None or math.isfinite(m["value"]) for m in doc["metrics"]), doc
    return doc


MODES = {
    "compare": ["compare", "a.npy", "b.npy"],
    "sweep": ["compare", "la.npy", "b.npy"],
    "matrix": ["matrix", "a.npy", "b.npy", "c.npy"],
}
OK = None  # expected: a report (exit 0, or 1 when a gate fails)
# (extra arguments, None for a report or the text the one Error line must contain). The golden pair has 100 items.
CASES = [
    (["--resamples", "1"], "--resamples"),
    (["--resamples", "2"], OK),
    (["--resamples", "3"], OK),
    (["--resamples", "-1"], "--resamples"),
    (["--resamples", HUGE], "--resamples"),
    (["--resamples", DIGITS], "--resamples"),
    (["--resamples", "1", "-m", "cka"], "--resamples"),
    (["--resamples", "2", "-m", "mknn", "--ci-method", "normal"], OK),
    (["--permutations", "1"], OK),
    (["--permutations", "2"], OK),
    (["--permutations", "-1"], "--permutations"),
    (["--permutations", HUGE], "--permutations"),
    (["--k", "0"], "--k"),
    (["--k", "1"], OK),
    (["--k", "98"], OK),  # n − 2
    (["--k", "99"], "k=99"),  # n − 1
    (["--k", HUGE], "k="),
    (["--k", "-1"], "--k"),
    (["--k", DIGITS], "--k"),
    (["--confidence", "0"], "--confidence"),
    (["--confidence", "1"], "--confidence"),
    (["--confidence", "0.5", "--resamples", "5"], OK),
    (["--confidence", "nan"], "--confidence"),
    (["--confidence", "inf"], "--confidence"),
    (["--confidence", "-0.5"], "--confidence"),
    (["--confidence", "1.5"], "--confidence"),
    (["--clip", "0"], "--clip"),
    (["--clip", "1"], OK),
    (["--clip", "nan"], "--clip"),
    (["--clip", "-1"], "--clip"),
    (["--clip", "2"], "--clip"),
    (["--max-rows", "0"], "--max-rows"),
    (["--max-rows", "1"], "k=10"),
    (["--max-rows", "3", "-m", "cka", "--resamples", "10"], OK),
    (["--max-rows", "2", "-m", "cka-unbiased"], "cka-unbiased"),
    (["--max-rows", "100"], OK),
    (["--max-rows", "101"], OK),
    (["--max-rows", "-1"], "--max-rows"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**64)], OK),
    (["--seed", DIGITS], "--seed"),
    (["--fail-under", "mknn=nan"], "--fail-under"),
    (["--fail-under", "mknn=inf"], "--fail-under"),
    (["--fail-under", "mknn=garbage"], "--fail-under"),
    (["--fail-under", "mknn="], "--fail-under"),
    (["--fail-under", "=0.5"], "--fail-under"),
    (["--fail-under", "foo=0.5"], "--fail-under"),
    (["--fail-under", "cka-unbiased=0.5"], "--fail-under"),
    (["--fail-above", "mknn=1e400"], "--fail-above"),
    (["--fail-under", ","], "--fail-under"),
    (["--fail-under", ""], "--fail-under"),
    (["--fail-under", "mknn=1_0"], "--fail-under"),
    (["--fail-under", "mknn=0.5,"], OK),
    (["--fail-above", "cka=-1"], OK),
    (["--fail-under", "mknn=0.1", "--on", "ci-low"], "--on"),
    (["--on", "garbage"], "--on"),
    (["-m", ",,"], "metric"),
    (["-m", ""], "metric"),
    (["-m", "mknn,mknn", "-m", "MKNN"], OK),
    (["-m", "garbage"], "garbage"),
]
CASES += [(["-m", m, "--ci-method", ci, "--resamples", "100"], OK)
          for m in ("mknn", "cka", "cka-unbiased") for ci in ("auto", "ij", "normal", "percentile", "basic", "bca",
                                                             "jackknife")]
CASES += [(["--ci-method", "garbage"], "--ci-method")]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("extra, expect", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_option_edges(data, mode, extra, expect):
    r = invoke(data, [*MODES[mode], *FAST, *extra])
    if expect is OK:
        assert_report(r)
    else:
        assert_error(r, expect)


COMPARE_ONLY = [
    (["--max-drop", "mknn=0.1"], "--max-drop"),
    (["--max-drop", "mknn=nan", "--baseline", "a.npy"], "--max-drop"),
]
LAYERS = [("0:0", "0:0"), ("5:1", "5:1"), ("::0", "::0"), ("1,,2", "1,,2"), ("--1", "--1"),
          ("99999999999999999999", "99999999999999999999"), ("-4", "-4"), ("-1", OK), ("2,0", OK), ("::-1", OK)]


@pytest.mark.parametrize("extra, expect", COMPARE_ONLY)
def test_compare_only_options(data, extra, expect):
    assert_error(invoke(data, [*MODES["compare"], *FAST, *extra]), expect)


@pytest.mark.parametrize("spec, expect", LAYERS)
@pytest.mark.parametrize("option, head", [("--layer-a", MODES["sweep"]), ("--layer-b", ["compare", "b.npy", "la.npy"]),
                                          ("--layers", ["matrix", "a.npy", "la.npy", "c.npy"])])
def test_layer_selections(data, option, head, spec, expect):
    r = invoke(data, [*head, *FAST, f"{option}={spec}"])
    if expect is OK:
        assert_report(r)
    else:
        assert_error(r, expect)


def test_resamples_two_gives_intervals(data):
    """The smallest accepted --resamples gives finite intervals around the value for every metric."""
    doc = assert_report(invoke(data, [*MODES["compare"], "-f", "json", "--seed", "1", "--resamples", "2",
                                      "--permutations", "0", "-m", "mknn,cka,cka-unbiased"]))
    for m in doc["metrics"]:
        assert m["ci_low"] <= m["value"] <= m["ci_high"], m


# --------------------------------------------------------------------------- hostile --baseline files


@pytest.fixture(scope="module")
def report(data) -> dict:
    """A real JSON report of the golden pair, to be damaged."""
    r = invoke(data, [*MODES["compare"], *FAST])
    return json.loads(r.stdout)


def run_baseline(root: Path, text: str | bytes, name: str = "base.json"):
    path = root / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape"))
    try:
        return invoke(root, [*MODES["compare"], *FAST, "--baseline", name, "--max-drop", "mknn=0.1"])
    finally:
        path.unlink()


def edited(report: dict, edit) -> str:
    doc = json.loads(json.dumps(report))
    edit(doc)
    return json.dumps(doc)


def _set(path, value):
    def edit(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


BAD_BASELINES = [
    ("nan", lambda r: json.dumps(r).replace('"n": 100', '"n": NaN'), "NaN"),
    ("infinity value", lambda r: edited(r, _set(["metrics", 0, "value"], 0.5)).replace("0.5", "Infinity", 1),
     "Infinity"),
    ("-infinity", lambda r: edited(r, _set(["metrics", 0, "value"], 0.5)).replace("0.5", "-Infinity", 1),
     "Infinity"),
    ("1e999 value", lambda r: edited(r, _set(["metrics", 0, "value"], 0.5)).replace("0.5", "1e999", 1),
     "metrics[0].value"),
    ("huge int value", lambda r: edited(r, _set(["metrics", 0, "value"], 10**400)), "metrics[0].value"),
    ("over-long int", lambda r: edited(r, _set(["metrics", 0, "value"], 0.5)).replace("0.5", "9" * 5000, 1),
     "not a JSON report"),
    ("deep nesting", lambda r: "[" * 100_000 + "]" * 100_000, "not a JSON report"),
    ("deep in a field", lambda r: json.dumps(r)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "not a JSON report"),
    ("metrics a dict", lambda r: edited(r, _set(["metrics"], {"mknn": 0.3})), "'metrics'"),
    ("metrics empty", lambda r: edited(r, _set(["metrics"], [])), "'metrics'"),
    ("value a string", lambda r: edited(r, _set(["metrics", 0, "value"], "0.3")), "metrics[0].value"),
    ("value a bool", lambda r: edited(r, _set(["metrics", 0, "value"], True)), "metrics[0].value"),
    ("name a number", lambda r: edited(r, _set(["metrics", 0, "name"], 3)), "metrics[0]"),
    ("params a list", lambda r: edited(r, _set(["metrics", 0, "params"], [1, 2])), "metrics[0].params"),
    ("duplicate metric", lambda r: edited(r, lambda d: d["metrics"].append(d["metrics"][0])), "twice"),
    ("n a string", lambda r: edited(r, _set(["n"], "100")), "'n'"),
    ("schema version a list", lambda r: edited(r, _set(["schema_version"], [1] * 1000)), "schema version"),
    ("schema version true", lambda r: edited(r, _set(["schema_version"], True)), "schema version"),
    ("not utf-8", lambda r: b"\xff\xfe" + json.dumps(r).encode(), "not a JSON report"),
]


@pytest.mark.parametrize("make, needle", [c[1:] for c in BAD_BASELINES], ids=[c[0] for c in BAD_BASELINES])
def test_hostile_baseline(data, report, make, needle):
    line = assert_error(run_baseline(data, make(report)), needle)
    assert "base.json" in line, line


FINE_BASELINES = [
    ("unknown keys", lambda r: edited(r, lambda d: (d.update(extra={"a": [1]}), d["metrics"][0].update(z=1)))),
    ("ci_low a bool (unused)", lambda r: edited(r, _set(["metrics", 0, "ci_low"], True))),
    ("metric absent from this run", lambda r: edited(r, lambda d: d["metrics"].append({"name": "cka-unbiased",
                                                                                        "value": 0.2}))),
    ("value null", lambda r: edited(r, _set(["metrics", 0, "value"], None))),
    ("mknn missing", lambda r: edited(r, lambda d: d.update(metrics=d["metrics"][1:]))),
]


@pytest.mark.parametrize("make", [c[1] for c in FINE_BASELINES], ids=[c[0] for c in FINE_BASELINES])
def test_odd_but_valid_baseline(data, report, make):
    """Each gives a report; where the baseline has no mknn value the --max-drop gate fails (exit 1)."""
    r = run_baseline(data, make(report))
    doc = assert_report(r)
    row = next(row for row in doc["baseline"]["metrics"] if row["metric"] == "mknn")
    assert (r.exit_code == 1) == (row["old"] is None), (r.exit_code, row)


def test_baseline_too_large_is_not_read(data, report, monkeypatch):
    from repalign import checks

    monkeypatch.setattr(checks, "MAX_BASELINE_BYTES", 1000)
    assert_error(run_baseline(data, json.dumps(report) + " " * 2000), "too large")


def test_identical_baseline_passes(data, report):
    r = run_baseline(data, json.dumps(report))
    doc = assert_report(r)
    assert r.exit_code == 0 and all(row["diff"] == 0.0 for row in doc["baseline"]["metrics"]), doc["baseline"]


def _paths(node, prefix=()):
    """Every (key path) in a JSON document, containers included."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, prefix + (key,))


USED = {"metrics", "name", "value", "params", "n", "schema_version", "kind", 0, 1}
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from([10**400, -(10**400), 2**63]),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.binary(max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape")))


def _containers(inner):
    return st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4))


json_values = st.recursive(scalars, _containers, max_leaves=10)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.integers(min_value=0), json_values), min_size=1, max_size=4))
def test_baseline_fields_overwritten_at_random(data, report, picks):
    doc = json.loads(json.dumps(report))
    for index, value in picks:
        paths = [p for p in _paths(doc) if p]
        # The fields the comparison reads are drawn far more often than the rest.
        paths += [p for p in paths if p[-1] in USED for _ in range(20)]
        if not paths:
            break
        path = paths[index % len(paths)]
        _set(list(path), value)(doc)
    # NaN and Infinity are written as Python's json writes them (allow_nan is on by default).
    text = json.dumps(doc, ensure_ascii=False)
    r = run_baseline(data, text)
    assert r.exit_code in (0, 1, 2), (r.exit_code, r.output)
    if r.exit_code == 2:
        line = assert_error(r, "base.json")
        assert line.startswith("Error: base.json"), line


# --------------------------------------------------------------------------- thread-count determinism


def _thread_data(root: Path) -> dict[str, str]:
    """Inputs big enough for multithreaded BLAS: 3000×300 float32 with shared signal, a 3-layer version,
    and a wide pair (d > n) that takes the n×n Gram route."""
    rng = np.random.default_rng(7)
    n, d = 3000, 300
    z = rng.standard_normal((n, 8))
    X = (z @ rng.standard_normal((8, d)) + rng.standard_normal((n, d))).astype(np.float32)
    Y = (z @ rng.standard_normal((8, d)) + rng.standard_normal((n, d))).astype(np.float32)
    np.save(root / "tx.npy", X)
    np.save(root / "ty.npy", Y)
    np.save(root / "tl.npy", np.stack([X, Y, X + Y], axis=1))
    w = rng.standard_normal((400, 8))
    np.save(root / "wx.npy", w @ rng.standard_normal((8, 700)) + rng.standard_normal((400, 700)))
    np.save(root / "wy.npy", w @ rng.standard_normal((8, 600)) + rng.standard_normal((400, 600)))
    return {name: str(root / f"{name}.npy") for name in ("tx", "ty", "tl", "wx", "wy")}


def _report_with_threads(argv: list[str], threads: int) -> str:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), PYTHONPATH=str(Path(__file__).parent.parent))
    r = subprocess.run([sys.executable, "-m", "repalign", *argv], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    doc.pop("timing")  # wall times, the only field allowed to differ
    return json.dumps(doc)


@pytest.mark.parametrize("run", ["compare", "sweep", "gram"])
def test_numbers_do_not_depend_on_thread_count(tmp_path, run):
    """The same seeded run with 1, 2 and 3 BLAS threads gives the same report, to the last bit.

    Before the products went through repalign.metrics.linalg, CKA's value and interval differed in the last
    digit between 1 and 2 threads here (OpenBLAS splits a GEMM's inner dimension by thread count)."""
    f = _thread_data(tmp_path)
    # mknn's numbers are integer counts; it runs once, so that its FAISS search is covered too.
    argv = {"compare": ["compare", f["tx"], f["ty"], "-m", "mknn,cka,cka-unbiased"],
            "sweep": ["compare", f["tl"], f["ty"], "-m", "cka,cka-unbiased"],
            "gram": ["compare", f["wx"], f["wy"], "-m", "cka,cka-unbiased"]}[run]
    argv += ["--resamples", "20", "--permutations", "5", "-f", "json", "--seed", "3"]
    one = _report_with_threads(argv, 1)
    assert all(m["value"] is not None and m["ci_low"] is not None for m in json.loads(one)["metrics"])
    for threads in (2, 3) if run == "compare" else (2,):
        assert _report_with_threads(argv, threads) == one, f"{threads} threads changed the report"
