"""A corpus of bad inputs, built by code at test time (no committed binaries), one test id per case.

Every case runs ``repalign compare A B --resamples 0 --permutations 0 -f json`` through Typer's runner and
must end in one of the two documented ways:

- exit 2 with exactly one line on stderr, ``Error: ...``, naming the offending file, nothing on stdout; or
- (documented successes) exit 0 with one JSON document on stdout in which every metric value is a finite
  number inside its ``range`` or ``null`` with a ``reason``, and nothing but ``warning:`` lines on stderr.

Never exit 3, never a traceback; and the input files' bytes and mtimes are the same afterwards.
``test_inspect_never_crashes`` runs ``repalign inspect`` on the same offending files.

A case that currently shows a bug is kept and marked ``xfail(strict=True, reason="BUG: ...")``: when the
bug is fixed the case passes, strict xfail turns that into a failure, and the marker should be removed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from conftest import golden_pair
from typer.testing import CliRunner

from repalign.cli import app

FAST = ["--resamples", "0", "--permutations", "0", "-f", "json"]
runner = CliRunner()


# --------------------------------------------------------------------------- building blocks




class Ctx:
    """Where a case builds its files, and writers for every format."""

    def __init__(self, root: Path):
        self.root = root
        self.X, self.Y = golden_pair()

    def path(self, name: str) -> str:
        return str(self.root / name)

    def npy(self, name: str, arr, **kw) -> str:
        np.save(self.path(name), arr, **kw)
        return self.path(name)

    def npz(self, name: str, compressed: bool = False, **arrays) -> str:
        (np.savez_compressed if compressed else np.savez)(self.path(name), **arrays)
        return self.path(name)

    def h5(self, name: str, **datasets) -> str:
        import h5py

        with h5py.File(self.path(name), "w") as f:
            for key, arr in datasets.items():
                f.create_dataset(key.replace("__", "/"), data=arr)
        return self.path(name)

    def parquet(self, name: str, table) -> str:
        import pyarrow.parquet as pq

        pq.write_table(table, self.path(name))
        return self.path(name)

    def fixed_list_table(self, arr, column: str = "emb"):
        import pyarrow as pa

        flat = pa.array(np.asarray(arr).reshape(-1))
        return pa.table({column: pa.FixedSizeListArray.from_arrays(flat, np.asarray(arr).shape[1])})

    def fmt(self, fmt: str, name: str, arr) -> str:
        """``arr`` written as the only embedding in a file of format ``fmt``."""
        if fmt == "npy":
            return self.npy(name, arr)
        if fmt == "npz":
            return self.npz(name, emb=arr)
        if fmt == "h5":
            return self.h5(name, emb=arr)
        return self.parquet(name, self.fixed_list_table(arr))

    def partner_rows(self, n: int):
        return np.random.default_rng(n).standard_normal((n, 10))

    def partner(self, n: int = 100) -> str:
        """A good second input with n rows."""
        return self.npy(f"partner_{n}.npy", self.Y[:n] if n <= 100 else self.partner_rows(n))


def truncated(path: str, keep: int | float) -> str:
    """A copy of ``path`` cut to ``keep`` bytes (or that share of its length), next to it."""
    data = Path(path).read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    out = Path(path).with_name("trunc_" + Path(path).name)
    out.write_bytes(data[:n])
    return str(out)


def flipped(path: str, start: int, count: int = 16, tag: str = "flip") -> str:
    """A copy of ``path`` with ``count`` bytes from ``start`` (negative: from the end) XOR 0xFF."""
    data = bytearray(Path(path).read_bytes())
    start = start if start >= 0 else len(data) + start
    for i in range(start, min(start + count, len(data))):
        data[i] ^= 0xFF
    out = Path(path).with_name(f"{tag}_" + Path(path).name)
    out.write_bytes(bytes(data))
    return str(out)


def parquet_footer_start(path: str) -> int:
    """Offset of the thrift FileMetaData (the parquet 'header' lives at the end of the file)."""
    data = Path(path).read_bytes()
    footer_len = int.from_bytes(data[-8:-4], "little")
    return len(data) - 8 - footer_len


@dataclass
class Setup:
    """What a case runs: ``compare *argv`` and the file the error must name (None for successes)."""

    argv: list
    bad: str | None = None
    unreadable: str | None = None
    """chmod 000 this path while the command runs; skipped when running as root, who can still read it."""


@dataclass
class Case:
    id: str
    build: Callable[[Ctx], Setup]
    expect: str
    """'error' (exit 2 naming the file), 'ok' (exit 0, finite-or-null JSON) or 'either' (one of the two:
    e.g. bytes flipped inside a float payload of a format without checksums may still be a valid file)."""
    needles: tuple = ()
    """Substrings the error line must contain, besides the file name."""
    check: Callable[[dict, str], None] | None = None
    """Extra checks on a success: (JSON document, stderr)."""
    bug: str | None = None
    """Reason for a strict xfail: a bug this case reveals (see the module docstring)."""
    forbid: tuple = ()
    """Substrings the error line must not contain (a false diagnosis)."""


CASES: list[Case] = []


def add(id, build, expect, needles=(), check=None, bug=None, forbid=()):
    CASES.append(Case(id, build, expect, tuple(needles), check, bug, tuple(forbid)))


# Checks on successful outputs --------------------------------------------------------------------


def metric(doc: dict, name: str) -> dict:
    return next(m for m in doc["metrics"] if m["name"] == name)


def cka_null_with_reason(doc, stderr):
    for m in doc["metrics"]:
        if m["name"].startswith("cka"):
            assert m["value"] is None and m["reason"], m


def mknn_defined(doc, stderr):
    m = metric(doc, "mknn")
    assert m["value"] is not None, m


def all_defined(doc, stderr):
    for m in doc["metrics"]:
        assert m["value"] is not None, m


def float16_warning(doc, stderr):
    assert any(line.startswith("warning:") and "float16" in line for line in stderr.splitlines()), stderr
    all_defined(doc, stderr)


def chain(*checks):
    def run(doc, stderr):
        for c in checks:
            c(doc, stderr)
    return run


# --------------------------------------------------------------------------- the corpus

FORMATS = ("npy", "npz", "h5", "parquet")


def _golden_file(c: Ctx, fmt: str, name: str = "src") -> str:
    return c.fmt(fmt, f"{name}.{fmt}", c.X)


# Truncated and corrupted versions of every format.
for _fmt in FORMATS:
    add(f"truncated-half-{_fmt}",
        lambda c, f=_fmt: Setup([truncated(_golden_file(c, f), 0.5), c.partner()], "trunc_src." + f), "error")
    add(f"truncated-in-header-{_fmt}",
        lambda c, f=_fmt: Setup([truncated(_golden_file(c, f), 20), c.partner()], "trunc_src." + f), "error")
    add(f"truncated-last-byte-{_fmt}",
        lambda c, f=_fmt: Setup([truncated(_golden_file(c, f), len(Path(_golden_file(c, f)).read_bytes()) - 1),
                                 c.partner()], "trunc_src." + f), "error")

# Bytes flipped in the middle of the file: npz has CRC-32s, so that must be an error; the others carry
# no checksum over the float payload, so flipped payload bytes may still be a valid file.
for _fmt, _expect in (("npy", "either"), ("npz", "error"), ("h5", "either"), ("parquet", "either")):
    add(f"corrupt-middle-{_fmt}",
        lambda c, f=_fmt: Setup([flipped(p := _golden_file(c, f), len(Path(p).read_bytes()) // 2), c.partner()],
                                "flip_src." + f), _expect)

# Targeted flips inside the structures the readers parse: the HDF5 dataset's object header and
# parquet's first data page header (after the dictionary page).
def _h5_object_header(path: str) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        return h5py.h5o.get_info(f["emb"].id).addr


def _parquet_data_page(path: str) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset


add("corrupt-h5-dataset-object-header",
    lambda c: Setup([flipped(p := _golden_file(c, "h5"), _h5_object_header(p), 8), c.partner()], "flip_src.h5"),
    "either")
add("corrupt-parquet-data-page-header",
    lambda c: Setup([flipped(p := _golden_file(c, "parquet"), _parquet_data_page(p) + 1, 4), c.partner()],
                    "flip_src.parquet"), "either")
add("corrupt-middle-npz-compressed",
    lambda c: Setup([flipped(p := c.npz("src.npz", compressed=True, emb=c.X), len(Path(p).read_bytes()) // 2),
                     c.partner()], "flip_src.npz"), "error")

# Bytes flipped in the header: npy's header dict, the zip local header's name lengths, HDF5's superblock,
# the first page header after parquet's leading magic, and parquet's footer metadata.
for _fmt, _offset in (("npy", 12), ("npz", 26), ("h5", 8), ("parquet", 4)):
    add(f"corrupt-header-{_fmt}",
        lambda c, f=_fmt, o=_offset: Setup([flipped(_golden_file(c, f), o, 4), c.partner()], "flip_src." + f),
        "error")
add("corrupt-footer-parquet",
    lambda c: Setup([flipped(p := _golden_file(c, "parquet"), parquet_footer_start(p) + 2, 8), c.partner()],
                    "flip_src.parquet"), "error")
add("corrupt-npy-shape-larger-than-data",
    lambda c: Setup([_patch(c.npy("src.npy", c.X), b"(100, 10)", b"(900, 10)"), c.partner()], "src.npy"),
    "error", needles=("truncated",))


def _patch(path: str, old: bytes, new: bytes) -> str:
    data = Path(path).read_bytes()
    assert old in data
    Path(path).write_bytes(data.replace(old, new, 1))
    return path


# Wrong magic bytes: another format's bytes under this suffix, and plain garbage with a binary prefix.
_OTHER = {"npy": "h5", "npz": "npy", "h5": "parquet", "parquet": "npz"}
for _fmt in FORMATS:
    add(f"wrong-magic-{_fmt}-holds-{_OTHER[_fmt]}",
        lambda c, f=_fmt: Setup([_renamed(_golden_file(c, _OTHER[f]), f"wrong.{f}"), c.partner()], f"wrong.{f}"),
        "error")
    add(f"wrong-magic-{_fmt}-garbage",
        lambda c, f=_fmt: Setup([_write_bytes(c, f"junk.{f}", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8),
                                 c.partner()], f"junk.{f}"), "error")


def _renamed(path: str, name: str) -> str:
    out = Path(path).with_name(name)
    os.replace(path, out)
    return str(out)


def _write_bytes(c: Ctx, name: str, data: bytes) -> str:
    Path(c.path(name)).write_bytes(data)
    return c.path(name)


# Zero-length files, with every suffix.
for _suffix in ("npy", "npz", "h5", "hdf5", "parquet", "pq"):
    add(f"zero-length-{_suffix}",
        lambda c, s=_suffix: Setup([_write_bytes(c, f"empty.{s}", b""), c.partner()], f"empty.{s}"), "error",
        needles=("empty",))

# Things that are not regular embedding files.
add("directory-named-npy", lambda c: Setup([_mkdir(c, "dir.npy"), c.partner()], "dir.npy"), "error",
    needles=("directory",))
add("directory-named-h5-as-b", lambda c: Setup([c.partner(), _mkdir(c, "dir.h5")], "dir.h5"), "error",
    needles=("directory",))
add("missing-file", lambda c: Setup([c.path("nope.npy"), c.partner()], "nope.npy"), "error",
    needles=("no such file",))
add("broken-symlink", lambda c: Setup([_symlink(c, "gone.npy", "link.npy"), c.partner()], "link.npy"), "error")
add("unsupported-suffix", lambda c: Setup([_write_bytes(c, "emb.txt", b"1,2\n3,4\n"), c.partner()], "emb.txt"),
    "error", needles=("unsupported",))
add("no-suffix", lambda c: Setup([_renamed(c.npy("e.npy", c.X), "embeddings"), c.partner()], "embeddings"),
    "error", needles=("unsupported",))
for _fmt in FORMATS:
    add(f"unreadable-chmod-000-{_fmt}",
        lambda c, f=_fmt: Setup([p := _golden_file(c, f), c.partner()], p, unreadable=p), "error",
        needles=("permission denied",))


def _mkdir(c: Ctx, name: str) -> str:
    os.mkdir(c.path(name))
    return c.path(name)


def _symlink(c: Ctx, target: str, name: str) -> str:
    os.symlink(c.path(target), c.path(name))
    return c.path(name)


# Selectors that do not fit the file.
add("key-on-npy", lambda c: Setup([c.npy("e.npy", c.X) + ":emb", c.partner()], "e.npy"), "error",
    needles=("one array",))
add("empty-key-h5", lambda c: Setup([c.h5("e.h5", emb=c.X) + ":", c.partner()], "e.h5"), "error",
    needles=("empty key",))
add("unknown-key-parquet", lambda c: Setup([c.parquet("e.parquet", c.fixed_list_table(c.X)) + ":nope", c.partner()],
                                           "e.parquet"), "error", needles=("'nope'",))

# HDF5 without a usable dataset, and datasets of every wrong type (selected by key, so that the dtype
# check itself is what answers).
add("h5-groups-no-datasets", lambda c: Setup([_h5_groups(c), c.partner()], "groups.h5"), "error")
add("h5-string-dataset-auto", lambda c: Setup([c.h5("s.h5", emb=_vlen_strings()), c.partner()], "s.h5"), "error")
_H5_TYPES = {
    "vlen-strings": lambda c: _vlen_strings(),
    "fixed-bytes": lambda c: np.array([[b"abc"] * 10] * 100, dtype="S3"),
    "int64": lambda c: (c.X * 100).astype(np.int64),
    "int8": lambda c: (c.X * 10).astype(np.int8),
    "bool": lambda c: c.X > 0,
    "complex128": lambda c: c.X + 1j * c.Y,
    "complex64": lambda c: (c.X + 1j * c.Y).astype(np.complex64),
    "bfloat16-as-uint16": lambda c: (c.X.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16),
    "compound": lambda c: np.zeros((100, 10), dtype=[("re", "f4"), ("im", "f4")]),
    "float128": lambda c: c.X.astype(np.longdouble),
    "1-d": lambda c: c.X[:, 0],
    "scalar": lambda c: np.float64(1.5),
}
for _name, _make in _H5_TYPES.items():
    add(f"h5-dataset-{_name}",
        lambda c, m=_make: Setup([c.h5("t.h5", emb=m(c)) + ":emb", c.partner()], "t.h5"), "error")
def five_layer_sweep(doc, stderr):
    layers = doc["sweep"]["layers_a"]
    assert layers == ["0", "1", "2", "3", "4"] and doc["inputs"][0]["layers"] == layers
    assert all(m["value"] is not None for m in doc["metrics"])


# An n×L×d dataset is a stack of layers: a sweep, not an error.
add("h5-dataset-3-d", lambda c: Setup([c.h5("t.h5", emb=c.X.reshape(100, 5, 2)) + ":emb", c.partner()]), "ok",
    check=five_layer_sweep)
add("h5-dataset-float16", lambda c: Setup([c.h5("half.h5", emb=c.X.astype(np.float16)), c.partner()]), "ok",
    check=float16_warning)
add("h5-dataset-float32-big-endian", lambda c: Setup([c.h5("be.h5", emb=c.X.astype(">f4")), c.partner()]), "ok",
    check=all_defined)
add("h5-null-dataspace", lambda c: Setup([_h5_empty(c) + ":emb", c.partner()], "null.h5"), "error")
add("h5-dangling-soft-link", lambda c: Setup([_h5_dangling(c) + ":emb", c.partner()], "dangling.h5"), "error")
add("h5-gzip-chunk-corrupt",
    lambda c: Setup([flipped(p := _h5_gzip(c), len(Path(p).read_bytes()) // 2), c.partner()], "flip_gz.h5"), "error")
add("h5-external-raw-storage-missing", lambda c: Setup([_h5_external(c), c.partner()], "ext.h5"), "error")
add("h5-virtual-dataset-missing-source", lambda c: Setup([_h5_virtual(c), c.partner()], "vds.h5"), "error")
add("colon-in-file-name", lambda c: Setup([c.npy("x:emb.npy", c.X), c.h5("a:b.h5", emb=c.Y, other=c.X) + ":emb"]),
    "ok", check=all_defined)
add("h5-two-candidates", lambda c: Setup([c.h5("two.h5", a__x=c.X, b__y=c.X), c.partner()], "two.h5"), "error",
    needles=("2 candidate",))


def _vlen_strings():
    import h5py

    return np.array([[f"v{i}{j}" for j in range(10)] for i in range(100)], dtype=h5py.string_dtype())


def _h5_groups(c: Ctx) -> str:
    import h5py

    with h5py.File(c.path("groups.h5"), "w") as f:
        f.create_group("model/layer0")
        f.create_group("model/layer1").attrs["note"] = "no data here"
    return c.path("groups.h5")


def _h5_empty(c: Ctx) -> str:
    import h5py

    with h5py.File(c.path("null.h5"), "w") as f:
        f.create_dataset("emb", data=h5py.Empty("f8"))
    return c.path("null.h5")


def _h5_gzip(c: Ctx) -> str:
    import h5py

    with h5py.File(c.path("gz.h5"), "w") as f:
        f.create_dataset("emb", data=c.X, compression="gzip", chunks=(10, 10))
    return c.path("gz.h5")


def _h5_external(c: Ctx) -> str:
    """Raw data in a separate file that does not exist."""
    import h5py

    with h5py.File(c.path("ext.h5"), "w") as f:
        f.create_dataset("emb", shape=(100, 10), dtype="f8", external=[("raw.bin", 0, 8000)])
    return c.path("ext.h5")


def _h5_virtual(c: Ctx) -> str:
    import h5py

    layout = h5py.VirtualLayout(shape=(100, 10), dtype="f8")
    layout[:] = h5py.VirtualSource("missing.h5", "emb", shape=(100, 10))
    with h5py.File(c.path("vds.h5"), "w") as f:
        f.create_virtual_dataset("emb", layout, fillvalue=np.nan)
    return c.path("vds.h5")


def _h5_dangling(c: Ctx) -> str:
    import h5py

    with h5py.File(c.path("dangling.h5"), "w") as f:
        f.create_dataset("other", data=c.X[:, :3].astype(np.int32))
        f["emb"] = h5py.SoftLink("/does/not/exist")
    return c.path("dangling.h5")


# NumPy specials.
add("npy-object-array-pickled",
    lambda c: Setup([c.npy("obj.npy", np.array([[1.0, None]] * 100, dtype=object), allow_pickle=True),
                     c.partner()], "obj.npy"), "error", needles=("unpickle",))
add("npz-object-member-pickled",
    lambda c: Setup([c.npz("obj.npz", emb=np.array([[1.0, None]] * 100, dtype=object)) + ":emb", c.partner()],
                    "obj.npz"), "error")
add("npy-float128", lambda c: Setup([c.npy("q.npy", c.X.astype(np.longdouble)), c.partner()], "q.npy"), "error")
add("npy-structured", lambda c: Setup([c.npy("st.npy", np.zeros((100, 10), dtype=[("a", "f8")])), c.partner()],
                                      "st.npy"), "error")
add("npy-unicode-strings", lambda c: Setup([c.npy("u.npy", np.full((100, 10), "x")), c.partner()], "u.npy"),
    "error")
add("npy-fortran-big-endian", lambda c: Setup([c.npy("fb.npy", np.asfortranarray(c.X.astype(">f8"))),
                                               c.partner()]), "ok", check=all_defined)
add("npy-float16", lambda c: Setup([c.npy("half.npy", c.X.astype(np.float16)), c.partner()]), "ok",
    check=float16_warning)
add("npz-empty-archive", lambda c: Setup([c.npz("none.npz"), c.partner()], "none.npz"), "error")
add("npz-foreign-member", lambda c: Setup([_zip(c, "foreign.npz", {"readme.txt": b"hello"}), c.partner()],
                                          "foreign.npz"), "error")
add("npz-member-is-not-npy-despite-name",
    lambda c: Setup([_zip(c, "fake.npz", {"emb.npy": b"\x93NUMPY garbage"}), c.partner()], "fake.npz"), "error")


def _zip(c: Ctx, name: str, members: dict) -> str:
    with zipfile.ZipFile(c.path(name), "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return c.path(name)


# Non-finite values in one entry.
def _with(c: Ctx, i: int, j: int, v: float):
    X = c.X.copy()
    X[i, j] = v
    return X


def _f16(X):
    with np.errstate(over="ignore"):
        return X.astype(np.float16)


add("nan-one-entry-npy", lambda c: Setup([c.npy("nan.npy", _with(c, 41, 3, np.nan)), c.partner()], "nan.npy"),
    "error", needles=("NaN or Inf", "row 41"))
add("inf-one-entry-h5", lambda c: Setup([c.partner(), c.h5("inf.h5", emb=_with(c, 0, 9, np.inf))], "inf.h5"),
    "error", needles=("NaN or Inf", "row 0"))
add("neg-inf-one-entry-parquet",
    lambda c: Setup([c.parquet("ninf.parquet", c.fixed_list_table(_with(c, 99, 0, -np.inf))), c.partner()],
                    "ninf.parquet"), "error", needles=("NaN or Inf", "row 99"))
add("nan-one-entry-npz-float32",
    lambda c: Setup([c.npz("nan.npz", emb=_with(c, 7, 7, np.nan).astype(np.float32)), c.partner()], "nan.npz"),
    "error", needles=("row 7",))
add("float16-overflows-to-inf",
    lambda c: Setup([c.npy("big16.npy", _f16(_with(c, 5, 5, 1e6))), c.partner()], "big16.npy"),
    "error", needles=("row 5",))

# Tiny n and d = 0.
add("n0-npy", lambda c: Setup([c.npy("n0.npy", c.X[:0]), c.partner(0)], "n0.npy"), "error", needles=("no rows",))
add("n0-h5", lambda c: Setup([c.h5("n0.h5", emb=c.X[:0]), c.partner(0)], "n0.h5"), "error")
add("n1-default-metrics", lambda c: Setup([c.npy("n1.npy", c.X[:1]), c.partner(1)], "n1.npy"), "error")
add("n1-cka-only", lambda c: Setup([c.npy("n1.npy", c.X[:1]), c.partner(1), "-m", "cka"]), "ok",
    check=cka_null_with_reason)
add("n2-k1", lambda c: Setup([c.npy("n2.npy", c.X[:2]), c.partner(2), "--k", "1"], "n2.npy"), "error")
add("n2-cka-only", lambda c: Setup([c.npy("n2.npy", c.X[:2]), c.partner(2), "-m", "cka"], "n2.npy"), "either")
add("n3-k1-default-metrics", lambda c: Setup([c.npy("n3.npy", c.X[:3]), c.partner(3), "--k", "1"], "n3.npy"),
    "either")
add("n3-k1-mknn-only", lambda c: Setup([c.npy("n3.npy", c.X[:3]), c.partner(3), "--k", "1", "-m", "mknn"]), "ok",
    check=all_defined)
add("n3-cka-unbiased", lambda c: Setup([c.npy("n3.npy", c.X[:3]), c.partner(3), "-m", "cka-unbiased"], "n3.npy"),
    "error")
add("d0-npy", lambda c: Setup([c.npy("d0.npy", np.zeros((100, 0))), c.partner()], "d0.npy"), "error",
    needles=("zero dimensions",))
add("d0-h5", lambda c: Setup([c.h5("d0.h5", emb=np.zeros((100, 0))) + ":emb", c.partner()], "d0.h5"), "error")
add("d0-parquet-empty-lists", lambda c: Setup([_parquet_rows(c, "d0.parquet", [[]] * 100), c.partner()],
                                              "d0.parquet"), "error")


def _parquet_rows(c: Ctx, name: str, rows, value_type=None, column: str = "emb") -> str:
    import pyarrow as pa

    value_type = value_type or pa.float32()
    return c.parquet(name, pa.table({column: pa.array(rows, pa.list_(value_type))}))


# Degenerate but valid data.
def _dups(c: Ctx):
    X = c.X.copy()
    X[50:] = X[:50]  # every row has an exact duplicate
    return X


def _identical(v):
    return np.tile(np.asarray(v, dtype=np.float64), (100, 1))


add("duplicate-rows-cosine", lambda c: Setup([c.npy("dup.npy", _dups(c)), c.partner(), "-m", "mknn,cka,cka-unbiased"]),
    "ok", check=all_defined)
add("duplicate-rows-both-sides-l2",
    lambda c: Setup([c.npy("dup.npy", _dups(c)), c.npy("dup2.npy", _dups(c)[:, ::-1] * 3), "-d", "l2"]), "ok",
    check=all_defined)
add("identical-rows-exact-values",
    lambda c: Setup([c.npy("same.npy", _identical(np.arange(1.0, 11.0))), c.partner(), "-m", "mknn,cka,cka-unbiased"]),
    "ok", check=chain(mknn_defined, cka_null_with_reason))
add("identical-rows-inexact-values",
    lambda c: Setup([c.npy("same.npy", _identical(np.full(10, 0.1))), c.partner(), "-m", "mknn,cka,cka-unbiased"]),
    "ok", check=chain(mknn_defined, cka_null_with_reason))
add("identical-rows-ip",
    lambda c: Setup([c.npy("same.npy", _identical(np.arange(1.0, 11.0))), c.partner(), "-d", "ip"]),
    "ok", check=chain(mknn_defined, cka_null_with_reason))
add("identical-rows-l2-both-sides",
    lambda c: Setup([c.npy("same.npy", _identical(np.arange(1.0, 11.0))), c.npy("same2.npy", _identical(np.ones(3))),
                     "-d", "l2"]), "ok", check=chain(mknn_defined, cka_null_with_reason))
add("all-zero-rows-cosine", lambda c: Setup([c.npy("zero.npy", np.zeros((100, 10))), c.partner()], "zero.npy"), "error",
    needles=("all-zero",))
add("constant-columns", lambda c: Setup([c.npy("cc.npy", _const_cols(c)), c.partner(), "-m", "mknn,cka,cka-unbiased"]),
    "ok", check=all_defined)


# Magnitudes: every metric is invariant to scaling one input by a positive constant, and a power of two
# scales float64 exactly, so these must give the numbers of the unscaled data (checked against the slow
# dense references in tests/reference.py), or an error naming the file; never exit 3, a wrong number, or
# a false diagnosis.
def same_as_unscaled(distance="cosine"):
    def check(doc, stderr):
        import reference as ref

        X, Y = golden_pair()
        for m in doc["metrics"]:
            if m["name"] == "mknn":
                want = ref.mutual_knn(X, Y, m["params"]["k"], distance)
                assert m["value"] is not None and abs(m["value"] - want) < 1e-12, (m["value"], want)
            else:
                want = ref.cka(X, Y, unbiased=m["name"] == "cka-unbiased")
                assert m["value"] is not None and abs(m["value"] - want) < 1e-9, (m, want)
    return check


def _scaled(c: Ctx, name: str, e: int, dtype=np.float64) -> str:
    return c.npy(name, np.ldexp(c.X, e).astype(dtype))


for _e in (-60, 60):
    for _d in ("cosine", "ip", "l2"):
        add(f"scaled-2^{_e}-{_d}",
            lambda c, e=_e, d=_d: Setup([_scaled(c, "s.npy", e), c.partner(), "-d", d, "-m", "mknn,cka,cka-unbiased"]),
            "ok", check=same_as_unscaled(_d))


def magnitude(id, e, opts, dtype=np.float64, forbid=()):
    """The golden X scaled by 2**e (as dtype) against the golden Y: exactly the unscaled numbers (repalign
    rescales extreme inputs by a power of two); the metric and distance come from opts."""
    distance = opts[opts.index("-d") + 1] if "-d" in opts else "cosine"
    add(id, lambda c: Setup([_scaled(c, "scaled.npy", e, dtype), c.partner(), *opts], "scaled.npy"), "ok",
        check=same_as_unscaled(distance), forbid=forbid)


magnitude("float32-values-1e19-l2", 63, ["-d", "l2", "-m", "mknn"], dtype=np.float32)
magnitude("float64-values-1e20-ip", 67, ["-d", "ip", "-m", "mknn"])
magnitude("float64-values-1e160-cosine", 532, ["-m", "mknn"])
magnitude("float64-values-1e155-l2-wrong-number", 515, ["-d", "l2", "-m", "mknn"])
magnitude("float64-values-1e80-cka", 266, ["-m", "cka"])
magnitude("float64-values-1e200-cka", 665, ["-m", "cka"])
magnitude("float64-values-1e80-cka-unbiased", 266, ["-m", "cka-unbiased"])
magnitude("float64-values-1e-200-cosine", -665, ["-m", "mknn"], forbid=("all-zero",))
magnitude("float64-values-1e-100-ip-wrong-number", -332, ["-d", "ip", "-m", "mknn"])
magnitude("float64-values-1e-100-cka", -332, ["-m", "cka,cka-unbiased"])


def _const_cols(c: Ctx):
    X = c.X.copy()
    X[:, [0, 4, 9]] = [3.25, 0.1, -7.0]
    return X


# Parquet: nulls, ragged rows, nulls inside lists, columns that are not lists, empty tables.
_ROWS = [[float(i), 1.0, -1.0] for i in range(100)]
add("parquet-null-row",
    lambda c: Setup([_parquet_rows(c, "nr.parquet", _ROWS[:3] + [None] + _ROWS[4:]), c.partner()], "nr.parquet"),
    "error", needles=("null", "row 3"))
add("parquet-ragged-rows",
    lambda c: Setup([_parquet_rows(c, "rg.parquet", _ROWS[:10] + [[1.0]] + _ROWS[11:]), c.partner()], "rg.parquet"),
    "error", needles=("ragged", "row 10"))
add("parquet-null-inside-list",
    lambda c: Setup([_parquet_rows(c, "ni.parquet", _ROWS[:6] + [[1.0, None, 2.0]] + _ROWS[7:]), c.partner()],
                    "ni.parquet"), "error", needles=("null", "row 6"))
add("parquet-null-in-second-row-group", lambda c: Setup([_parquet_chunks(c), c.partner(150)], "chunks.parquet"),
    "error", needles=("row 130",))
add("parquet-string-column-auto", lambda c: Setup([_parquet_plain(c, "s.parquet", [f"r{i}" for i in range(100)]),
                                                   c.partner()], "s.parquet"), "error")
add("parquet-string-column-keyed",
    lambda c: Setup([_parquet_plain(c, "s.parquet", [f"r{i}" for i in range(100)]) + ":emb", c.partner()],
                    "s.parquet"), "error", needles=("not a list column",))
add("parquet-int-column-keyed",
    lambda c: Setup([_parquet_plain(c, "i.parquet", list(range(100))) + ":emb", c.partner()], "i.parquet"),
    "error", needles=("not a list column",))
add("parquet-list-of-int", lambda c: Setup([_parquet_int_lists(c) + ":emb", c.partner()], "il.parquet"), "error",
    needles=("not floating point",))
add("parquet-list-of-strings",
    lambda c: Setup([_parquet_rows(c, "ls.parquet", [["a", "b"]] * 100, _pa().string()) + ":emb", c.partner()],
                    "ls.parquet"), "error")
add("parquet-empty-table", lambda c: Setup([_parquet_rows(c, "empty.parquet", []), c.partner(0)], "empty.parquet"),
    "error", needles=("no rows",))
add("parquet-no-columns", lambda c: Setup([c.parquet("nocol.parquet", _pa().table({})), c.partner()], "nocol.parquet"),
    "error")
add("parquet-two-candidates",
    lambda c: Setup([c.parquet("two.parquet", _two_cols(c)), c.partner()], "two.parquet"), "error",
    needles=("2 candidate",))
add("parquet-float16-lists", lambda c: Setup([_parquet_half(c), c.partner()]), "ok", check=float16_warning)


def _pa():
    import pyarrow as pa

    return pa


def _parquet_plain(c: Ctx, name: str, values) -> str:
    pa = _pa()
    return c.parquet(name, pa.table({"emb": pa.array(values)}))


def _parquet_int_lists(c: Ctx) -> str:
    pa = _pa()
    return c.parquet("il.parquet", pa.table({"emb": pa.array([[1, 2, 3]] * 100, pa.list_(pa.int64()))}))


def _parquet_chunks(c: Ctx) -> str:
    import pyarrow.parquet as pq

    pa = _pa()
    rows = [[float(i), 2.0] for i in range(150)]
    rows[130] = None
    pq.write_table(pa.table({"emb": pa.array(rows, pa.list_(pa.float64()))}), c.path("chunks.parquet"),
                   row_group_size=64)
    return c.path("chunks.parquet")


def _two_cols(c: Ctx):
    t = c.fixed_list_table(c.X)
    return t.append_column("emb2", c.fixed_list_table(c.Y).column(0))


def _parquet_half(c: Ctx) -> str:
    pa = _pa()
    flat = pa.array(c.X.astype(np.float16).reshape(-1), pa.float16())
    return c.parquet("half.parquet", pa.table({"emb": pa.FixedSizeListArray.from_arrays(flat, 10)}))


# Row counts that disagree between the two files.
add("row-mismatch-npy-vs-npy", lambda c: Setup([c.partner(), c.npy("short.npy", c.X[:99])], "short.npy"), "error",
    needles=("99 rows",))
add("row-mismatch-parquet-vs-h5",
    lambda c: Setup([c.parquet("p.parquet", c.fixed_list_table(c.X)), c.h5("long.h5", emb=c.partner_rows(101))],
                    "long.h5"), "error", needles=("101 rows",))
add("unicode-and-space-in-path-truncated",
    lambda c: Setup([truncated(c.npy("mein modell ü.npy", c.X), 0.5), c.partner()], "trunc_mein modell ü.npy"),
    "error")

# Layers: selections that do not exist, stacks that do not line up, joins that leave too little.
add("layer-index-out-of-range", lambda c: Setup([c.h5("l.h5", emb=c.X.reshape(100, 5, 2)) + ":emb", c.partner(),
                                                 "--layer-a", "5"], "l.h5"), "error",
    needles=("layer 5 is out of range", "5 layers"))
add("layer-negative-out-of-range", lambda c: Setup([c.partner(), c.npy("l.npy", c.X.reshape(100, 2, 5)),
                                                    "--layer-b", "-3"], "l.npy"), "error", needles=("2 layers",))
add("layer-slice-empty", lambda c: Setup([c.npy("l.npy", c.X.reshape(100, 2, 5)), c.partner(), "--layer-a", "1:1"],
                                         "l.npy"), "error", needles=("selects no layer",))
add("layer-on-2-d", lambda c: Setup([c.partner(), c.npy("flat.npy", c.X), "--layer-b", "0"], "flat.npy"), "error",
    needles=("no layers",))
add("glob-matches-nothing", lambda c: Setup([c.h5("g.h5", layers__l0=c.X, layers__l1=c.X) + ":layer_*",
                                             c.partner()], "g.h5"), "error", needles=("no array matches", "layers/l0"))
add("glob-layers-differ-in-d", lambda c: Setup([c.h5("g.h5", l0=c.X, l1=c.X[:, :4]) + ":l*", c.partner()], "g.h5"),
    "error", needles=("differ in shape", "l0", "l1"))
add("glob-layers-differ-in-n", lambda c: Setup([c.npz("g.npz", l0=c.X, l1=c.X[:50]) + ":l*", c.partner()],
                                               "g.npz"), "error", needles=("differ in shape",))
add("glob-matches-ids", lambda c: Setup([c.h5("g.h5", l0=c.X, lid=np.arange(100)) + ":l*", c.partner()], "g.h5"),
    "error", needles=("lid", "not a 2-D floating-point"))
add("glob-parquet-ragged-layer",
    lambda c: Setup([c.parquet("g.parquet", ragged_layers(c)) + ":layer_*", c.partner()], "g.parquet"), "error",
    needles=("layer_1", "ragged"))
add("layer-nan-in-one-layer", lambda c: Setup([c.npy("l.npy", nan_in_layer(c)), c.partner()], "l.npy"), "error",
    needles=("layer 1", "NaN"))
add("layer-int-stack", lambda c: Setup([c.h5("l.h5", emb=np.ones((100, 3, 4), dtype=np.int32)) + ":emb",
                                        c.partner()], "l.h5"), "error", needles=("integer",))
add("ids-join-leaves-too-few", lambda c: Setup([ids_table(c, "a.parquet", range(100)),
                                                ids_table(c, "b.parquet", range(95, 195)), "--ids", "id"],
                                               "a.parquet"), "error", needles=("5 items", "k+2"))


def ragged_layers(c):
    import pyarrow as pa

    good = pa.FixedSizeListArray.from_arrays(pa.array(c.X.reshape(-1)), 10)
    lengths = np.full(100, 10)
    lengths[7] = 9
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    bad = pa.ListArray.from_arrays(offsets, pa.array(np.ones(int(lengths.sum()))))
    return pa.table({"layer_0": good, "layer_1": bad})


def nan_in_layer(c):
    stack = np.stack([c.X, c.X, c.X], axis=1)
    stack[4, 1, 2] = np.nan
    return stack


# Metric parameters the data cannot serve: the error names both inputs and the numbers.
add("cknna-k1", lambda c: Setup([c.npy("k1.npy", c.X), c.partner(), "-m", "cknna", "--k", "1"], "k1.npy"), "error",
    needles=("cknna needs k ≥ 2",))
add("cknna-k-too-large", lambda c: Setup([c.npy("small.npy", c.X[:12]), c.partner(12), "-m", "cknna", "--k", "11"],
                                         "small.npy"), "error", needles=("k",))
add("svcca-dims-above-d", lambda c: Setup([c.npy("narrow.npy", c.X[:, :4]), c.partner(), "-m", "svcca:dims=6"],
                                          "narrow.npy"), "error", needles=("d too small for svcca:dims",))
add("linear-r2-folds-above-n", lambda c: Setup([c.npy("few.npy", c.X[:6]), c.partner(6), "-m", "linear-r2:folds=8"],
                                               "few.npy"), "error", needles=("folds",))
add("procrustes-constant-side", lambda c: Setup([c.npy("flat.npy", np.ones_like(c.X)), c.partner(),
                                                 "-m", "procrustes"], "flat.npy"), "either")


def ids_table(c, name, ids):
    import pyarrow as pa

    table = c.fixed_list_table(c.X).append_column("id", pa.array(list(ids)))
    return c.parquet(name, table) + ":emb"


# The number of cases, for the README to quote; test_case_count keeps it honest.
N_CASES = 160


# --------------------------------------------------------------------------- the tests


def _params(inspect: bool = False):
    """One pytest param per case; bug markers only apply to the compare test they were observed in."""
    out = []
    for c in CASES:
        if inspect and c.expect == "ok":
            continue
        marks = []
        if c.bug and not inspect:
            marks.append(pytest.mark.xfail(strict=True, reason=f"BUG: {c.bug}"))
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


def snapshot(root: Path) -> dict:
    """sha256 and mtime of every regular file under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def _reject_constant(name):
    raise AssertionError(f"non-finite number {name} in JSON output")


def check_success(r, case_check=None):
    assert "Traceback" not in r.output
    assert r.exit_code == 0, (r.exit_code, r.stderr)
    doc = json.loads(r.stdout, parse_constant=_reject_constant)
    for line in r.stderr.splitlines():
        assert line.startswith("warning: "), r.stderr
    assert doc["metrics"]
    for m in doc["metrics"]:
        lo, hi = m["range"]
        if m["value"] is None:
            assert isinstance(m["reason"], str) and m["reason"], m
        else:
            assert math.isfinite(m["value"]) and lo <= m["value"] <= hi, m
        for key in ("chance", "null_sd", "z", "p_value", "calibrated", "ci_low", "ci_high"):
            assert m[key] is None or math.isfinite(m[key]), (key, m)
    if case_check is not None:
        case_check(doc, r.stderr)
    return doc


def check_error(r, bad: str, needles=(), forbid=()):
    assert "Traceback" not in r.output, r.output
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert r.stdout == "", r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert os.path.basename(bad) in lines[0], (bad, lines[0])
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    for wrong in forbid:
        assert wrong not in lines[0], (wrong, lines[0])
    return lines[0]


def _readable(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            f.read(1)
        return True
    except PermissionError:
        return False


def _run(ctx: Ctx, setup: Setup, argv: list):
    before = snapshot(ctx.root)
    if setup.unreadable:
        os.chmod(setup.unreadable, 0)
        if hasattr(os, "geteuid") and os.geteuid() == 0 and _readable(setup.unreadable):
            os.chmod(setup.unreadable, 0o644)
            pytest.skip("running as root, which can read a chmod 000 file")
    try:
        r = runner.invoke(app, [str(a) for a in argv])
    finally:
        if setup.unreadable:
            os.chmod(setup.unreadable, 0o644)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert snapshot(ctx.root) == before, "an input file was modified"
    return r


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.mark.parametrize("case", _params())
def test_bad_input(case: Case, tmp_path):
    ctx = Ctx(tmp_path)
    setup = case.build(ctx)
    r = _run(ctx, setup, ["compare", *setup.argv, *FAST])
    if case.expect == "ok" or (case.expect == "either" and r.exit_code == 0):
        check_success(r, case.check)
    else:
        check_error(r, setup.bad, case.needles, case.forbid)


@pytest.mark.parametrize("case", _params(inspect=True))
def test_inspect_never_crashes(case: Case, tmp_path):
    """inspect on the offending file: a listing (exit 0) or one Error line naming it (exit 2), never exit 3."""
    ctx = Ctx(tmp_path)
    setup = case.build(ctx)
    bad = setup.bad if os.path.isabs(setup.bad) else ctx.path(setup.bad)
    r = _run(ctx, setup, ["inspect", bad, "-f", "json"])
    assert "Traceback" not in r.output, r.output
    assert r.exit_code in (0, 2), (r.exit_code, r.output)
    if r.exit_code == 0:
        doc = json.loads(r.stdout)
        assert doc["path"] == bad and isinstance(doc["arrays"], list)
    else:
        check_error(r, bad)


def test_case_count():
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), "case ids must be unique"
    assert len(CASES) == N_CASES, f"the corpus has {len(CASES)} cases: update N_CASES (and the README)"
    assert len(CASES) >= 40
