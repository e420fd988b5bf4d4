"""PyTorch .pt/.pth files (written by torch.save), standard input and format overrides (PATH@FORMAT,
--format-a/--format-b), each checked against the same array saved as .npy."""

import builtins
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from repalign import io
from repalign.cli import app

runner = CliRunner()
FAST = ["-f", "json", "--seed", "7", "-B", "20", "-P", "20"]
"""Few resamples and permutations: the reports are compared with each other, not with a reference value."""


def run(*args, input=None, env=None):
    return runner.invoke(app, [str(a) for a in args], input=input, env=env)


def report(*args, input=None):
    """The JSON report of a compare or matrix run, without what differs between formats of the same data
    (timing, and each input's path, key and format, also where the notes name it)."""
    r = run(*args, *FAST, input=input)
    assert r.exit_code == 0, (r.exit_code, r.stderr)
    doc = json.loads(r.stdout)
    del doc["timing"]
    for side in doc.get("inputs", []):
        doc["notes"] = [note.replace(side["path"] or "", side["label"]) for note in doc["notes"]]
        for field in ("path", "key", "format"):
            side.pop(field, None)
    return doc


def expect_error(args, *needles, input=None):
    r = run(*args, input=input)
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def data(rng):
    """Two n×d float32 views of 80 items and a layered pair (n×L×d), saved as .npy as the reference."""
    z = rng.standard_normal((80, 4))
    x = (z @ rng.standard_normal((4, 12)) + rng.standard_normal((80, 12))).astype(np.float32)
    y = (z @ rng.standard_normal((4, 9)) + rng.standard_normal((80, 9))).astype(np.float32)
    lx = np.stack([x + i * rng.standard_normal(x.shape).astype(np.float32) for i in range(3)], axis=1)
    ly = np.stack([y + i * rng.standard_normal(y.shape).astype(np.float32) for i in range(2)], axis=1)
    return x, y, lx, ly


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


# ---------------------------------------------------------------- PyTorch


def test_single_tensor_same_as_npy(torch, data, tmp_path):
    x, y, _, _ = data
    np.save(tmp_path / "x.npy", x), np.save(tmp_path / "y.npy", y)
    torch.save(torch.from_numpy(x), tmp_path / "x.pt")
    torch.save(torch.from_numpy(y), tmp_path / "y.pth")
    assert report("compare", tmp_path / "x.pt", tmp_path / "y.pth") == report("compare", tmp_path / "x.npy",
                                                                              tmp_path / "y.npy")
    loaded = io.load(str(tmp_path / "x.pt"))
    assert loaded.format == "torch" and loaded.array.dtype == np.float32
    assert np.array_equal(loaded.array, x)


def test_dict_keys_and_nested_paths(torch, data, tmp_path):
    x, y, _, _ = data
    np.save(tmp_path / "x.npy", x), np.save(tmp_path / "y.npy", y)
    torch.save({"emb": torch.from_numpy(x), "other": torch.from_numpy(y)}, tmp_path / "a.pt")
    torch.save({"model": {"final": torch.from_numpy(y), "first": torch.from_numpy(x)}, "step": 3}, tmp_path / "b.pt")
    want = report("compare", tmp_path / "x.npy", tmp_path / "y.npy")
    assert report("compare", f"{tmp_path / 'a.pt'}:emb", f"{tmp_path / 'b.pt'}:model/final") == want
    assert np.array_equal(io.load(f"{tmp_path / 'b.pt'}:model/first").array, x)
    expect_error(["compare", tmp_path / "a.pt", tmp_path / "y.npy"], "a.pt", "2 candidate entrys")
    expect_error(["compare", f"{tmp_path / 'a.pt'}:nope", tmp_path / "y.npy"], "a.pt", "no entry 'nope'", "emb")


def test_platonic_rep_feature_files_give_the_layer_sweep(torch, data, tmp_path):
    """platonic-rep's extract_features.py saves {"feats": n×L×d, "num_params": int, "mask": ...}."""
    _, _, lx, ly = data
    np.save(tmp_path / "llm.npy", lx), np.save(tmp_path / "lvm.npy", ly)
    mask = torch.ones(80, 5)  # a 2-D float entry next to feats: without the feats rule it would be chosen
    torch.save({"feats": torch.from_numpy(lx), "num_params": 7_000_000, "mask": mask, "loss": torch.rand(80)},
               tmp_path / "llm.pt")
    torch.save({"feats": torch.from_numpy(ly), "num_params": 86_000_000}, tmp_path / "lvm.pt")
    got = report("compare", tmp_path / "llm.pt", tmp_path / "lvm.pt")
    assert got == report("compare", tmp_path / "llm.npy", tmp_path / "lvm.npy")
    assert got["sweep"] is not None
    source = io.open_layers(str(tmp_path / "llm.pt"))
    assert source.key == "feats" and source.layered and len(source) == 3
    assert np.array_equal(source.read(1), np.ascontiguousarray(lx[:, 1, :]))


def test_inspect_lists_entries(torch, data, tmp_path):
    _, _, lx, _ = data
    torch.save({"feats": torch.from_numpy(lx), "num_params": 5, "ids": ["a", "b"]}, tmp_path / "f.pt")
    r = run("inspect", tmp_path / "f.pt", "-f", "json")
    assert r.exit_code == 0, r.stderr
    rows = {a["key"]: a for a in json.loads(r.stdout)["arrays"]}
    assert rows["feats"]["shape"] == [80, 3, 12] and rows["feats"]["layers"] == 3
    assert rows["num_params"]["dtype"] == "int" and rows["ids"]["dtype"] == "str"


def test_plan_from_shapes_without_reading(torch, data, tmp_path):
    x, _, lx, _ = data
    torch.save({"feats": torch.from_numpy(lx)}, tmp_path / "f.pt")
    torch.save(torch.from_numpy(x).to(torch.bfloat16), tmp_path / "b.pt")
    assert io.describe(str(tmp_path / "f.pt")) == ((80, 12), 4, 80 * 12 * 4)  # one layer copied out of the map
    assert io.describe(str(tmp_path / "b.pt")) == ((80, 12), 2, 80 * 12 * 4)  # widened to float32
    assert io.stored_bytes(str(tmp_path / "f.pt")) == 0  # memory-mapped
    r = run("compare", tmp_path / "f.pt", tmp_path / "f.pt", env={"REPALIGN_MEMORY_LIMIT": "1000"})
    assert r.exit_code == 2 and "memory" in r.stderr.lower(), r.stderr


def test_grad_half_and_bfloat16(torch, data, tmp_path):
    x, y, _, _ = data
    np.save(tmp_path / "y.npy", y)
    torch.save(torch.from_numpy(x).requires_grad_(True), tmp_path / "g.pt")
    np.save(tmp_path / "x.npy", x)
    assert report("compare", tmp_path / "g.pt", tmp_path / "y.npy") == report("compare", tmp_path / "x.npy",
                                                                              tmp_path / "y.npy")
    bf = torch.from_numpy(x).to(torch.bfloat16)
    torch.save(bf, tmp_path / "bf.pt")
    widened = bf.to(torch.float32).numpy()  # bfloat16 → float32 is exact
    np.save(tmp_path / "bf.npy", widened)
    assert np.array_equal(io.load(str(tmp_path / "bf.pt")).array, widened)
    r = run("compare", tmp_path / "bf.pt", tmp_path / "y.npy", *FAST)
    assert r.exit_code == 0 and "bfloat16 values widened to float32" in r.stderr, r.stderr
    assert json.loads(r.stdout)["notes"] == [f"{tmp_path / 'bf.pt'}: bfloat16 values widened to float32"]
    want = report("compare", tmp_path / "bf.npy", tmp_path / "y.npy")
    assert report("compare", tmp_path / "bf.pt", tmp_path / "y.npy") == {**want, "notes": [
        "a: bfloat16 values widened to float32"]}
    half = torch.from_numpy(x).to(torch.float16)
    torch.save(half, tmp_path / "h.pt")
    np.save(tmp_path / "h.npy", half.numpy())
    r = run("compare", tmp_path / "h.pt", tmp_path / "y.npy", *FAST)
    assert r.exit_code == 0 and "float16 values widened to float32" in r.stderr, r.stderr
    assert report("compare", tmp_path / "h.pt", tmp_path / "y.npy") == report("compare", tmp_path / "h.npy",
                                                                              tmp_path / "y.npy")


def test_integer_ids_pair_rows(torch, data, tmp_path, rng):
    x, y, _, _ = data
    np.save(tmp_path / "x.npy", x), np.save(tmp_path / "y.npy", y)
    order = rng.permutation(80)
    torch.save({"emb": torch.from_numpy(x), "ids": torch.arange(80)}, tmp_path / "a.pt")
    torch.save({"emb": torch.from_numpy(y[order].copy()), "ids": torch.from_numpy(order)}, tmp_path / "b.pt")
    got = report("compare", f"{tmp_path / 'a.pt'}:emb", f"{tmp_path / 'b.pt'}:emb", "--ids", "ids")
    want = report("compare", tmp_path / "x.npy", tmp_path / "y.npy")
    assert got["metrics"] == want["metrics"]
    assert got["pairing"]["paired"] == 80


class Marker:
    """Unpickling this would create a marker file: torch's weights_only unpickler must refuse it first."""

    path = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


class Custom:
    def __init__(self):
        self.values = [1.0, 2.0]


def test_code_in_a_pt_file_never_runs(torch, data, tmp_path):
    marker = tmp_path / "MARKER"
    evil = Marker()
    evil.path = str(marker)
    torch.save({"feats": torch.from_numpy(data[0]), "x": evil}, tmp_path / "evil.pt")
    assert not marker.exists()  # saving pickles the reduce tuple; it does not call it
    before = digest(tmp_path / "evil.pt")
    np.save(tmp_path / "y.npy", data[1])
    for args in (["compare", tmp_path / "evil.pt", tmp_path / "y.npy"], ["inspect", tmp_path / "evil.pt"]):
        line = expect_error(args, str(tmp_path / "evil.pt"), "weights_only=True", "refused")
        assert "system" in line
    assert not marker.exists()
    assert digest(tmp_path / "evil.pt") == before
    torch.save({"obj": Custom()}, tmp_path / "custom.pt")
    expect_error(["inspect", tmp_path / "custom.pt"], "custom.pt", "Custom", "never runs code")


@pytest.mark.parametrize("case", ["garbage", "legacy", "truncated", "empty", "no-tensor", "strings", "float8", "4d"])
def test_malformed_pt_files(torch, data, tmp_path, case):
    x, y, _, _ = data
    np.save(tmp_path / "y.npy", y)
    p = tmp_path / "bad.pt"
    needle = "bad.pt"
    if case == "garbage":
        p.write_bytes(b"this is not a torch file\n" * 10)
        needle = "not a torch.save zip archive"
    elif case == "legacy":  # torch.save's format before 1.6: it cannot be memory-mapped
        torch.save(torch.from_numpy(x), p, _use_new_zipfile_serialization=False)
        needle = "not a torch.save zip archive"
    elif case == "truncated":
        torch.save(torch.from_numpy(x), p)
        p.write_bytes(p.read_bytes()[:300])
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "no-tensor":
        torch.save({"a": 1, "b": "text"}, p)
        needle = "no 2-D"
    elif case == "strings":
        torch.save({"emb": ["a", "b"]}, p)
        p, needle = f"{p}:emb", "list of strings"
    elif case == "float8":
        if not hasattr(torch, "float8_e4m3fn"):
            pytest.skip("no float8 in this torch")
        torch.save({"emb": torch.from_numpy(x).to(torch.float8_e4m3fn)}, p)
        p, needle = f"{p}:emb", "float8_e4m3fn"
    else:
        torch.save(torch.zeros(4, 3, 2, 2), p)
        needle = "4×3×2×2"
    path = str(p).split(":")[0]
    before = digest(path)
    expect_error(["compare", p, tmp_path / "y.npy"], path, needle)
    assert digest(path) == before


def test_without_torch_names_the_extra(tmp_path, monkeypatch, data):
    """Runs without torch installed too: the import is made to fail."""
    real = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    p = tmp_path / "x.pt"
    p.write_bytes(b"PK\x03\x04 whatever")
    np.save(tmp_path / "y.npy", data[1])
    line = expect_error(["compare", p, tmp_path / "y.npy"], str(p), "pip install 'repalign[torch]'")
    assert line.endswith("pip install 'repalign[torch]'")
    expect_error(["inspect", p], "pip install 'repalign[torch]'")


# ---------------------------------------------------------------- standard input and format overrides


def test_stdin_npy_same_as_file(data, tmp_path):
    x, y, _, _ = data
    np.save(tmp_path / "x.npy", x), np.save(tmp_path / "y.npy", y)
    want = report("compare", tmp_path / "x.npy", tmp_path / "y.npy")
    raw = (tmp_path / "x.npy").read_bytes()
    assert report("compare", "-", tmp_path / "y.npy", input=raw) == want
    assert report("compare", "-@npy", tmp_path / "y.npy", input=raw) == want
    assert report("compare", tmp_path / "y.npy", "-", input=raw) == report("compare", tmp_path / "y.npy",
                                                                           tmp_path / "x.npy")


def test_stdin_parquet_and_npz(write, data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, y, _, _ = data
    np.save(tmp_path / "x.npy", x), np.save(tmp_path / "y.npy", y)
    want = report("compare", tmp_path / "x.npy", tmp_path / "y.npy")
    pq.write_table(pa.table({"emb": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 12),
                             "id": np.arange(80)}), tmp_path / "x.parquet")
    raw = (tmp_path / "x.parquet").read_bytes()
    assert report("compare", "-@parquet", tmp_path / "y.npy", input=raw) == want
    assert report("compare", "--format-a", "parquet", "-", tmp_path / "y.npy", input=raw) == want
    assert report("compare", "-@pq:emb", tmp_path / "y.npy", input=raw) == want
    np.savez(tmp_path / "y.npz", emb=y, id=np.arange(80))
    got = report("compare", "-@parquet", f"{tmp_path / 'y.npz'}:emb", "--ids", "id", input=raw)
    assert got["metrics"] == want["metrics"]
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["model/final"] = x
    assert report("compare", "-@hdf5:model/final", tmp_path / "y.npy", input=(tmp_path / "x.h5").read_bytes()) == want
    r = run("inspect", "-@npz", "-f", "json", input=(tmp_path / "y.npz").read_bytes())
    assert r.exit_code == 0, r.stderr
    assert [a["key"] for a in json.loads(r.stdout)["arrays"]] == ["emb", "id"]
    r = run("matrix", tmp_path / "x.npy", "-@npy", tmp_path / "y.npy", *FAST, input=(tmp_path / "x.npy").read_bytes())
    assert r.exit_code == 0, r.stderr


def test_stdin_errors(data, tmp_path):
    np.save(tmp_path / "y.npy", data[1])
    y = tmp_path / "y.npy"
    expect_error(["compare", "-", y], "standard input is empty", input=b"")
    expect_error(["compare", "-", "-"], "'-'", "one input only", input=y.read_bytes())
    expect_error(["compare", "-@npy", "-@parquet"], "one input only", input=y.read_bytes())
    expect_error(["compare", "-", y], "standard input", "cannot be read as npy", input=b"garbage\n")
    expect_error(["compare", "-@parquet", y], "standard input", "parquet", input=y.read_bytes())
    expect_error(["compare", y, y, "--format-a", "pickle"], "unknown input format 'pickle'")
    expect_error(["inspect", "-"], "standard input is empty", input=b"")


def test_format_override_for_other_suffixes(data, tmp_path):
    x, y, _, _ = data
    np.save(tmp_path / "x.npy", x), np.save(tmp_path / "y.npy", y)
    shutil.copy(tmp_path / "x.npy", tmp_path / "x.bin")
    np.savez(tmp_path / "y.dat", emb=y)  # numpy adds .npz to a name without it
    os.replace(tmp_path / "y.dat.npz", tmp_path / "y.dat")
    want = report("compare", tmp_path / "x.npy", tmp_path / "y.npy")
    assert report("compare", f"{tmp_path / 'x.bin'}@npy", tmp_path / "y.npy") == want
    assert report("compare", tmp_path / "x.bin", tmp_path / "y.npy", "--format-a", "npy") == want
    assert report("compare", tmp_path / "x.npy", f"{tmp_path / 'y.dat'}@npz:emb") == want
    assert report("compare", tmp_path / "x.npy", f"{tmp_path / 'y.dat'}:emb", "--format-b", "npz") == want
    line = expect_error(["compare", tmp_path / "x.bin", tmp_path / "y.npy"], "x.bin", "unsupported file type '.bin'")
    assert ".npy" in line and ".pt" in line and "PATH@FORMAT" in line
    before = digest(tmp_path / "x.bin")
    expect_error(["compare", f"{tmp_path / 'x.bin'}@parquet", tmp_path / "y.npy"], "x.bin", "parquet")
    assert digest(tmp_path / "x.bin") == before


def _fifo_with(tmp_path, payload, name="pipe"):
    fifo = tmp_path / name
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(payload)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return fifo, t


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_read_once_with_a_format(data, tmp_path):
    x, y, _, _ = data
    np.save(tmp_path / "x.npy", x), np.save(tmp_path / "y.npy", y)
    want = report("compare", tmp_path / "x.npy", tmp_path / "y.npy")
    fifo, t = _fifo_with(tmp_path, (tmp_path / "x.npy").read_bytes())
    assert report("compare", f"{fifo}@npy", tmp_path / "y.npy") == want
    t.join(5)
    # Without a format a pipe is refused from its stat, before any open: nothing blocks.
    os.unlink(fifo)
    os.mkfifo(fifo)
    expect_error(["compare", fifo, tmp_path / "y.npy"], str(fifo), "named pipe", f"{fifo}@npy")


@pytest.mark.skipif(shutil.which("bash") is None or not os.path.exists("/dev/fd"), reason="needs bash and /dev/fd")
def test_process_substitution_and_dev_stdin(data, tmp_path):
    x, y, _, _ = data
    np.save(tmp_path / "x.npy", x), np.save(tmp_path / "y.npy", y)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [sys.executable, "-m", "repalign", "compare"]
    fast = " ".join(FAST)
    base = subprocess.run([*cmd, tmp_path / "x.npy", tmp_path / "y.npy", *FAST], capture_output=True, text=True,
                          env=env, timeout=300)
    sub = subprocess.run(["bash", "-c", f"{' '.join(cmd)} <(cat '{tmp_path / 'x.npy'}')@npy '{tmp_path / 'y.npy'}' "
                          f"{fast}"], capture_output=True, text=True, env=env, timeout=300)
    dev = subprocess.run([*cmd, "/dev/stdin@npy", tmp_path / "y.npy", *FAST], input=(tmp_path / "x.npy").read_bytes(),
                         capture_output=True, env=env, timeout=300)  # a pipe on standard input
    docs = []
    for r in (base, sub, dev):
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        del doc["timing"]  # the JSON reports minus timing and paths
        for side in doc["inputs"]:
            side.pop("path")
        docs.append(doc)
    assert docs[0] == docs[1] == docs[2]
