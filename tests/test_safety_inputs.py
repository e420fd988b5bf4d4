"""Inputs that could make repalign spend memory it has not planned for, hang, or read the wrong array.

- The memory guard works from headers and metadata only: a refused run never reads an array.
- A header that declares more data than the file holds is an error naming both sizes.
- FIFOs, devices, sockets and directories are refused from their stat, without being opened
  (each such case runs in a subprocess with a timeout, so a hang fails instead of blocking).
- A key that exists as written is read as written; globs apply only when it does not; long candidate
  lists in errors are cut.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_cli import run

import repalign
from repalign import io as rio

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--resamples", "0", "--permutations", "0"]


# ----------------------------------------------------------------------------- helpers


def snapshot(root: Path) -> dict:
    """Bytes of every regular file under root (FIFOs and devices are not read)."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def expect_error(args, *needles, env=None) -> str:
    r = run(*args, env=env)
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def cli_subprocess(*args, env=None, timeout=20) -> subprocess.CompletedProcess:
    """repalign in a child process with this worktree first on the path; a hang fails after ``timeout``."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "repalign", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, stdin=subprocess.DEVNULL)


def npy_with_header(path: Path, shape, descr="<f4", version=(1, 0), payload=b"\0" * 64) -> str:
    """An .npy file whose header declares ``shape`` whatever data follows it."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    (np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0)(
        buf, header)
    path.write_bytes(buf.getvalue() + payload)
    return str(path)


def compressible_parquet(path: Path, n=20_000, d=2_000, block=1_000) -> str:
    """n rows of d zeros in a list<float> column: a few KB on disk, n·d·4 bytes once read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    offsets = pa.array(np.arange(0, (block + 1) * d, d, dtype=np.int32))
    table = pa.table({"emb": pa.ListArray.from_arrays(offsets, pa.array(np.zeros(block * d, np.float32)))})
    with pq.ParquetWriter(path, table.schema, compression="zstd") as w:
        for _ in range(n // block):
            w.write_table(table)
    return str(path)


@pytest.fixture
def partner(tmp_path, rng):
    p = tmp_path / "partner.npy"
    np.save(p, rng.standard_normal((50, 4)))
    return str(p)


@pytest.fixture
def no_reads(monkeypatch):
    """Any array read fails the test: the plan must refuse from headers alone."""
    def refuse(*args, **kwargs):
        raise AssertionError("an array was read before the memory plan was accepted")

    monkeypatch.setattr(rio.LayerSet, "read", refuse)
    for reader in rio.READERS.values():
        monkeypatch.setattr(reader, "read", refuse)


# ----------------------------------------------------------------------------- 1. memory guard first


def test_compressible_parquet_refused_from_metadata(tmp_path, no_reads):
    p = compressible_parquet(tmp_path / "zeros.parquet")
    other = npy_with_header(tmp_path / "other.npy", (20_000, 4), payload=b"\0" * (20_000 * 4 * 4))
    assert os.path.getsize(p) < 100_000  # small on disk, 160 MB as values
    before = snapshot(tmp_path)
    msg = expect_error(["compare", p, other, *FAST], "comparing 20000 items", "2000 and 4 dimensions",
                       "needs about", env={"REPALIGN_MEMORY_LIMIT": "200M"})
    assert "available" in msg
    assert snapshot(tmp_path) == before


def test_parquet_element_bound_is_not_below_the_truth(tmp_path):
    """The plan's d for a list<float> column comes from the footer and equals the true width."""
    p = compressible_parquet(tmp_path / "z.parquet", n=3_000, d=700, block=1_000)
    (n, d), itemsize, resident = rio.describe(p)
    assert (n, d, itemsize) == (3_000, 700, 4) and resident >= n * d * 4
    assert rio.load(p).array.shape == (3_000, 700)


def test_huge_empty_hdf5_dataspace_refused_unread(tmp_path, partner, no_reads):
    p = tmp_path / "huge.h5"
    with h5py.File(p, "w") as f:  # declared 400 GB, chunked and never written: a few KB on disk
        f.create_dataset("emb", shape=(10**6, 10**5), dtype="f4", chunks=(1000, 100))
    partner_big = npy_with_header(tmp_path / "b.npy", (10**6, 4), payload=b"\0" * (10**6 * 16))
    before = snapshot(tmp_path)
    expect_error(["compare", f"{p}:emb", partner_big, *FAST], "comparing 1000000 items", "needs about",
                 env={"REPALIGN_MEMORY_LIMIT": "4G"})
    expect_error(["matrix", f"{p}:emb", partner_big, partner_big, *FAST], "needs about",
                 env={"REPALIGN_MEMORY_LIMIT": "4G"})
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("shape,dtype,needle", [((10**6, 10**5), "i8", "needs about"),
                                                ((10**11,), "f4", "needs about"),
                                                ((10**4, 10**4, 10**4, 10), "u1", "got shape")])
def test_arrays_refused_for_their_shape_or_type_are_not_read_first(tmp_path, partner, no_reads, shape, dtype,
                                                                   needle):
    """Integer, 1-D or 4-D arrays fail validation, but a 1 GB limit refuses them before any read."""
    p = tmp_path / "odd.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("emb", shape=shape, dtype=dtype, chunks=True)
    expect_error(["compare", f"{p}:emb", partner, *FAST], needle, env={"REPALIGN_MEMORY_LIMIT": "1G"})


def test_accepted_plan_then_reads(tmp_path, rng):
    X = rng.standard_normal((60, 5)).astype(np.float32)
    p = tmp_path / "x.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    offsets = pa.array(np.arange(0, X.size + 1, 5, dtype=np.int32))
    pq.write_table(pa.table({"emb": pa.ListArray.from_arrays(offsets, pa.array(X.ravel()))}), p)
    got = repalign.compare(str(p), X.astype(np.float64), metrics="mknn", resamples=0, permutations=0)
    assert got.metric("mknn").value == pytest.approx(1.0)


@pytest.mark.parametrize("value", ["-5G", "infG", "inf", "1e400", "nan", "0", "0.5", "abc", "", "5X"])
def test_bad_memory_limit_values(tmp_path, partner, value):
    before = snapshot(tmp_path)
    expect_error(["compare", partner, partner, *FAST], "REPALIGN_MEMORY_LIMIT", env={"REPALIGN_MEMORY_LIMIT": value})
    expect_error(["matrix", partner, partner, *FAST], "REPALIGN_MEMORY_LIMIT", env={"REPALIGN_MEMORY_LIMIT": value})
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("value,size", [("8G", 8 * 2**30), ("500M", 500 * 2**20), ("1.5g", 3 * 2**29),
                                        ("2GB", 2 * 2**30), ("4096", 4096), (" 64K ", 64 * 2**10)])
def test_good_memory_limit_values(monkeypatch, value, size):
    from repalign import memory

    monkeypatch.setenv("REPALIGN_MEMORY_LIMIT", value)
    assert memory.env_override() == size


# ----------------------------------------------------------------------------- 2. npy headers


@pytest.mark.parametrize("shape,declared", [((10**12, 10**6), "1000000000000×1000000"),
                                            ((2**62, 2**62), "4611686018427387904×4611686018427387904"),
                                            ((10**6, 10**5), "1000000×100000")])
def test_npy_header_larger_than_file(tmp_path, partner, shape, declared):
    p = npy_with_header(tmp_path / "liar.npy", shape)
    size = os.path.getsize(p)
    before = snapshot(tmp_path)
    needles = (p, f"header declares {declared} float32", f"the file holds {size:,} bytes")
    for args in (["compare", p, partner, *FAST], ["compare", partner, p, *FAST],
                 ["matrix", partner, p, partner, *FAST], ["inspect", p]):
        expect_error(args, *needles)
    with pytest.raises(repalign.InputError, match="header declares"):
        repalign.compare(p, partner)
    assert snapshot(tmp_path) == before


def test_npz_member_header_larger_than_member(tmp_path, partner):
    p = tmp_path / "liar.npz"
    import zipfile

    with zipfile.ZipFile(p, "w") as z:
        z.writestr("emb.npy", Path(npy_with_header(tmp_path / "m.npy", (10**9, 10**3))).read_bytes())
    os.remove(tmp_path / "m.npy")
    before = snapshot(tmp_path)
    expect_error(["compare", f"{p}:emb", partner, *FAST], f"{p}:emb", "header declares 1000000000×1000 float32")
    expect_error(["inspect", str(p)], "header declares")
    assert snapshot(tmp_path) == before


def test_npy_one_byte_short_is_refused(tmp_path, partner):
    p = npy_with_header(tmp_path / "short.npy", (50, 4), payload=b"\0" * (50 * 4 * 4 - 1))
    expect_error(["compare", p, partner, *FAST], "header declares 50×4 float32 (800 bytes)")


def test_npy_format_3_0_is_read(tmp_path, rng):
    X, Y = rng.standard_normal((80, 6)), rng.standard_normal((80, 3))
    p = tmp_path / "v3.npy"
    with open(p, "wb") as f:
        np.lib.format.write_array(f, X, version=(3, 0))
    assert p.read_bytes()[6:8] == b"\x03\x00"
    assert rio.inspect(p)[0].shape == (80, 6)
    from_file = repalign.compare(str(p), Y, metrics="mknn,cka", resamples=0, permutations=0, seed=1)
    from_memory = repalign.compare(X, Y, metrics="mknn,cka", resamples=0, permutations=0, seed=1)
    for m in ("mknn", "cka"):
        assert from_file.metric(m).value == from_memory.metric(m).value


# ----------------------------------------------------------------------------- 3. no hangs


def _special_paths(tmp_path: Path, partner: str) -> dict[str, tuple[str, str]]:
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    bare = tmp_path / "p"
    os.mkfifo(bare)
    link = tmp_path / "link.h5"
    link.symlink_to(fifo)
    (tmp_path / "dir.npy").mkdir()
    with socket.socket(socket.AF_UNIX) as sock:  # the socket file stays after close
        sock.bind(str(tmp_path / "sock.h5"))
    return {"fifo": (str(fifo), "a named pipe (FIFO), not a file"),
            "fifo-no-suffix": (str(bare), "a named pipe (FIFO), not a file"),
            "fifo-with-key": (f"{fifo}:emb", "a named pipe (FIFO), not a file"),
            "symlink-to-fifo": (str(link), "a named pipe (FIFO), not a file"),
            "symlink-to-fifo-with-key": (f"{link}:emb", "a named pipe (FIFO), not a file"),
            "dev-zero": ("/dev/zero", "a character device, not a file"),
            "dev-zero-with-key": ("/dev/zero:emb", "a character device, not a file"),
            "dev-null": ("/dev/null", "a character device, not a file"),
            "directory": (str(tmp_path / "dir.npy"), "a directory, not a file"),
            "socket": (str(tmp_path / "sock.h5"), "a socket, not a file")}


CASES = ["fifo", "fifo-no-suffix", "fifo-with-key", "symlink-to-fifo", "symlink-to-fifo-with-key", "dev-zero",
         "dev-zero-with-key", "dev-null", "directory", "socket"]


def _one_error_line(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("case", CASES)
def test_special_files_refused_without_opening(tmp_path, partner, case):
    target, needle = _special_paths(tmp_path, partner)[case]
    path = target.split(":emb")[0]
    before = snapshot(tmp_path)
    for args in (["compare", target, partner, *FAST], ["compare", partner, target, *FAST],
                 ["matrix", partner, partner, target, *FAST]):
        _one_error_line(cli_subprocess(*args), f"{path}: {needle}")
    if ":" not in target:
        _one_error_line(cli_subprocess("inspect", target), f"{path}: {needle}")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case", ["fifo", "dev-zero", "directory", "symlink-to-fifo"])
def test_special_baseline_refused(tmp_path, partner, case):
    target, needle = _special_paths(tmp_path, partner)[case]
    r = cli_subprocess("compare", partner, partner, *FAST, "--baseline", target)
    _one_error_line(r, f"{target}: {needle.replace('a file', 'a baseline file')}")


def test_special_id_source_refused(tmp_path, rng):
    """--ids reads the same files, through the same check."""
    p = tmp_path / "a.npz"
    np.savez(p, emb=rng.standard_normal((20, 3)), id=np.arange(20))
    fifo = tmp_path / "b.npz"
    os.mkfifo(fifo)
    _one_error_line(cli_subprocess("compare", p, fifo, *FAST, "--ids", "id"), "named pipe (FIFO)")


# ----------------------------------------------------------------------------- 4. selectors


@pytest.fixture
def star(tmp_path, rng):
    arrays = {name: rng.standard_normal((60, 4)) for name in ("c*d", "cxd", "a:b", "q[1]")}
    p = tmp_path / "star.h5"
    with h5py.File(p, "w") as f:
        for name, arr in arrays.items():
            f[name] = arr
    return str(p), arrays


def _mknn(selector, other) -> tuple[float, dict]:
    r = run("compare", selector, other, "-m", "mknn", *FAST, "-f", "json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    return doc["metrics"][0]["value"], doc["inputs"][0]


@pytest.mark.parametrize("key", ["c*d", "a:b", "q[1]", "/c*d"])
def test_literal_key_wins_over_glob_and_colon(star, rng, key):
    p, arrays = star
    other = rng.standard_normal((60, 3))
    np.save(Path(p).with_name("o.npy"), other)
    value, info = _mknn(f"{p}:{key}", Path(p).with_name("o.npy"))
    want = repalign.compare(arrays[key.strip("/")], other, metrics="mknn", resamples=0, permutations=0)
    assert info["layers"] is None and info["key"] == key.strip("/")
    assert value == want.metric("mknn").value


def test_glob_applies_when_no_literal_match(star, partner, rng):
    p, _ = star
    other = Path(p).with_name("o.npy")
    np.save(other, rng.standard_normal((60, 3)))
    r = run("compare", f"{p}:c?d", other, "-m", "mknn", *FAST, "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["inputs"][0]["layers"] == ["c*d", "cxd"]


def test_npz_key_with_colons_and_shortest_prefix(tmp_path, rng):
    X, Y = rng.standard_normal((40, 4)), rng.standard_normal((40, 4))
    p = tmp_path / "d.npz"
    np.savez(p, **{"x:y": X, "x": Y})
    (tmp_path / "d.npz:x").write_bytes(b"not the file meant")  # a longer prefix that also exists
    assert rio.parse_selector(f"{p}:x:y") == rio.Selector(str(p), "x:y")
    got = repalign.compare(f"{p}:x:y", Y, metrics="mknn", resamples=0, permutations=0)
    want = repalign.compare(X, Y, metrics="mknn", resamples=0, permutations=0)
    assert got.metric("mknn").value == want.metric("mknn").value


def test_whole_text_existing_is_never_split(tmp_path, rng):
    X = rng.standard_normal((40, 4))
    np.save(tmp_path / "a.npy", rng.standard_normal((40, 4)))
    whole = tmp_path / "a.npy:emb.npy"
    np.save(whole, X)
    assert rio.parse_selector(str(whole)) == rio.Selector(str(whole))
    assert np.array_equal(rio.load(str(whole)).array, X)


def test_empty_key_after_colon(tmp_path, partner):
    expect_error(["compare", f"{partner}:", partner, *FAST], partner, "empty key")


@pytest.fixture
def crowded(tmp_path, rng):
    def make(count):
        p = tmp_path / f"many{count}.h5"
        with h5py.File(p, "w") as f:
            for i in range(count):
                f[f"layer_{i:05d}"] = rng.standard_normal((5, 2))
        return str(p)

    return make


@pytest.mark.parametrize("suffix", ["", ":nope", ":zz*"])
def test_long_candidate_lists_are_cut(crowded, partner, tmp_path, suffix):
    p = crowded(300)
    before = snapshot(tmp_path)
    msg = expect_error(["compare", p + suffix, partner, *FAST], p, "… and 290 more; run repalign inspect " + p)
    assert msg.count("(5×2 float64)") == 10 and "layer_00009" in msg and "layer_00010" not in msg
    assert snapshot(tmp_path) == before


def test_twenty_candidates_are_all_listed(crowded, partner):
    p = crowded(20)
    msg = expect_error(["compare", p, partner, *FAST], "20 candidate datasets")
    assert msg.count("(5×2 float64)") == 20 and "more" not in msg


def test_inspect_lists_everything(crowded):
    p = crowded(300)
    r = run("inspect", p, "-f", "json")
    assert r.exit_code == 0
    assert [a["key"] for a in json.loads(r.stdout)["arrays"]] == [f"layer_{i:05d}" for i in range(300)]
