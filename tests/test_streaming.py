"""Inputs read in row blocks: a run forced to stream gives the in-memory run's JSON, number for number."""

import json

import numpy as np
import pytest
from conftest import make_pair
from test_cli import run

from repalign import memory
from repalign.engine.streamed import StreamedLayer
from repalign.io.rows import ArrayRows, ChunkedRows, unit_bounds
from repalign.preprocess import Preprocessing, apply, clip_threshold, clip_threshold_streamed
from repalign.validation import as_embedding

pytestmark = pytest.mark.usefixtures("one_faiss_thread")

# Few resamples and permutations: the equality of the two runs is the point, not the intervals' precision.
FAST = ("--resamples", "100", "--seed", "7", "-f", "json")


def _numbers(doc: dict) -> dict:
    """The report without timings and without the notes that say the run streamed."""
    doc = dict(doc)
    doc.pop("timing", None)
    doc["notes"] = [n for n in doc.get("notes", []) if "streamed" not in n]
    return doc


def _compare(args, monkeypatch, stream: bool, env=None) -> dict:
    """One compare, in memory or forced to stream (every streamable input, whatever its size)."""
    with monkeypatch.context() as m:
        if stream:
            m.setattr(memory, "STREAM_WORKING_BYTES", 0)
            m.setattr(memory, "SEARCH_BLOCK_BYTES", 1)  # exact search in database blocks of 1024 rows
        r = run("compare", *args, *FAST, env=env)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    streamed = [n for n in doc["notes"] if "streamed from the file in row blocks" in n]
    assert bool(streamed) == stream, doc["notes"]
    return doc


def _same(args, monkeypatch) -> dict:
    mem = _compare(args, monkeypatch, stream=False)
    streamed = _compare(args, monkeypatch, stream=True)
    assert _numbers(streamed) == _numbers(mem)
    return mem


@pytest.fixture
def signal_pair(rng):
    X, Y = make_pair(rng, n=2500, d1=40, d2=24, signal=2.0, dtype=np.float32)
    return X, Y


@pytest.mark.parametrize(("search", "signal"), [("exact", 0.05), ("approx", 2.0)])
def test_npy_streamed_equals_in_memory(write, rng, monkeypatch, search, signal):
    """Weak signal: CKA's p-values come from permutations (the whole layers, materialised from blocks)."""
    X, Y = make_pair(rng, n=2500, d1=40, d2=24, signal=signal, dtype=np.float32)
    args = [write.npy(X, "x.npy"), write.npy(Y, "y.npy"), "-m", "mknn,cka,cka-unbiased", "--search", search,
            "--permutations", "40"]
    doc = _same(args, monkeypatch)
    assert all(m["ci_low"] is not None and m["p_value"] is not None for m in doc["metrics"])
    assert doc["metrics"][1]["p_method"] == ("permutation" if signal < 1 else "exact-moment bound (Cantelli)")
    assert (doc.get("search") is not None) == (search == "approx")


def test_hdf5_and_parquet_streamed_with_preprocessing(write, signal_pair, monkeypatch, tmp_path):
    import h5py
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, Y = signal_pair
    h5 = tmp_path / "x.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("emb", data=X.astype(np.float16), chunks=(300, X.shape[1]))  # widened to float32
    pq_path = tmp_path / "y.parquet"
    col = pa.FixedSizeListArray.from_arrays(pa.array((Y * 1e30).astype(np.float64).ravel()), Y.shape[1])
    pq.write_table(pa.table({"emb": col}), pq_path, row_group_size=700)  # rescaled by 2^-k on reading
    args = [f"{h5}:emb", f"{pq_path}:emb", "-m", "mknn,cka", "--clip", "0.9", "--normalize"]
    doc = _same(args, monkeypatch)
    assert any("scaled by 2^" in n for n in doc["notes"]) and any("float16" in n for n in doc["notes"])


def test_sweep_streamed_equals_in_memory(write, rng, monkeypatch):
    X, Y = make_pair(rng, n=900, d1=20, d2=16, signal=2.0, dtype=np.float32)
    layers = np.stack([X, X + rng.standard_normal(X.shape).astype(np.float32), -X], axis=1)
    args = [write.npy(layers, "layers.npy"), write.npy(Y, "y.npy"), "-m", "mknn,cka"]
    doc = _same(args, monkeypatch)
    assert doc["sweep"] is not None


def _write_large(path, n: int, d: int, seed: int, base=None):
    """An n×d float32 .npy written block by block (X, or X's first columns plus noise when ``base`` is given)."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(seed)
    for s0 in range(0, n, 250_000):
        m = min(n, s0 + 250_000) - s0
        block = rng.standard_normal((m, d), dtype=np.float32)
        if base is not None:
            block += 2 * np.asarray(base[s0 : s0 + m, :d])
        out[s0 : s0 + m] = block
    out.flush()
    del out
    return str(path)


def test_memory_limit_far_below_the_inputs_streams_in_bounded_memory(tmp_path):
    """512 MB of .npy inputs under REPALIGN_MEMORY_LIMIT=400M: the run streams, its peak RSS (the child's own
    VmHWM, the interpreter included) stays under the limit, and its numbers are the unlimited in-memory
    run's. Narrow rows keep the CKA products cheap while the files are large."""
    import subprocess
    import sys

    n, d = 1_000_000, 64
    a = _write_large(tmp_path / "a.npy", n, d, 1)
    b = _write_large(tmp_path / "b.npy", n, d, 2, base=np.load(a, mmap_mode="r"))
    # VmHWM: the peak RSS of this process image (ru_maxrss would carry the forking test process's own peak).
    script = ("import sys\n"
              "from repalign.cli import main\n"
              "try:\n    main()\nfinally:\n"
              "    peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0]\n"
              "    sys.stderr.write(f'maxrss={peak.split()[1]}\\n')\n")
    args = [sys.executable, "-c", script, "compare", a, b, "-m", "cka,cka-unbiased", "--resamples", "0", "--seed", "3",
            "-f", "json"]

    def child(limit):
        env = {**__import__("os").environ, "REPALIGN_MEMORY_LIMIT": limit}
        proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        rss = int(proc.stderr.rsplit("maxrss=", 1)[1].split()[0]) * 1024
        return json.loads(proc.stdout), rss

    streamed, rss = child("400M")
    assert any("streamed from the file in row blocks" in note for note in streamed["notes"])
    assert rss < 400 * 2**20 < 2 * n * d * 4
    with pytest.MonkeyPatch.context() as m:  # the reference: in memory, however large the plan
        m.setattr(memory, "STREAM_WORKING_BYTES", 2**62)
        r = run(*args[3:])
    assert r.exit_code == 0, r.stderr
    in_memory = json.loads(r.stdout)
    assert not any("streamed" in note for note in in_memory["notes"])
    assert _numbers(streamed) == _numbers(in_memory)


def test_whole_array_metric_is_refused_when_streaming_is_needed(write, signal_pair, monkeypatch):
    X, Y = signal_pair
    monkeypatch.setattr(memory, "BASE_BYTES", 0)
    r = run("compare", write.npy(X, "x.npy"), write.npy(Y, "y.npy"), "-m", "cka,svcca", *FAST,
            env={"REPALIGN_MEMORY_LIMIT": "3M"})
    assert r.exit_code == 2
    line = r.stderr.strip().splitlines()[-1]
    assert "svcca needs both whole arrays in memory" in line and "GB" in line and "Traceback" not in r.stderr


def test_text_input_cannot_stream(write, signal_pair, monkeypatch, tmp_path):
    X, Y = signal_pair
    csv = tmp_path / "y.csv"
    np.savetxt(csv, Y, delimiter=",")
    monkeypatch.setattr(memory, "BASE_BYTES", 0)
    r = run("compare", write.npy(X, "x.npy"), csv, "-m", "cka", *FAST, env={"REPALIGN_MEMORY_LIMIT": "1M"})
    assert r.exit_code == 2 and "needs about" in r.stderr and "Traceback" not in r.stderr


def test_streamed_layer_holds_the_in_memory_rows(rng):
    """Blocks, gathered rows and the whole layer equal validation + pairing + preprocessing of the array."""
    X = (rng.standard_normal((3001, 7)) * 1e-30).astype(np.float64)  # rescaled by validation
    X[5] *= 1e6  # a large row: clipping matters
    rows = rng.permutation(3001)[:2500]  # paired rows in another order
    pre = Preprocessing(clip=0.8, normalize=True)
    checked, _ = as_embedding(X, "x")
    expected = apply(checked[rows], pre, "x")
    layer = StreamedLayer(ArrayRows(X), rows, pre, "x", budget=1 << 20, whole_limit=None)
    assert np.array_equal(np.asarray(layer), expected)
    assert np.array_equal(layer[100:2100], expected[100:2100])
    pick = np.array([7, 2499, 0, 7, 1234])
    assert np.array_equal(layer[pick], expected[pick])
    assert np.array_equal(layer[-1], expected[-1])


def test_chunked_rows_read_whole_units_in_any_order(rng):
    X = rng.standard_normal((1000, 3))
    reads = []

    def read(unit, start, stop):
        reads.append(unit)
        return X[start:stop].copy()

    src = ChunkedRows((1000, 3), X.dtype, unit_bounds(1000, 128), read)
    assert np.array_equal(src.block(100, 700), X[100:700])
    rows = np.array([999, 0, 130, 129, 999, 500])
    assert np.array_equal(src.take(rows), X[rows])
    assert set(reads) <= set(range(8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("q", [0.0, 0.5, 0.95, 1.0])
def test_streamed_quantile_is_the_partitioned_one(rng, dtype, q):
    X = (rng.standard_normal((777, 13)) * np.exp(3 * rng.standard_normal((777, 13)))).astype(dtype)
    X[3] = 0.0
    X[4, :5] = -X[4, 5:10]  # ties of |x|

    def blocks():
        return (X[s : s + 100] for s in range(0, 777, 100))

    assert clip_threshold_streamed(blocks, q) == clip_threshold(X, q)


def test_million_row_plan_fits_the_inputs_plus_two_gigabytes():
    """The issue's target run (n = 10⁶, d = 768, mknn with resamples and cka, approximate search): the streamed
    plan holds one IVF index and per-row work, within the 6.1 GB of inputs plus 2 GB."""
    n, d = 1_000_000, 768
    parts = memory.estimate_streamed(n, (d, d), resident=(0, 0), neighbors=True, depth=30, k=10, cka=True,
                                     resamples=1000, layers=(1, 1), approx_index=True, normalize=False,
                                     unit_bytes=2 * d * 8)
    assert n * d * 4 < parts["working"] and parts["total"] <= 2 * n * d * 4 + 2 * 2**30


def test_layered_hdf5_streams_one_layer_per_pass(tmp_path, rng):
    """An n×L×d HDF5 dataset, chunked across layers: each layer's blocks equal that layer of the array."""
    import h5py

    from repalign.io import open_layers

    stack = rng.standard_normal((1000, 3, 5)).astype(np.float32)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("emb", data=stack, chunks=(128, 3, 5))
    layers = open_layers(f"{tmp_path / 's.h5'}:emb")
    for i in range(3):
        src = layers.rows(i)
        assert src is not None and src.unit_rows == 1000  # ~16 MB of whole chunk rows: the whole dataset
        assert np.array_equal(src.block(100, 900), stack[100:900, i])
        assert np.array_equal(src.take(np.array([999, 3, 500])), stack[[999, 3, 500], i])
