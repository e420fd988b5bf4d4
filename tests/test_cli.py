"""The CLI through Typer's runner: outputs parse, bad inputs exit 2 with one line naming the file."""

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

import repalign
from repalign.cli import app

runner = CliRunner()


def run(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


@pytest.fixture
def files(write, golden):
    X, Y = golden
    return write.npy(X, "x.npy"), write.h5(emb=Y, name="y.h5")


def test_json_output_matches_library(files, golden):
    r = run("compare", *files, "-m", "mknn", "-m", "cka,cka-unbiased", "--format", "json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == 1 and doc["repalign_version"] == repalign.__version__ and doc["n"] == 100
    assert [m["name"] for m in doc["metrics"]] == ["mknn", "cka", "cka-unbiased"]
    vals = {m["name"]: m["value"] for m in doc["metrics"]}
    assert vals["mknn"] == pytest.approx(0.279, abs=1e-12) and round(vals["cka"], 5) == 0.55761
    assert doc["inputs"][0] == {"label": "a", "path": files[0], "key": None, "format": "npy",
                                "shape": [100, 10], "dtype": "float64", "layers": None}
    assert doc["inputs"][1]["key"] == "emb" and doc["inputs"][1]["format"] == "hdf5"
    assert doc["metrics"][0]["params"] == {"k": 10, "distance": "cosine"}
    assert doc["metrics"][0]["chance"] == pytest.approx(10 / 99)
    assert doc["preprocessing"] == {"clip": None, "normalize": False, "preset": None, "steps": []}
    assert doc["timing"]["total_seconds"] >= 0
    assert r.stderr == ""


def test_preset_reported(files):
    doc = json.loads(run("compare", *files, "--preset", "prh", "-f", "json").stdout)
    assert doc["preprocessing"]["clip"] == 0.95 and doc["preprocessing"]["normalize"] is True
    assert doc["preprocessing"]["preset"] == "prh" and len(doc["preprocessing"]["steps"]) == 2


def test_preset_equals_manual_pipeline(files, golden):
    X, Y = golden
    doc = json.loads(run("compare", *files, "--preset", "prh", "-f", "json", "-m", "mknn,cka").stdout)
    # Independent: clip at int(0.95·N) of sorted |entries|, normalise, then the metric on that.
    import reference as ref

    def prep(A):
        t = np.sort(np.abs(A).ravel())[int(0.95 * A.size)]
        A = np.clip(A, -t, t)
        return A / np.linalg.norm(A, axis=1, keepdims=True)

    got = {m["name"]: m["value"] for m in doc["metrics"]}
    assert got["mknn"] == pytest.approx(ref.mutual_knn(prep(X), prep(Y), 10), abs=1e-12)
    assert got["cka"] == pytest.approx(ref.cka(prep(X), prep(Y)), abs=1e-9)


def test_table_csv_markdown(files):
    t = run("compare", *files, env={"NO_COLOR": "1"})
    assert t.exit_code == 0 and "mknn" in t.stdout and "0.2790" in t.stdout and "\x1b[" not in t.stdout
    assert "100 paired items" in t.stdout and "100×10 float64" in t.stdout
    c = run("compare", *files, "-f", "csv", "--seed", "3").stdout.splitlines()
    assert c[0].startswith("metric,value,ci_low,ci_high,ci_method,chance,null_sd") and c[1].startswith("mknn,0.279,")
    m = run("compare", *files, "-f", "markdown", "--seed", "3").stdout
    assert "| metric | score | 95% CI | chance ± sd | z | p | calibrated | parameters |" in m
    assert "| mknn | 0.2790 | [" in m and "| 0.1010 ± 0.0119 |" in m


def test_inspect_command(write, rng):
    p = write.npz(emb=rng.standard_normal((5, 3)), ids=np.arange(5))
    r = run("inspect", p, "-f", "json")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert {a["key"]: a["embedding"] for a in doc["arrays"]} == {"emb": True, "ids": False}
    assert "emb" in run("inspect", p).stdout


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"repalign {repalign.__version__}"


def expect_input_error(args, *needles):
    r = run(*args)
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in r.stderr
    return lines[0]


def test_missing_file(files, tmp_path):
    expect_input_error(["compare", files[0], tmp_path / "nope.npy"], "nope.npy", "no such file")


def test_unknown_key(files):
    expect_input_error(["compare", files[0], files[1] + ":missing"], "y.h5", "'missing'", "emb (100×10 float64)")


def test_unsupported_extension(tmp_path, files):
    p = tmp_path / "x.txt"
    p.write_text("1,2\n")
    expect_input_error(["compare", p, files[0]], "x.txt", "unsupported file type '.txt'")


def test_directory(tmp_path, files):
    d = tmp_path / "dir.npy"
    d.mkdir()
    expect_input_error(["compare", d, files[0]], "dir.npy", "directory")


@pytest.mark.parametrize("shape", [(12,), (4, 3, 2, 2)])
def test_wrong_dimensionality(write, files, shape):
    p = write.npy(np.ones(shape), "bad.npy")
    expect_input_error(["compare", p, files[0]], "bad.npy", "2-D", str(shape))


def test_four_d_refused(write, files):
    p = write.npy(np.ones((100, 3, 4, 2)), "layers.npy")
    expect_input_error(["compare", p, files[0]], "layers.npy", "2-D", "(100, 3, 4, 2)")


@pytest.mark.parametrize("dtype,word", [(np.int64, "integer"), (np.bool_, "boolean"), (np.complex128, "complex")])
def test_non_float(write, files, dtype, word):
    p = write.npy(np.ones((100, 4), dtype=dtype), "bad.npy")
    expect_input_error(["compare", p, files[0]], "bad.npy", word)


def test_object_array_refused(tmp_path, files):
    p = tmp_path / "obj.npy"
    np.save(p, np.array([[1.0, None]] * 100, dtype=object), allow_pickle=True)
    expect_input_error(["compare", p, files[0]], "obj.npy", "never unpickles")
    q = tmp_path / "obj.npz"
    np.savez(q, emb=np.array([[1.0, None]] * 100, dtype=object))
    expect_input_error(["compare", f"{q}:emb", files[0]], "obj.npz", "never unpickles")


def test_nan_and_inf_name_rows(write, files, golden):
    X = golden[0].copy()
    X[7, 2] = np.nan
    X[42, 0] = np.inf
    p = write.npy(X, "nan.npy")
    expect_input_error(["compare", p, files[1]], "nan.npy", "NaN or Inf", "rows 7, 42")


def test_row_count_mismatch_names_both(write, files, golden):
    p = write.npy(golden[0][:90], "short.npy")
    msg = expect_input_error(["compare", p, files[1]], "short.npy", "(90, 10)", "y.h5:emb", "(100, 10)")
    assert "90 rows" in msg and "100 rows" in msg


def test_k_too_large(files):
    expect_input_error(["compare", *files, "--k", "99"], "k=99", "101", "100")


def test_unbiased_needs_four_rows(write, rng):
    a = write.npy(rng.standard_normal((3, 2)), "a.npy")
    b = write.npy(rng.standard_normal((3, 2)), "b.npy")
    expect_input_error(["compare", a, b, "-m", "cka-unbiased"], "cka-unbiased", "at least 4", "3")


def test_zero_rows_under_cosine_and_normalize(write, files, golden):
    X = golden[0].copy()
    X[5] = 0
    p = write.npy(X, "zero.npy")
    expect_input_error(["compare", p, files[1], "-m", "mknn"], "zero.npy", "row 5", "cosine")
    expect_input_error(["compare", p, files[1], "-m", "cka", "--normalize"], "zero.npy", "row 5", "normalisation")
    # l2 needs no direction, so zero rows are fine there.
    assert run("compare", p, files[1], "-m", "mknn", "-d", "l2").exit_code == 0


def test_parquet_nulls_and_ragged(tmp_path, files):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [[1.0, 2.0]] * 100
    with_null = rows[:3] + [None] + rows[4:]
    pq.write_table(pa.table({"emb": pa.array(with_null, pa.list_(pa.float32()))}), tmp_path / "n.parquet")
    expect_input_error(["compare", tmp_path / "n.parquet", files[0]], "n.parquet:emb", "null", "row 3")
    ragged = rows[:10] + [[1.0, 2.0, 3.0]] + rows[11:]
    pq.write_table(pa.table({"emb": pa.array(ragged, pa.list_(pa.float32()))}), tmp_path / "r.parquet")
    expect_input_error(["compare", tmp_path / "r.parquet", files[0]], "r.parquet:emb", "ragged", "row 10")
    inner = rows[:6] + [[1.0, None]] + rows[7:]
    pq.write_table(pa.table({"emb": pa.array(inner, pa.list_(pa.float32()))}), tmp_path / "i.parquet")
    expect_input_error(["compare", tmp_path / "i.parquet", files[0]], "i.parquet:emb", "null", "row 6")
    pq.write_table(pa.table({"emb": pa.array(rows), "x": pa.array(range(100))}), tmp_path / "s.parquet")
    expect_input_error(["compare", f"{tmp_path / 's.parquet'}:x", files[0]], "s.parquet:x", "not a list column")


@pytest.mark.parametrize("fmt", ["npy", "npz", "h5", "parquet"])
def test_corrupt_and_truncated(write, files, golden, fmt, tmp_path):
    X = golden[0]
    src = {"npy": lambda: write.npy(X, "c.npy"), "npz": lambda: write.npz("c.npz", emb=X),
           "h5": lambda: write.h5("c.h5", emb=X), "parquet": lambda: write.parquet("c.parquet", emb=X)}[fmt]()
    data = open(src, "rb").read()
    trunc = tmp_path / f"trunc.{fmt}"
    trunc.write_bytes(data[: len(data) // 2])
    expect_input_error(["compare", trunc, files[0]], f"trunc.{fmt}")
    junk = tmp_path / f"junk.{fmt}"
    junk.write_bytes(b"this is not an embedding file" * 10)
    expect_input_error(["compare", junk, files[0]], f"junk.{fmt}")
    empty = tmp_path / f"empty.{fmt}"
    empty.write_bytes(b"")
    expect_input_error(["compare", empty, files[0]], f"empty.{fmt}", "empty")


@pytest.mark.parametrize("args,needle", [
    (["-m", "nope"], "unknown metric 'nope'"),
    (["-d", "manhattan"], "unknown --distance"),
    (["--preset", "nope"], "unknown preset"),
    (["--clip", "1.5"], "--clip"),
    (["--k", "0"], "--k"),
    (["-f", "xml"], "unknown --format"),
])
def test_bad_options(files, args, needle):
    expect_input_error(["compare", *files, *args], needle)


def test_inputs_never_modified(files):
    before = [(open(p, "rb").read(), os.stat(p).st_mtime_ns) for p in files]
    for fmt in ("table", "json", "csv", "markdown"):
        assert run("compare", *files, "-f", fmt, "--preset", "prh").exit_code == 0
    assert before == [(open(p, "rb").read(), os.stat(p).st_mtime_ns) for p in files]


def test_internal_error_exits_3(files, monkeypatch):
    import repalign.api

    def boom(*a, **k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(repalign.api, "compare", boom)
    r = run("compare", *files)
    assert r.exit_code == 3 and "internal error" in r.stderr and "simulated bug" in r.stderr


def test_float16_converted_with_warning_on_stderr(write, golden, files):
    p = write.npy(golden[0].astype(np.float16), "half.npy")
    r = run("compare", p, files[1], "-f", "json")
    assert r.exit_code == 0
    assert r.stderr.strip() == f"warning: {p}: float16 values widened to float32"
    doc = json.loads(r.stdout)
    assert doc["inputs"][0]["dtype"] == "float16" and doc["notes"] == [f"{p}: float16 values widened to float32"]


def test_inspect_help_names_every_suffix():
    """`inspect --help` lists the suffixes of repalign.io.FORMATS, so a new format is never left out."""
    from repalign.io import FORMATS

    text = " ".join(run("inspect", "--help").stdout.split())
    for suffix in FORMATS:
        assert suffix in text, suffix
