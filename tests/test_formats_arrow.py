"""safetensors, Arrow IPC / Feather and directories of shards, each written by its own library, read exactly as .npy."""

import json
import os
import struct

import numpy as np
import pytest
from test_cli import expect_input_error, run

from repalign import io

pa = pytest.importorskip("pyarrow")
st = pytest.importorskip("safetensors.numpy")

N, D1, D2 = 60, 8, 6
STATS = ("--resamples", "20", "--permutations", "20", "--seed", "7")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(20261125)
    z = rng.standard_normal((N, 3))
    X = (z @ rng.standard_normal((3, D1)) + rng.standard_normal((N, D1))).astype(np.float32)
    Y = (z @ rng.standard_normal((3, D2)) + rng.standard_normal((N, D2))).astype(np.float32)
    return X, Y


@pytest.fixture
def y_npy(tmp_path, data):
    p = tmp_path / "y.npy"
    np.save(p, data[1])
    return str(p)


def report(*args):
    """The JSON report of compare, without what depends on the run (timing) or on the file (path, key, format)."""
    r = run("compare", *args, *STATS, "-f", "json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    doc.pop("timing")
    for i in doc["inputs"]:
        for k in ("path", "key", "format"):
            i.pop(k)
    doc["notes"] = [note.split(": ", 1)[1] for note in doc["notes"]]  # each note starts with the input's name
    return doc


def npy_report(tmp_path, X, y):
    p = tmp_path / "x.npy"
    np.save(p, X)
    return report(p, y)


def fixed_list(arr):
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(arr).reshape(-1)), arr.shape[1])


def var_list(arr):
    offsets = pa.array(np.arange(0, arr.size + 1, arr.shape[1], dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(arr).reshape(-1)))


def unchanged(path):
    """The bytes of a file, to check after a refusal that it was not modified."""
    with open(path, "rb") as f:
        return f.read()


# --- safetensors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_safetensors_equals_npy(tmp_path, data, y_npy, dtype):
    X = data[0].astype(dtype)
    p = tmp_path / "x.safetensors"
    st.save_file({"emb": X, "other": np.zeros((3, 2), np.float32), "ids": np.arange(N)}, str(p))
    assert report(f"{p}:emb", y_npy) == npy_report(tmp_path, X, y_npy)
    assert io.describe(f"{p}:emb") == ((N, D1), np.dtype(dtype).itemsize, N * D1 * (np.dtype(dtype).itemsize
                                                                                       + 4 * (dtype == np.float16)))


def test_safetensors_listed_from_the_header_alone(tmp_path, data, monkeypatch):
    p = tmp_path / "x.safetensors"
    st.save_file({"emb": data[0], "ids": np.arange(N, dtype=np.int32)}, str(p))
    import safetensors

    monkeypatch.setattr(safetensors, "safe_open", None)  # listing must not open the tensors
    assert {(i.name, i.shape, i.dtype, i.embedding_like) for i in io.inspect(p)} == {
        ("emb", (N, D1), "float32", True), ("ids", (N,), "int32", False)}
    r = run("inspect", p, "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert {a["key"]: a["embedding"] for a in json.loads(r.stdout)["arrays"]} == {"emb": True, "ids": False}


def test_safetensors_bf16_widened_exactly(tmp_path, data, y_npy):
    """BF16 written byte for byte per the safetensors format (numpy cannot save it): the top half of float32 bits."""
    X = data[0]
    top = (X.view(np.uint32) >> 16).astype("<u2")
    header = json.dumps({"emb": {"dtype": "BF16", "shape": [N, D1], "data_offsets": [0, top.nbytes]}}).encode()
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", len(header)) + header + top.tobytes())
    widened = (top.astype(np.uint32) << 16).view(np.float32)  # exactly representable values
    got, expected = report(p, y_npy), npy_report(tmp_path, widened, y_npy)
    assert got.pop("notes") == ["bfloat16 values widened to float32"] and expected.pop("notes") == []
    assert got == expected
    assert [(i.name, i.dtype, i.embedding_like) for i in io.inspect(p)] == [("emb", "bfloat16", True)]
    array, _ = io.reader_for(str(p)).read(None)
    assert array.dtype == np.float32 and np.array_equal(array, widened)


def test_safetensors_ids_pair_by_integer_tensor(tmp_path, data, y_npy):
    X, Y = data
    perm = np.random.default_rng(3).permutation(N)
    a = tmp_path / "a.safetensors"
    b = tmp_path / "b.safetensors"
    st.save_file({"emb": X, "ids": np.arange(N, dtype=np.int64)}, str(a))
    st.save_file({"emb": Y[perm], "ids": perm.astype(np.int64)}, str(b))
    paired = report(a, b, "--ids", "ids")
    ref = report(f"{a}:emb", f"{tmp_path / 'y.npy'}")
    assert paired["metrics"] == ref["metrics"]


def test_safetensors_string_ids_impossible(tmp_path, data, y_npy):
    p = tmp_path / "x.safetensors"
    st.save_file({"emb": data[0], "names": np.zeros(N, np.float32)}, str(p))
    expect_input_error(["compare", p, p, "--ids", "names"], str(p),
                       "integer", "cannot store strings")


def _safetensors_bytes(data):
    b = st.save({"emb": data[0]})
    (length,) = struct.unpack("<Q", b[:8])
    return b, length


@pytest.mark.parametrize("case", ["short", "length", "json", "offsets", "bf16-truncated"])
def test_safetensors_malformed(tmp_path, data, y_npy, case):
    good, length = _safetensors_bytes(data)
    content, needle = {
        "short": (good[:5], "truncated"),
        "length": (struct.pack("<Q", 10**9) + good[8:], "larger than the file"),
        "json": (struct.pack("<Q", length) + b"{not json" + good[8 + 9:], "not valid JSON"),
        "offsets": (good[:-4], "past the end of the file"),
        "bf16-truncated": (good[:8 + length + 10], "past the end of the file"),
    }[case]
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    expect_input_error(["compare", p, y_npy], str(p), needle)
    expect_input_error(["inspect", p], str(p), needle)
    assert unchanged(p) == content


def test_safetensors_integer_tensor_refused(tmp_path, y_npy):
    p = tmp_path / "x.safetensors"
    st.save_file({"emb": np.ones((N, 4), np.int32)}, str(p))
    expect_input_error(["compare", f"{p}:emb", y_npy], f"{p}:emb", "I32", "not floating point")


# --- Arrow IPC / Feather -----------------------------------------------------------------------------------------


def _arrow_table(X, ids=None, fixed=True):
    cols = {"emb": fixed_list(X) if fixed else var_list(X)}
    if ids is not None:
        cols["id"] = pa.array(ids)
    return pa.table(cols)


def write_arrow(path, table, how):
    import pyarrow.feather as feather
    import pyarrow.ipc as ipc

    if how == "feather":  # write_feather compresses with lz4 by default
        feather.write_feather(table, str(path))
    elif how == "ipc-file":
        with ipc.new_file(str(path), table.schema) as w:
            w.write_table(table, max_chunksize=17)  # several record batches
    else:  # the stream format, as Hugging Face datasets writes its .arrow files
        with ipc.new_stream(str(path), table.schema) as w:
            w.write_table(table, max_chunksize=17)


@pytest.mark.parametrize("how,suffix", [("feather", ".feather"), ("ipc-file", ".arrow"), ("stream", ".arrow"),
                                        ("ipc-file", ".ipc")])
@pytest.mark.parametrize("fixed", [True, False])
def test_arrow_equals_npy(tmp_path, data, y_npy, how, suffix, fixed):
    X = data[0]
    p = tmp_path / f"x{suffix}"
    write_arrow(p, _arrow_table(X, [f"item{i}" for i in range(N)], fixed), how)
    assert report(p, y_npy) == npy_report(tmp_path, X, y_npy)
    assert report(f"{p}:emb", y_npy) == npy_report(tmp_path, X, y_npy)
    r = run("inspect", p, "-f", "json")
    assert r.exit_code == 0, r.stderr
    arrays = {a["key"]: (a["shape"], a["embedding"]) for a in json.loads(r.stdout)["arrays"]}
    assert arrays == {"emb": ([N, D1 if fixed else None], True), "id": ([N], False)}
    plan = io.describe(str(p))
    assert plan == (((N, D1), 4, 2 * N * D1 * 4) if fixed else None)


@pytest.mark.parametrize("how", ["feather", "stream"])
@pytest.mark.parametrize("ids", ["strings", "ints"])
def test_arrow_ids_pair_by_column(tmp_path, data, how, ids):
    X, Y = data
    perm = np.random.default_rng(5).permutation(N)
    names = [f"item{i}" for i in range(N)] if ids == "strings" else list(range(1000, 1000 + N))
    a, b = tmp_path / "a.arrow", tmp_path / "b.feather"
    write_arrow(a, _arrow_table(X, names), how)
    write_arrow(b, _arrow_table(Y[perm], [names[i] for i in perm]), "feather")
    np.save(tmp_path / "y.npy", Y)
    paired = report(a, b, "--ids", "auto")
    assert paired["metrics"] == npy_report(tmp_path, X, str(tmp_path / "y.npy"))["metrics"]


def test_arrow_listed_without_reading_the_data(tmp_path, data, monkeypatch):
    import pyarrow.feather as feather

    p = tmp_path / "x.feather"
    write_arrow(p, _arrow_table(data[0], list(range(N))), "feather")
    monkeypatch.setattr(feather, "read_table", None)
    assert [(i.name, i.shape, i.embedding_like) for i in io.inspect(p)] == [("emb", (N, D1), True), ("id", (N,), False)]


@pytest.mark.filterwarnings("ignore:Feather V1 files are deprecated:DeprecationWarning")
@pytest.mark.parametrize("case", ["truncated", "garbage", "empty-magic", "feather-v1"])
def test_arrow_malformed(tmp_path, data, y_npy, case):
    import pyarrow.feather as feather

    p = tmp_path / "bad.feather"
    table = _arrow_table(data[0])
    needle = "cannot be read as arrow"
    if case == "feather-v1":
        feather.write_feather(pa.table({"a": np.arange(N, dtype=np.float32)}), str(p), version=1)
        needle = "Feather version 1"
    else:
        feather.write_feather(table, str(p), compression="uncompressed")
        raw = p.read_bytes()
        needle = "truncated" if case == "truncated" else needle
        p.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": b"ARROW1\x00\x00" + b"\x07" * 100 + b"ARROW1",
                       "empty-magic": b"not an arrow file at all"}[case])
    content = p.read_bytes()
    expect_input_error(["compare", p, y_npy], str(p), needle)
    expect_input_error(["inspect", p], str(p))
    assert unchanged(p) == content


def test_arrow_non_float_list_refused(tmp_path, y_npy):
    p = tmp_path / "x.arrow"
    write_arrow(p, pa.table({"emb": fixed_list(np.ones((N, 3), np.int32))}), "ipc-file")
    expect_input_error(["compare", f"{p}:emb", y_npy], f"{p}:emb", "not floating point")


# --- directories of shards ---------------------------------------------------------------------------------------


def _cuts():
    return [(0, 7), (7, 20), (20, 21), (21, 45), (45, N)]


def write_parquet_shards(folder, X, ids=None, names=None):
    """Spark's layout: part files whose natural order (part-2 before part-10) is the row order, plus markers."""
    import pyarrow.parquet as pq

    folder.mkdir()
    names = names or ["part-2", "part-10", "part-11", "part-100", "part-101"]  # lexical order differs
    for (a, b), name in zip(_cuts(), names):
        cols = {"emb": fixed_list(X[a:b])}
        if ids is not None:
            cols["id"] = pa.array(ids[a:b])
        pq.write_table(pa.table(cols), folder / f"{name}-c000.snappy.parquet")
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / ".part-2-c000.snappy.parquet.crc").write_bytes(b"\x00" * 12)
    return folder


def write_hf_shards(folder, X, ids=None, stream=True):
    """Hugging Face save_to_disk's layout: data-0000k-of-0000n.arrow IPC streams and two JSON files."""
    folder.mkdir()
    cuts = _cuts()
    for k, (a, b) in enumerate(cuts):
        cols = {"emb": var_list(X[a:b])}
        if ids is not None:
            cols["id"] = pa.array(ids[a:b])
        write_arrow(folder / f"data-{k:05d}-of-{len(cuts):05d}.arrow", pa.table(cols),
                    "stream" if stream else "ipc-file")
    (folder / "dataset_info.json").write_text("{}")
    (folder / "state.json").write_text("{}")
    return folder


@pytest.mark.parametrize("layout", ["spark", "hf-stream", "ipc-files"])
def test_shards_equal_npy_in_natural_order(tmp_path, data, y_npy, layout):
    X = data[0]
    folder = tmp_path / "emb"
    if layout == "spark":
        write_parquet_shards(folder, X)
    else:
        write_hf_shards(folder, X, stream=layout == "hf-stream")
    ref = npy_report(tmp_path, X, y_npy)
    assert report(folder, y_npy) == ref
    assert report(f"{folder}/:emb", y_npy) == ref
    assert report(f"{folder}:emb", y_npy) == ref
    array, _ = io.reader_for(str(folder)).read("emb")
    assert np.array_equal(array, X)
    r = run("inspect", folder, "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert [(a["key"], a["shape"][0], a["embedding"]) for a in json.loads(r.stdout)["arrays"]] == [("emb", N, True)]


def test_shards_memory_plan_from_metadata(tmp_path, data, monkeypatch):
    import pyarrow.dataset as ds

    folder = write_parquet_shards(tmp_path / "emb", data[0])
    hf = write_hf_shards(tmp_path / "hf", data[0].astype(np.float64), stream=False)
    monkeypatch.setattr(ds, "dataset", None)  # planning reads no data
    assert io.describe(str(folder)) == ((N, D1), 4, 2 * N * D1 * 4)
    assert io.describe(f"{folder}:emb") == ((N, D1), 4, 2 * N * D1 * 4)
    assert io.describe(str(hf)) is None  # list<double> in arrow: the width is only known once read


def test_shards_ids_pair_by_column(tmp_path, data):
    X, Y = data
    perm = np.random.default_rng(9).permutation(N)
    names = [f"item{i}" for i in range(N)]
    a = write_parquet_shards(tmp_path / "a", X, ids=names)
    b = write_hf_shards(tmp_path / "b", Y[perm], ids=[names[i] for i in perm])
    np.save(tmp_path / "y.npy", Y)
    paired = report(a, b, "--ids", "auto")
    assert paired["metrics"] == npy_report(tmp_path, X, str(tmp_path / "y.npy"))["metrics"]


def test_shards_mismatched_schema_names_the_shard(tmp_path, data, y_npy):
    import pyarrow.parquet as pq

    folder = write_parquet_shards(tmp_path / "emb", data[0])
    odd = folder / "part-11-c000.snappy.parquet"
    pq.write_table(pa.table({"emb": fixed_list(data[0][20:21].astype(np.float64))}), odd)
    expect_input_error(["compare", folder, y_npy], str(odd), "schema differs from the first shard",
                       "part-2-c000.snappy.parquet", "double")
    expect_input_error(["inspect", folder], str(odd))


def test_directory_without_shards_refused(tmp_path, y_npy):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("x")
    (folder / "_SUCCESS").write_text("")
    expect_input_error(["compare", folder, y_npy], str(folder), "no parquet or arrow shards", "readme.txt")
    expect_input_error(["compare", f"{folder}:emb", y_npy], str(folder), "no parquet or arrow shards")
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_input_error(["inspect", empty], str(empty), "no parquet or arrow shards", "other files: none")


def test_directory_mixing_formats_refused(tmp_path, data, y_npy):
    folder = write_parquet_shards(tmp_path / "emb", data[0])
    write_arrow(folder / "extra.arrow", _arrow_table(data[0]), "ipc-file")
    expect_input_error(["compare", folder, y_npy], str(folder), "mixing parquet (5) and arrow (1)")


def test_truncated_shard_named(tmp_path, data, y_npy):
    folder = write_parquet_shards(tmp_path / "emb", data[0])
    bad = folder / "part-100-c000.snappy.parquet"
    raw = bad.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    expect_input_error(["compare", folder, y_npy], str(folder))
    assert bad.read_bytes() == raw[: len(raw) // 2]


def test_a_file_prefix_wins_over_a_directory(tmp_path, data):
    """'d:x.npy' is split at the directory only when no file prefix exists (a file name may contain a colon)."""
    folder = write_parquet_shards(tmp_path / "d", data[0])
    assert io.parse_selector(f"{folder}:emb") == io.Selector(str(folder), "emb")
    odd = tmp_path / "d:x.npy"
    np.save(odd, data[0])
    assert io.parse_selector(str(odd)) == io.Selector(str(odd))
    assert os.path.isdir(folder)
