"""Property-based tests (hypothesis): whatever is in the files, `repalign compare` answers in one of two ways.

- exit 0 with one JSON document whose every metric value is finite and inside its ``range``, or ``null``
  with a ``reason`` (and chance, sd, z, ... finite or null), and nothing but ``warning:`` lines on stderr;
- exit 2 with exactly one line on stderr, ``Error: ...``, naming one of the input files.

Never exit 3, never a traceback. Strategies write random arrays (random shapes down to 0 rows or 0 columns,
float16/32/64 and some integer dtypes, NaN/Inf/huge/tiny entries, zero, duplicate and identical rows) into
every format, random bytes into files with every suffix, and valid files with bytes overwritten or cut.
``test_scaling_changes_nothing`` adds a metamorphic check: scaling an input by a power of two must not
change any number.

derandomize=True makes every run (and CI) see the same examples; there is no example database.

Bugs that are already reproduced by a strict-xfail case in ``test_corpus.py`` are recognised by their
exact signature (``KNOWN_BUGS``) and counted as hypothesis events instead of failing here, so that these
tests keep hunting for new bugs. ``test_tolerated_bugs_are_still_open`` fails once the corpus case is
fixed and un-marked, so the tolerance is removed together with the bug.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from typer.testing import CliRunner

from repalign.cli import app

FAST = ["--resamples", "0", "--permutations", "0", "-f", "json"]
runner = CliRunner()


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


class Scratch:
    """A fresh directory per hypothesis example (function-scoped fixtures do not mix with @given)."""

    def __init__(self, root: Path):
        self.root = root

    def __enter__(self) -> Path:
        self.dir = Path(tempfile.mkdtemp(dir=self.root))
        return self.dir

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- the contract

KNOWN_BUGS: dict = {
    # name: (signature on the CLI result, the test_corpus case that reproduces it with a strict xfail).
    # Empty: the 17 bugs the first run of these tests found are fixed.
}


def _reject_constant(name):
    raise AssertionError(f"non-finite number {name} in JSON output")


def check_contract(r, paths: list[str]) -> dict | None:
    """Assert the CLI contract; return the JSON document on success. Known bugs are counted, not failed."""
    try:
        return _check_contract(r, paths)
    except AssertionError:
        for name, (signature, _) in KNOWN_BUGS.items():
            if signature(r):
                event(f"known bug: {name}")
                return None
        note(f"exit {r.exit_code}\nstdout: {r.stdout[:2000]}\nstderr: {r.stderr[-3000:]}")
        raise


def _error_kind(line: str, paths) -> str:
    """The error message without paths, numbers and quoted details: a coarse category for statistics."""
    for p in paths:
        line = line.replace(p, "FILE")
    line = re.sub(r"\(.*", "", line)
    return re.sub(r"\d+", "N", line)[:70]


def _check_contract(r, paths):
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    assert r.exit_code in (0, 2), r.exit_code
    if r.exit_code == 2:
        assert r.stdout == ""
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
        assert any(p in lines[0] for p in paths), (paths, lines[0])
        event("exit 2")
        event("error: " + _error_kind(lines[0], paths))
        return None
    doc = json.loads(r.stdout, parse_constant=_reject_constant)
    assert all(line.startswith("warning: ") for line in r.stderr.splitlines()), r.stderr
    assert doc["metrics"]
    for m in doc["metrics"]:
        lo, hi = m["range"]
        if m["value"] is None:
            assert isinstance(m["reason"], str) and m["reason"], m
            event(f"{m['name']} null")
        else:
            assert isinstance(m["value"], (int, float)) and math.isfinite(m["value"]), m
            assert lo <= m["value"] <= hi, m
        for key in ("chance", "null_sd", "z", "p_value", "calibrated", "ci_low", "ci_high"):
            assert m[key] is None or math.isfinite(m[key]), (key, m)
    event("exit 0")
    return doc


# One test per tolerated bug, so that an empty KNOWN_BUGS shows up as a skip ("empty parameter set"),
# not as a pass.
@pytest.mark.parametrize("name", sorted(KNOWN_BUGS))
def test_tolerated_bugs_are_still_open(name):
    """Each tolerated signature must still be a strict-xfail case in the corpus; fixed → remove it here."""
    from test_corpus import CASES

    case_id = KNOWN_BUGS[name][1]
    open_bugs = {c.id for c in CASES if c.bug}
    assert case_id in {c.id for c in CASES}, f"KNOWN_BUGS[{name!r}] names no corpus case {case_id!r}"
    assert case_id in open_bugs, f"{case_id} is fixed: delete KNOWN_BUGS[{name!r}] in test_properties.py"


# --------------------------------------------------------------------------- writers

FORMATS = ("npy", "npz", "h5", "parquet")
SUFFIXES = (".npy", ".npz", ".h5", ".hdf5", ".hdf", ".parquet", ".pq")


def write_array(fmt: str, path: Path, arr: np.ndarray, extra: bool = False, fixed: bool = True) -> str:
    """Write ``arr`` as the embedding 'emb', plus (extra) a 1-D integer array that auto-choice must skip."""
    n, d = arr.shape
    if fmt == "npy":
        np.save(path, arr)
    elif fmt == "npz":
        np.savez(path, emb=arr, **({"ids": np.arange(n)} if extra else {}))
    elif fmt == "h5":
        import h5py

        with h5py.File(path, "w") as f:
            f.create_dataset("emb", data=arr)
            if extra:
                f.create_dataset("meta/ids", data=np.arange(n))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = pa.array(arr.reshape(-1))
        if fixed and d > 0:
            col = pa.FixedSizeListArray.from_arrays(flat, d)
        else:
            col = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * d), flat)
        cols = {"emb": col}
        if extra:
            cols["id"] = pa.array(np.arange(n))
        pq.write_table(pa.table(cols), path)
    return str(path)


# --------------------------------------------------------------------------- strategies

FLOATS = (np.float64, np.float32, np.float16)
INTS = (np.int64, np.int32, np.uint16)
# Power-of-two exponents: mostly ordinary magnitudes, sometimes huge or tiny (overflowing the dtype to inf
# or underflowing to zero is part of the test).
SCALES = (0, 0, 0, 0, 0, -4, 4, -24, 24, -70, 70, -140, 140, -520, 520, -1000, 1000)
EDITS = ("dup_row", "const_col", "tiny", "zero_row", "identical_rows", "huge")
NONFINITE = ("nan", "inf")


def rarely(m: int):
    """True with probability about 1/m (st.integers(0, m - 1) == 0 would be true far more often: hypothesis
    favours small values)."""
    return st.sampled_from([False] * (m - 1) + [True])


@st.composite
def embedding(draw, n: int) -> np.ndarray:
    d = draw(st.sampled_from((1, 2, 3, 4, 5, 6) * 3 + (0,)))
    dtype = np.dtype(draw(st.sampled_from(INTS if draw(rarely(10)) else FLOATS)))
    if draw(rarely(6)):
        elements = hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True) if dtype.kind == "f" \
            else hnp.from_dtype(dtype)
        a = draw(hnp.arrays(dtype, (n, d), elements=elements))
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        with np.errstate(all="ignore"):
            a = np.ldexp(rng.standard_normal((n, d)), draw(st.sampled_from(SCALES)))
            if dtype.kind == "f":
                a = a.astype(dtype)
            else:
                a = np.clip(np.round(a * 10), -1e9, 1e9).astype(dtype)
    if n and d and dtype.kind == "f":
        a = a.copy()
        edits = draw(st.lists(st.sampled_from(EDITS), max_size=2))
        if draw(rarely(8)):
            edits.append(draw(st.sampled_from(NONFINITE)))
        for edit in edits:
            i = draw(st.integers(0, n - 1))
            j = draw(st.integers(0, d - 1))
            if edit == "zero_row":
                a[i] = 0
            elif edit == "dup_row":
                a[i] = a[draw(st.integers(0, n - 1))]
            elif edit == "identical_rows":
                a[:] = a[i]
            elif edit == "const_col":
                a[:, j] = a[i, j]
            elif edit == "nan":
                a[i, j] = np.nan
            elif edit == "inf":
                a[i, j] = draw(st.sampled_from([np.inf, -np.inf]))
            elif edit == "huge":
                a[i, j] = np.finfo(dtype).max / draw(st.sampled_from([1, 2, 1e4]))
            else:
                a[i, j] = np.finfo(dtype).smallest_subnormal
    return a


@st.composite
def side(draw, n: int):
    """(format, array, extra member?, fixed-size parquet list?, select by key?)"""
    return (draw(st.sampled_from(FORMATS)), draw(embedding(n)), draw(st.booleans()), draw(st.booleans()),
            draw(rarely(4)))


@st.composite
def options(draw, n: int) -> list[str]:
    out = []
    metrics = draw(st.lists(st.sampled_from(["mknn", "cka", "cka-unbiased"]), min_size=1, max_size=3, unique=True))
    if metrics != ["mknn", "cka"]:
        out += ["-m", ",".join(metrics)]
    # Mostly a k that fits n (1 ≤ k ≤ n−2); sometimes the default (10) or one too large.
    k = None if draw(rarely(4)) else draw(st.integers(1, max(1, min(n - 2, 5))))
    if k is not None:
        out += ["--k", str(k)]
    out += ["-d", draw(st.sampled_from(["cosine", "cosine", "ip", "l2"]))]
    if draw(rarely(5)):
        out += ["--normalize"]
    clip = draw(st.sampled_from([None, None, None, None, "0.9", "1"]))
    if clip:
        out += ["--clip", clip]
    return out


@st.composite
def pairs(draw):
    n = draw(st.one_of(st.integers(0, 5), st.integers(6, 16), st.integers(17, 40)))
    nb = draw(st.integers(0, 20)) if draw(rarely(10)) else n
    return draw(side(n)), draw(side(nb)), draw(options(n))


def _materialise(d: Path, spec, name: str) -> tuple[str, str]:
    fmt, arr, extra, fixed, keyed = spec
    path = write_array(fmt, d / f"{name}.{'h5' if fmt == 'h5' else fmt}", arr, extra, fixed)
    return path, (path + ":emb" if keyed and fmt != "npy" else path)


# --------------------------------------------------------------------------- properties


@_settings(200)
@given(pair=pairs())
def test_random_arrays_in_every_format(workdir, pair):
    (sa, sb, opts) = pair
    with Scratch(workdir) as d:
        pa_, sel_a = _materialise(d, sa, "a")
        pb_, sel_b = _materialise(d, sb, "b")
        note(f"a: {sa[0]} {sa[1].dtype} {sa[1].shape}  b: {sb[0]} {sb[1].dtype} {sb[1].shape}  options: {opts}")
        r = runner.invoke(app, ["compare", sel_a, sel_b, *FAST, *opts])
        check_contract(r, [pa_, pb_])


MAGIC = (b"", b"\x93NUMPY\x01\x00", b"\x93NUMPY\x02\x00", b"PK\x03\x04", b"PK\x05\x06", b"\x89HDF\r\n\x1a\n",
         b"PAR1")


@_settings(120)
@given(suffix=st.sampled_from(SUFFIXES), magic=st.sampled_from(MAGIC), body=st.binary(max_size=400),
       tail_magic=st.booleans(), as_b=st.booleans())
def test_random_bytes_with_every_suffix(workdir, suffix, magic, body, tail_magic, as_b):
    with Scratch(workdir) as d:
        junk = d / f"junk{suffix}"
        junk.write_bytes(magic + body + (b"PAR1" if tail_magic else b""))
        good = write_array("npy", d / "good.npy", np.random.default_rng(0).standard_normal((20, 3)))
        argv = [good, str(junk)] if as_b else [str(junk), good]
        r = runner.invoke(app, ["compare", *argv, *FAST])
        check_contract(r, [str(junk)])
        r = runner.invoke(app, ["inspect", str(junk), "-f", "json"])
        assert "Traceback" not in r.output and r.exit_code in (0, 2), r.output
        if r.exit_code == 2:
            assert r.stderr.startswith("Error: ") and str(junk) in r.stderr and len(r.stderr.splitlines()) == 1


@st.composite
def mutated(draw):
    """A valid file of each format with some bytes overwritten, a stretch deleted, or its end cut off."""
    fmt = draw(st.sampled_from(FORMATS))
    n = draw(st.integers(1, 30))
    d = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([np.float64, np.float32, np.float16]))
    seed = draw(st.integers(0, 2**16))
    where = st.integers(0, 9999).map(lambda i: i / 10000)  # st.floats would crowd at 0 and 1
    kinds = st.sampled_from(["set", "set", "set", "delete", "cut"])
    edits = draw(st.lists(st.tuples(kinds, where, st.integers(0, 255), st.integers(1, 16)), min_size=1, max_size=3))
    return fmt, n, d, dtype, seed, edits, draw(st.booleans())


@_settings(120)
@given(spec=mutated())
def test_mutated_valid_files(workdir, spec):
    fmt, n, d, dtype, seed, edits, compressed = spec
    arr = np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)
    with Scratch(workdir) as tmp:
        src = tmp / f"m.{fmt}"
        if fmt == "npz" and compressed:
            np.savez_compressed(src, emb=arr)
        else:
            write_array(fmt, src, arr, fixed=compressed)
        data = bytearray(src.read_bytes())
        for kind, where, value, length in edits:
            if not data:
                break
            i = min(int(where * len(data)), len(data) - 1)
            if kind == "set":
                data[i : i + length] = bytes([value]) * len(data[i : i + length])
            elif kind == "delete":
                del data[i : i + length]
            else:
                del data[i:]
        src.write_bytes(bytes(data))
        good = write_array("npy", tmp / "good.npy", np.random.default_rng(1).standard_normal((n, 3)))
        before = src.read_bytes(), src.stat().st_mtime_ns
        r = runner.invoke(app, ["compare", str(src), good, *FAST, "--k", "1" if n < 12 else "10"])
        check_contract(r, [str(src)])
        r = runner.invoke(app, ["inspect", str(src), "-f", "json"])
        assert "Traceback" not in r.output and r.exit_code in (0, 2), r.output
        assert (src.read_bytes(), src.stat().st_mtime_ns) == before, "the input file was modified"


@_settings(40)
@given(seed=st.integers(0, 2**16), n=st.integers(6, 30), e=st.integers(-40, 40),
       distance=st.sampled_from(["cosine", "ip", "l2"]), dtype=st.sampled_from([np.float64, np.float32]))
def test_scaling_changes_nothing(workdir, seed, n, e, distance, dtype):
    """Every metric is invariant to scaling an input by a positive constant, and 2**e scales floats exactly.

    The exponent range stays where float32 products neither overflow nor underflow; beyond it, see the
    corpus cases float32-values-1e19-l2 and float64-values-* (known bugs).
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4)).astype(dtype)
    Y = (X[:, :3] + rng.standard_normal((n, 3))).astype(dtype)
    with Scratch(workdir) as d:
        x = write_array("npy", d / "x.npy", X)
        xs = write_array("npy", d / "xs.npy", np.ldexp(X, e).astype(dtype))
        y = write_array("npy", d / "y.npy", Y)
        opts = [*FAST, "-m", "mknn,cka,cka-unbiased", "--k", "3", "-d", distance]
        base = check_contract(runner.invoke(app, ["compare", x, y, *opts]), [x, y])
        scaled = check_contract(runner.invoke(app, ["compare", xs, y, *opts]), [xs, y])
    assert base is not None and scaled is not None
    for m0, m1 in zip(base["metrics"], scaled["metrics"]):
        if m0["name"] == "mknn":
            assert m0["value"] == m1["value"], (m0, m1)
        elif m0["value"] is None:
            assert m1["value"] is None, (m0, m1)
        else:
            assert m1["value"] == pytest.approx(m0["value"], abs=1e-6), (m0, m1)


# --------------------------------------------------------------------------- layers


@st.composite
def layered_side(draw, n: int):
    """(format, n×L×d stack, stored as one 3-D array or as separate 2-D arrays matched by a glob, layer spec)"""
    base = draw(embedding(n))
    count = draw(st.integers(1, 3))
    stack = np.stack([np.roll(base, shift, axis=0) for shift in range(count)], axis=1)
    glob = draw(st.booleans())
    fmt = draw(st.sampled_from(("npz", "h5", "parquet") if glob else ("npy", "npz", "h5")))
    spec = draw(st.sampled_from([None, "all", "0", "-1", str(count), "0:2", "1:1", "::-1", "0,-1"]))
    return fmt, stack, glob, spec


def _write_layers(d: Path, fmt: str, stack: np.ndarray, glob: bool, name: str) -> tuple[str, str]:
    path = d / f"{name}.{fmt}"
    layers = {f"layer_{i}": stack[:, i] for i in range(stack.shape[1])}
    if fmt == "npy":
        np.save(path, stack)
    elif fmt == "npz":
        np.savez(path, **(layers if glob else {"emb": stack}))
    elif fmt == "h5":
        import h5py

        with h5py.File(path, "w") as f:
            for key, arr in (layers.items() if glob else [("emb", stack)]):
                f.create_dataset(key, data=arr)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {}
        for key, arr in layers.items():
            flat = pa.array(arr.reshape(-1))
            offsets = pa.array(np.arange(arr.shape[0] + 1, dtype=np.int32) * arr.shape[1])
            cols[key] = pa.ListArray.from_arrays(offsets, flat)
        pq.write_table(pa.table(cols), path)
    key = "layer_*" if glob else ("emb" if fmt != "npy" else None)
    return str(path), str(path) if key is None else f"{path}:{key}"


@_settings(80)
@given(data=st.data())
def test_random_layer_stacks(workdir, data):
    """Sweeps over random stacks and random layer selections keep the contract; every cell is finite or null."""
    n = data.draw(st.one_of(st.integers(0, 5), st.integers(6, 24)))
    fmt, stack, glob, spec = data.draw(layered_side(n))
    other = data.draw(side(n))
    opts = data.draw(options(n))
    with Scratch(workdir) as d:
        pa_, sel_a = _write_layers(d, fmt, stack, glob, "a")
        pb_, sel_b = _materialise(d, other, "b")
        argv = ["compare", sel_a, sel_b, *FAST, *opts] + (["--layer-a", spec] if spec else [])
        note(f"a: {fmt} {stack.dtype} {stack.shape} glob={glob} spec={spec}  b: {other[0]} {other[1].shape} {opts}")
        r = runner.invoke(app, argv)
        doc = check_contract(r, [pa_, pb_])
        if doc is not None and doc.get("sweep"):
            for name, grids in doc["sweep"]["metrics"].items():
                for row in grids["value"]:
                    assert all(v is None or math.isfinite(v) for v in row), (name, row)
