"""Readers: round trips for every format, selectors, ambiguity, inspect, and bad files."""

import numpy as np
import pytest

from repalign import io
from repalign.errors import InputError


@pytest.fixture
def arr(rng):
    return rng.standard_normal((30, 6)).astype(np.float32)


def test_npy_round_trip_memory_mapped(write, arr):
    loaded = io.load(write.npy(arr))
    assert isinstance(loaded.array, np.memmap)
    assert np.array_equal(loaded.array, arr) and loaded.format == "npy" and loaded.key is None


def test_npz_member_and_auto_choice(write, arr):
    p = write.npz(emb=arr, ids=np.arange(30))
    assert np.array_equal(io.load(p).array, arr)  # the only 2-D float member
    assert io.load(p).key == "emb"
    assert np.array_equal(io.load(f"{p}:emb").array, arr)


def test_hdf5_nested_dataset(write, arr):
    p = write.h5(model__layer3=arr, ids=np.arange(30))
    assert np.array_equal(io.load(p).array, arr)
    assert np.array_equal(io.load(f"{p}:model/layer3").array, arr)
    assert np.array_equal(io.load(f"{p}:/model/layer3").array, arr)


@pytest.mark.parametrize("fixed", [True, False])
def test_parquet_list_columns(write, arr, fixed):
    p = write.parquet(fixed=fixed, emb=arr, ids=[f"item{i}" for i in range(30)])
    got = io.load(p)
    assert got.key == "emb" and got.array.dtype == np.float32 and got.array.flags.c_contiguous
    assert np.array_equal(got.array, arr)


def test_parquet_sliced_chunks_use_offsets(tmp_path, arr):
    """Multiple row groups / chunks: values must come out in row order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    col = pa.FixedSizeListArray.from_arrays(pa.array(arr.ravel()), 6)
    pq.write_table(pa.table({"emb": col}), tmp_path / "x.parquet", row_group_size=7)
    assert np.array_equal(io.load(str(tmp_path / "x.parquet")).array, arr)


def test_ambiguous_lists_candidates(write, arr):
    p = write.npz(a=arr, b=arr[:, :2])
    with pytest.raises(InputError) as e:
        io.load(p)
    msg = str(e.value)
    assert p in msg and "a (30×6 float32)" in msg and "b (30×2 float32)" in msg


def test_unknown_key_lists_available(write, arr):
    p = write.h5(emb=arr)
    with pytest.raises(InputError, match=r"no dataset 'nope' \(available: emb \(30×6 float32\)\)"):
        io.load(f"{p}:nope")


def test_selector_splits_only_when_path_exists(tmp_path, arr):
    odd = tmp_path / "we:ird.npy"
    np.save(odd, arr)
    assert io.parse_selector(str(odd)) == io.Selector(str(odd))
    assert io.parse_selector(f"{odd}:k") == io.Selector(str(odd), "k")
    with pytest.raises(InputError, match="no such file"):
        io.parse_selector(str(tmp_path / "missing.npy:k"))


def test_inspect_lists_everything(write, arr):
    p = write.h5(emb=arr, ids=np.arange(30), meta__names=np.array([b"x", b"y"]))
    infos = {i.name: i for i in io.inspect(p)}
    assert infos["emb"].embedding_like and infos["emb"].shape == (30, 6)
    assert not infos["ids"].embedding_like
    assert "meta/names" in infos


def test_inspect_parquet(write, arr):
    p = write.parquet(fixed=False, emb=arr, ids=list("abcdefghijklmnopqrstuvwxyz1234"))
    infos = {i.name: i for i in io.inspect(p)}
    assert infos["emb"].embedding_like and infos["emb"].shape == (30, None)
    assert not infos["id"].embedding_like


def test_npy_pickle_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="never unpickles"):
        io.load(str(tmp_path / "o.npy"))


def test_file_not_modified(write, arr):
    import os

    p = write.h5(emb=arr)
    before = (open(p, "rb").read(), os.stat(p).st_mtime_ns)
    io.load(p)
    io.inspect(p)
    assert before == (open(p, "rb").read(), os.stat(p).st_mtime_ns)
