"""zarr v2 and v3 directory stores, written by zarr itself, give exactly the result of the same array saved as
.npy; layers, ids, inspect and the memory plan work; missing chunks and corrupt metadata exit 2."""

import builtins
import hashlib
import json
import os

import numpy as np
import pytest
from test_cli import expect_input_error, run

import repalign.io as rio

zarr = pytest.importorskip("zarr")

FAST = ["--resamples", "0", "--permutations", "0", "-f", "json", "-m", "mknn,cka,cka-unbiased", "--k", "5"]
VERSIONS = [2, 3]


def report(*args):
    r = run("compare", *args, *FAST, "--seed", "7")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    doc.pop("timing")
    for i in doc["inputs"]:
        del i["path"], i["format"], i["key"]
    return doc


def tree_digest(folder):
    """Every file under ``folder`` with its bytes: the store must come out of a run unchanged."""
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            h.update(p.encode() + open(p, "rb").read())
    return h.hexdigest()


def refused(store, args, *needles):
    before = tree_digest(store)
    expect_input_error(args, str(store), *needles)
    assert tree_digest(store) == before


@pytest.fixture
def XY(rng):
    from conftest import make_pair

    return make_pair(rng, n=120, d1=7, d2=5)


def store(path, version, **arrays):
    """A zarr group holding ``arrays`` (name → array, 'a/b' in a subgroup), chunked in several pieces."""
    g = zarr.open_group(str(path), mode="w", zarr_format=version)
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        chunks = tuple(max(1, s // 3) for s in arr.shape)
        kind = str if arr.dtype.kind == "U" else arr.dtype
        z = g.create_array(name, shape=arr.shape, chunks=chunks, dtype=kind)
        z[...] = arr
    return path


@pytest.mark.parametrize("version", VERSIONS)
def test_group_store_gives_the_npy_result(write, XY, tmp_path, version):
    X, Y = XY
    a = store(tmp_path / "a.zarr", version, emb=X)
    b = store(tmp_path / "b.zarr", version, **{"model/final": Y.astype(np.float32), "other": Y[:, :2]})
    assert np.array_equal(rio.load(str(a)).array, X)
    assert report(a, f"{b}:model/final") == report(write.npy(X, "x.npy"), write.npy(Y.astype(np.float32), "y.npy"))
    keys = {i["key"]: i for i in json.loads(run("inspect", b, "-f", "json").stdout)["arrays"]}
    assert set(keys) == {"model/final", "other"} and keys["model/final"]["shape"] == [120, 5]
    assert rio.describe(f"{b}:model/final") == ((120, 5), 4, 120 * 5 * 4)


@pytest.mark.parametrize("version", VERSIONS)
def test_array_store_and_named_format(write, XY, tmp_path, version):
    X, Y = XY
    a = tmp_path / "plain"  # no .zarr suffix: found by its metadata
    z = zarr.open_array(str(a), mode="w", shape=X.shape, chunks=(50, 7), dtype=X.dtype, zarr_format=version)
    z[...] = X
    assert np.array_equal(rio.load(str(a)).array, X)
    assert np.array_equal(rio.load(f"{a}@zarr").array, X)
    assert report(a, write.npy(Y, "y.npy")) == report(write.npy(X, "x.npy"), write.npy(Y, "y.npy"))


@pytest.mark.parametrize("version", VERSIONS)
def test_layers_and_ids(write, XY, tmp_path, rng, version):
    X, Y = XY
    stack = np.stack([X, X * 2 + 1, rng.standard_normal(X.shape)], axis=1)
    names = np.array([f"item{i}" for i in range(120)])
    perm = rng.permutation(120)
    a = store(tmp_path / "a.zarr", version, feats=stack, id=names)
    b = store(tmp_path / "b.zarr", version, emb=Y[perm], ids=perm.astype(np.int64))
    c = write.npz("c.npz", emb=Y[perm], id=names[perm])
    assert report(a, write.npy(Y, "y.npy")) == report(write.npy(stack, "s.npy"), write.npy(Y, "y.npy"))
    loaded = rio.open_layers(f"{a}:feats")
    assert np.array_equal(loaded.read(1), stack[:, 1, :])
    got = report(f"{a}:feats", c, "--ids", "auto")
    assert got["pairing"]["paired"] == 120 and got["pairing"]["ids"] == ["id", "id"]
    assert got["metrics"] == report(write.npy(stack, "s.npy"), write.npy(Y, "y.npy"))["metrics"]
    d = write.npz("d.npz", emb=Y, id=np.arange(120))
    got = report(b, d, "--ids", "auto")  # b's integer ids are the row numbers of Y
    assert got["pairing"]["paired"] == 120 and got["pairing"]["ids"] == ["ids", "id"]
    npz = write.npz("b.npz", emb=Y[perm], ids=perm.astype(np.int64))
    assert got == report(npz, d, "--ids", "auto")  # the same pairing as the arrays saved with numpy


@pytest.mark.parametrize("version", VERSIONS)
def test_missing_chunk_is_refused(XY, tmp_path, version):
    X, _ = XY
    a = store(tmp_path / "a.zarr", version, emb=X)
    chunk = os.path.join(a, "emb", "1.0" if version == 2 else os.path.join("c", "1", "0"))
    os.remove(chunk)
    refused(a, ["compare", f"{a}:emb", f"{a}:emb"], "emb", "missing chunk", "1")
    assert run("inspect", a).exit_code == 0  # listing reads metadata only


@pytest.mark.parametrize("version", VERSIONS)
def test_corrupt_metadata_is_refused(XY, tmp_path, version):
    X, _ = XY
    a = store(tmp_path / "a.zarr", version, emb=X)
    meta = os.path.join(a, "emb", ".zarray" if version == 2 else "zarr.json")
    with open(meta, "r+b") as f:
        f.truncate(20)
    refused(a, ["compare", a, a], "corrupt metadata", "JSON")
    refused(a, ["inspect", a], "corrupt metadata")


def test_pickle_codec_is_refused(XY, tmp_path):
    X, _ = XY
    a = store(tmp_path / "a.zarr", 2, emb=X)
    meta = os.path.join(a, "emb", ".zarray")
    doc = json.load(open(meta))
    doc["filters"] = [{"id": "pickle", "protocol": 5}]
    json.dump(doc, open(meta, "w"))
    refused(a, ["compare", a, a], "pickle")


def test_a_directory_that_is_no_store_is_refused(tmp_path):
    empty = tmp_path / "e.zarr"
    empty.mkdir()
    refused(empty, ["compare", empty, empty], "not a zarr store")


def test_without_zarr_the_extra_is_named(XY, tmp_path, monkeypatch):
    X, _ = XY
    a = store(tmp_path / "a.zarr", 3, emb=X)
    real = builtins.__import__

    def no_zarr(name, *args, **kwargs):
        if name == "zarr" or name.startswith("zarr."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zarr)
    refused(a, ["compare", a, a], "pip install 'repalign[zarr]'")
