"""Pairing by id and subsampling: shuffled files give the aligned result, drops are counted, bad ids refused."""

import json

import numpy as np
import pytest
from test_cli import expect_input_error, run

import repalign

FAST = ["--resamples", "0", "--permutations", "0", "-f", "json", "-m", "mknn,cka,cka-unbiased"]


def values(doc):
    return {m["name"]: m["value"] for m in doc["metrics"]}


@pytest.fixture
def aligned(write, golden):
    X, Y = golden
    ids = [f"item{i:03d}" for i in range(100)]
    return X, Y, ids


def test_shuffled_ids_give_the_aligned_result(write, aligned, rng):
    X, Y, ids = aligned
    perm = rng.permutation(100)
    a = write.parquet("a.parquet", emb=X, ids=ids)
    b = write.h5("b.h5", emb=Y[perm], ids=np.array([ids[i] for i in perm], dtype="S"))
    got = json.loads(run("compare", a, b, "--ids", "auto", *FAST).stdout)
    expected = repalign.compare(X, Y, metrics="mknn,cka,cka-unbiased", resamples=0, permutations=0)
    assert values(got) == pytest.approx({m.name: m.value for m in expected.metrics}, abs=1e-12)
    assert got["pairing"] == {"by": "id", "ids": ["id", "ids"], "rows": [100, 100], "paired": 100,
                              "dropped": [0, 0], "max_rows": None, "subsample_seed": None}


def test_inner_join_counts_drops(write, aligned):
    X, Y, ids = aligned
    a = write.npz("a.npz", emb=X[:90], key=np.array(ids[:90]))
    b = str(write.root / "b.npz")
    np.savez(b, emb=Y[20:], name=np.array(ids[20:]))
    doc = json.loads(run("compare", a, b, "--ids-a", "key", "--ids-b", "name", *FAST).stdout)
    assert doc["n"] == 70 and doc["pairing"]["dropped"] == [20, 10] and doc["pairing"]["rows"] == [90, 80]
    expected = repalign.compare(X[20:90], Y[20:90], metrics="mknn,cka,cka-unbiased", resamples=0, permutations=0)
    assert values(doc) == pytest.approx({m.name: m.value for m in expected.metrics}, abs=1e-12)
    expect_input_error(["compare", a, b, "--ids-a", "key", "--ids-b", "name", "--require-all"],
                       "--require-all", "10 of", "20 of")


def test_integer_ids(write, aligned):
    X, Y, _ = aligned
    a = write.h5("a.h5", emb=X, id=np.arange(100) * 7)
    b = write.h5("b.h5", emb=Y[::-1], id=(np.arange(100) * 7)[::-1])
    doc = json.loads(run("compare", a, b, "--ids", "id", *FAST).stdout)
    assert doc["pairing"]["paired"] == 100
    assert values(doc)["mknn"] == pytest.approx(0.279, abs=1e-12)


def test_bad_ids(write, aligned, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, Y, ids = aligned
    dup = write.npz("dup.npz", emb=X, id=np.array(ids[:98] + ["item000", "item001"]))
    b = write.npz("b.npz", emb=Y, id=np.array(ids))
    expect_input_error(["compare", dup, b, "--ids", "id"], "dup.npz:id", "2 duplicate ids", "'item000'")
    ints = write.npz("ints.npz", emb=Y, id=np.arange(100))
    expect_input_error(["compare", b, ints, "--ids", "id"], "strings", "integers", "ints.npz:id")
    col = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 10)
    pq.write_table(pa.table({"emb": col, "id": pa.array(ids[:5] + [None] + ids[6:])}), tmp_path / "nul.parquet")
    expect_input_error(["compare", tmp_path / "nul.parquet", b, "--ids", "id"], "nul.parquet:id", "null ids", "row 5")
    floats = write.npz("f.npz", emb=Y, id=np.linspace(0, 1, 100))
    expect_input_error(["compare", floats, b, "--ids", "id"], "f.npz:id", "strings or all integers")
    other = write.npz("o.npz", emb=Y, id=np.array([f"x{i}" for i in range(100)]))
    expect_input_error(["compare", other, b, "--ids", "id"], "no id in common")
    few = write.npz("few.npz", emb=Y[:8], id=np.array(ids[:8]))
    expect_input_error(["compare", few, b, "--ids", "id"], "few.npz", "8 items", "k+2 = 12")
    plain = write.npy(X, "plain.npy")
    expect_input_error(["compare", plain, b, "--ids", "id"], "plain.npy", "no ids")
    both = str(write.root / "both.npz")
    np.savez(both, emb=X, id=np.array(ids), name=np.array(ids))
    expect_input_error(["compare", both, b, "--ids", "auto"], "both.npz", "several id arrays")
    expect_input_error(["compare", b, b, "--ids", "missing"], "b.npz", "no id array 'missing'")
    expect_input_error(["compare", plain, b, "--require-all"], "--require-all needs ids")


def test_row_count_mismatch_suggests_ids(write, golden):
    a = write.npy(golden[0][:90], "a.npy")
    b = write.npy(golden[1], "b.npy")
    expect_input_error(["compare", a, b], "--ids")


def test_warning_when_files_carry_ids_that_disagree(write, aligned):
    X, Y, ids = aligned
    a = write.npz("a.npz", emb=X, id=np.array(ids))
    b = write.npz("b.npz", emb=Y, id=np.array(ids[::-1]))
    r = run("compare", a, b, *FAST)
    assert r.exit_code == 0 and "differ row by row" in r.stderr and "--ids auto" in r.stderr
    same = write.npz("c.npz", emb=Y, id=np.array(ids))
    assert run("compare", a, same, *FAST).stderr == ""


def test_max_rows_picks_the_same_items_on_both_sides(write, rng):
    X = rng.standard_normal((400, 12))
    ids = np.array([f"r{i}" for i in range(400)])
    perm = rng.permutation(400)
    a = write.npz("a.npz", emb=X, id=ids)
    b = write.npz("b.npz", emb=2.0 * X[perm], id=ids[perm])  # the same items, shuffled and scaled
    doc = json.loads(run("compare", a, b, "--ids", "auto", "--max-rows", "150", "--seed", "9", *FAST).stdout)
    assert doc["n"] == 150 and doc["pairing"]["max_rows"] == 150 and doc["pairing"]["subsample_seed"] == 9
    assert values(doc) == pytest.approx({"mknn": 1.0, "cka": 1.0, "cka-unbiased": 1.0}, abs=1e-12)
    again = json.loads(run("compare", a, b, "--ids", "auto", "--max-rows", "150", "--seed", "9", *FAST).stdout)
    del doc["timing"], again["timing"]
    assert doc == again
    other = write.npz("c.npz", emb=rng.standard_normal((400, 12)), id=ids)
    v1 = values(json.loads(run("compare", a, other, "--max-rows", "150", "--seed", "1", *FAST).stdout))
    v2 = values(json.loads(run("compare", a, other, "--max-rows", "150", "--seed", "2", *FAST).stdout))
    assert v1 != v2
    full = json.loads(run("compare", a, b, "--ids", "auto", "--max-rows", "1000", *FAST).stdout)
    assert full["n"] == 400 and full["pairing"]["max_rows"] is None
    expect_input_error(["compare", a, b, "--max-rows", "0"], "--max-rows")
