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


# ----------------------------------------------------------------------------- each input listed once per run


@pytest.fixture
def listings(monkeypatch):
    """Counts, per file, every listing made by a reader and (for HDF5) every walk of the file's tree."""
    import collections

    import h5py

    counts = {"reader": collections.Counter(), "h5 walk": collections.Counter()}
    for reader in io.READERS.values():
        original = reader._scan  # noqa: SLF001

        def scan(self, original=original):
            counts["reader"][self.path] += 1
            return original(self)

        monkeypatch.setattr(reader, "_scan", scan)
    walk = h5py.Group.visititems

    def visititems(self, func):
        counts["h5 walk"][self.file.filename] += 1
        return walk(self, func)

    monkeypatch.setattr(h5py.Group, "visititems", visititems)
    return counts


def _id_files(write, fmt, rng):
    """Two files of one format holding an embedding and string ids, b's rows shuffled."""
    X, Y = rng.standard_normal((60, 5)), rng.standard_normal((60, 7))
    ids = [f"item{i:02d}" for i in range(60)]
    perm = rng.permutation(60)
    if fmt == "hdf5-layers":  # each layer is read on its own: none of those reads may list the file again
        stack = np.stack([X, 2 * X, X + 1], axis=1)
        return (write.h5("a.h5", emb=stack, ids=np.array(ids, dtype="S")),
                write.h5("b.h5", emb=Y[perm], ids=np.array([ids[i] for i in perm], dtype="S")))
    if fmt == "hdf5":
        return (write.h5("a.h5", emb=X, ids=np.array(ids, dtype="S")),
                write.h5("b.h5", emb=Y[perm], ids=np.array([ids[i] for i in perm], dtype="S")))
    return (write.parquet("a.parquet", emb=X, ids=ids),
            write.parquet("b.parquet", emb=Y[perm], ids=[ids[i] for i in perm]))


@pytest.mark.parametrize("fmt", ["hdf5", "hdf5-layers", "parquet"])
def test_compare_with_ids_lists_each_input_once(write, rng, listings, fmt):
    from test_cli import run

    a, b = _id_files(write, fmt, rng)
    r = run("compare", a, b, "--ids", "auto", "--resamples", "0", "--permutations", "0", "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert dict(listings["reader"]) == {a: 1, b: 1}
    if fmt.startswith("hdf5"):
        assert dict(listings["h5 walk"]) == {a: 1, b: 1}


def test_a_second_run_lists_the_files_again(write, rng, listings):
    """Listings are shared within a run, not kept across runs (a file may change in between)."""
    from test_cli import run

    a, b = _id_files(write, "hdf5", rng)
    for _ in range(2):
        assert run("compare", a, b, "--ids", "auto", "--resamples", "0", "--permutations", "0").exit_code == 0
    assert dict(listings["h5 walk"]) == {a: 2, b: 2}


def test_a_changed_file_is_listed_afresh(write, arr):
    p = write.h5(emb=arr)
    kept = io.open_layers(p)  # holds the reader, as a run does
    write.h5(emb=arr[:, :4], other=arr)
    assert kept.shape == (30, 6) and {i.name for i in io.inspect(p)} == {"emb", "other"}
    assert io.open_layers(f"{p}:emb").shape == (30, 4)


def test_every_source_and_reader_implements_its_protocol(write, arr):
    p = write.h5(emb=arr)
    layers = io.open_layers(p)
    in_memory = io.ArrayLayers(arr, "array a")
    for source in (layers, in_memory, io.Checked(layers, arr)):
        assert isinstance(source, io.LayerSource)
    for path in (write.npy(arr), write.npz(emb=arr), p, write.parquet(emb=arr)):
        assert isinstance(io.reader_for(path), io.Reader)
    for name, cls in io.READERS.items():  # every registered reader, exported under its class name
        assert getattr(io, cls.__name__) is cls and cls.__name__ in io.__all__, name
        assert isinstance(cls(str(p)), io.Reader), name
