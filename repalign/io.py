"""Readers for embedding files (npy, npz, HDF5, parquet), PATH:KEY selectors and inspect()."""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repalign.errors import InputError
from repalign.validation import rows_text

FORMATS = {
    ".npy": "npy",
    ".npz": "npz",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class Selector:
    """A file and, optionally, the array inside it (``PATH:KEY``)."""

    path: str
    key: str | None = None

    def __str__(self) -> str:
        return self.path if self.key is None else f"{self.path}:{self.key}"


@dataclass(frozen=True)
class ArrayInfo:
    """One array found in a file, as listed by :func:`inspect`."""

    name: str
    """Key that selects the array (npz member, HDF5 dataset path, parquet column)."""
    shape: tuple
    """Shape; ``None`` for an unknown dimension (e.g. a ragged parquet list column)."""
    dtype: str
    """Element type as stored in the file."""
    embedding_like: bool
    """True when the array can be used as an n×d embedding (2-D, floating point)."""

    @property
    def layered(self) -> bool:
        """True for an n×L×d floating-point stack of layers (axis 1 is the layer)."""
        return len(self.shape) == 3 and self.dtype not in ("string",) and _is_float_text(self.dtype)

    def describe(self) -> str:
        dims = "×".join("?" if s is None else str(s) for s in self.shape)
        return f"{self.name} ({dims} {self.dtype})"


@dataclass
class Loaded:
    """An array read from a file, before validation."""

    selector: Selector
    key: str | None
    """The key actually used (chosen automatically when the file had one candidate)."""
    array: np.ndarray
    format: str
    stored_dtype: str


def parse_selector(text: str | os.PathLike) -> Selector:
    """Split ``PATH:KEY`` after the shortest existing file path, so keys may contain colons.

    A path that exists as given is never split, so file names containing a
    colon keep working.
    """
    text = os.fspath(text)
    if os.path.exists(text):
        return Selector(text)
    for i, c in enumerate(text):
        head = text[:i]
        if c == ":" and head and os.path.exists(head) and not os.path.isdir(head):
            if i + 1 == len(text):
                raise InputError(f"{head}: empty key after ':'")
            return Selector(head, text[i + 1 :])
    raise InputError(f"{text}: no such file")


_NOT_FILES = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
              (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def check_regular_file(path: str, what: str = "file") -> None:
    """Refuse anything but a regular file from its stat alone: opening a FIFO or a device could block forever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    for test, kind in _NOT_FILES:
        if test(mode):
            raise InputError(f"{path}: {kind}, not a {what}")
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: not a regular {what}")


def file_format(path: str) -> str:
    """The format name for a path, from its suffix; anything but a regular file is refused before any open."""
    check_regular_file(path)
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise InputError(f"{path}: unsupported file type '{p.suffix or '(none)'}' (expected one of {known})")
    return fmt


def _is_float(dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def _is_float_text(dtype: str) -> bool:
    try:
        return np.dtype(dtype).kind == "f"
    except TypeError:
        return False


# ---------------------------------------------------------------- npy / npz


def _npy_header(f, where: str, stored: int) -> tuple[tuple, np.dtype]:
    """Shape and dtype from an open .npy stream of ``stored`` bytes, without reading the data.

    A header that declares more data than the stream holds is refused here, so that nothing later
    tries to allocate (or plan for) a size the file cannot have.
    """
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    elif version == (3, 0):
        shape, dtype = _npy_header_3_0(f)
    else:
        raise InputError(f"{where}: unsupported .npy format version {version[0]}.{version[1]}")
    shape, dtype = tuple(shape), np.dtype(dtype)
    if any(not isinstance(s, int) or s < 0 for s in shape):
        raise InputError(f"{where}: header declares an invalid shape {shape}")
    declared = dtype.itemsize * _product(shape)  # Python ints: no int64 overflow
    if not dtype.hasobject and f.tell() + declared > stored:  # objects are pickled (and refused later)
        dims = "×".join(map(str, shape))
        raise InputError(f"{where}: truncated: header declares {dims} {dtype} ({_size_text(declared)}) but the "
                         f"file holds {stored:,} bytes")
    return shape, dtype


def _npy_header_3_0(f) -> tuple[tuple, np.dtype]:
    """Format 3.0 is format 2.0 with a UTF-8 header (numpy has no public reader for it)."""
    (length,) = struct.unpack("<I", f.read(4))
    if length > 100_000:
        raise ValueError(f"header of {length} bytes is too large")
    header = ast.literal_eval(f.read(length).decode("utf-8"))
    if not isinstance(header, dict) or not {"descr", "shape", "fortran_order"} <= header.keys():
        raise ValueError("header is not a dict with descr, shape and fortran_order")
    if not isinstance(header["shape"], tuple):
        raise ValueError(f"shape is not a tuple: {header['shape']!r}")
    return header["shape"], np.lib.format.descr_to_dtype(header["descr"])


def _product(shape) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def _size_text(nbytes: int) -> str:
    if nbytes >= 2**70:
        return f"{float(nbytes):.1e} bytes"
    for unit, scale in (("EB", 2**60), ("PB", 2**50), ("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes} bytes"


def _list_npy(path: str) -> list[ArrayInfo]:
    with open(path, "rb") as f:
        shape, dtype = _npy_header(f, path, os.fstat(f.fileno()).st_size)
    return [ArrayInfo("", shape, str(dtype), len(shape) == 2 and _is_float(dtype))]


def _read_npy(path: str, key: str | None) -> tuple[np.ndarray, str | None]:
    if key is not None:
        raise InputError(f"{path}: a .npy file holds one array; remove the ':{key}' key")
    with open(path, "rb") as f:
        _, dtype = _npy_header(f, path, os.fstat(f.fileno()).st_size)
    if dtype.hasobject:
        raise InputError(f"{path}: contains Python objects; repalign never unpickles data (store a float array)")
    # Memory-mapped: a large file costs no memory until the rows are used.
    return np.load(path, mmap_mode="r", allow_pickle=False), None


def _list_npz(path: str) -> list[ArrayInfo]:
    out = []
    with zipfile.ZipFile(path) as z:
        for member in z.infolist():
            name = member.filename.removesuffix(".npy")
            with z.open(member) as f:
                shape, dtype = _npy_header(f, f"{path}:{name}", member.file_size)
            out.append(ArrayInfo(name, shape, str(dtype), len(shape) == 2 and _is_float(dtype)))
    return out


def _read_npz(path: str, key: str | None) -> tuple[np.ndarray, str | None]:
    info = _choose(path, _list_npz(path), key, "member")
    if np.dtype(info.dtype).hasobject:
        raise InputError(
            f"{path}:{info.name}: contains Python objects; repalign never unpickles data (store a float array)"
        )
    with np.load(path, allow_pickle=False) as z:
        return z[info.name], info.name


# ---------------------------------------------------------------- HDF5


def _list_hdf5(path: str) -> list[ArrayInfo]:
    import h5py

    out = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            dtype = obj.dtype
            shape = tuple(obj.shape) if obj.shape is not None else ()
            text = "string" if h5py.check_string_dtype(dtype) else str(dtype)
            out.append(ArrayInfo(name, shape, text, len(shape) == 2 and _is_float(dtype)))

    with h5py.File(path, "r") as f:
        f.visititems(visit)  # follows hard links only: never opens another file

        def links(name, link):
            if isinstance(link, h5py.ExternalLink):
                out.append(ArrayInfo(name, (), f"external link to {link.filename}:{link.path}", False))

        f.visititems_links(links)
    return out


def _read_hdf5(path: str, key: str | None, allow_external: bool = False,
               layer: int | None = None) -> tuple[np.ndarray, str | None]:
    """Read one dataset (or one layer of an n×L×d one); links and virtual or external storage that reach
    other files need allow_external."""
    import h5py

    info = _choose(path, _list_hdf5(path), key, "dataset")
    where = f"{path}:{info.name}"
    hint = "refused, since it would read another file (pass --allow-external to permit it)"
    with h5py.File(path, "r") as f:
        parts = info.name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            link = f.get("/".join(parts[:i]), getlink=True)
            if isinstance(link, h5py.ExternalLink) and not allow_external:
                raise InputError(f"{where}: external link to {link.filename}:{link.path}; {hint}")
        obj = f[info.name]
        if not isinstance(obj, h5py.Dataset):
            raise InputError(f"{where}: is a group, not a dataset")
        if obj.shape is None:
            raise InputError(f"{where}: empty dataset (null dataspace), no values")
        if not allow_external:
            if obj.is_virtual:
                others = sorted({s.file_name for s in obj.virtual_sources() if s.file_name != "."})
                if others:
                    raise InputError(f"{where}: virtual dataset reading {', '.join(others)}; {hint}")
            if obj.external:
                raise InputError(f"{where}: stored in external raw files; {hint}")
        if layer is not None:
            return obj[:, layer, :], info.name  # reads only this layer from disk
        return obj[()], info.name


# ---------------------------------------------------------------- parquet


def _list_type(t):
    """(value_type, fixed_size or None) for a list-like arrow type, else None."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(t):
        return t.value_type, t.list_size
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return t.value_type, None
    return None


def _arrow_float(t) -> bool:
    import pyarrow as pa

    return pa.types.is_floating(t)


def _list_parquet(path: str) -> list[ArrayInfo]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    n = pf.metadata.num_rows
    out = []
    for field in pf.schema_arrow:
        lt = _list_type(field.type)
        if lt is None:
            out.append(ArrayInfo(field.name, (n,), str(field.type), False))
        else:
            value_type, size = lt
            out.append(ArrayInfo(field.name, (n, size), str(field.type), _arrow_float(value_type)))
    return out


def _read_parquet(path: str, key: str | None) -> tuple[np.ndarray, str | None]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    info = _choose(path, _list_parquet(path), key, "column")
    where = f"{path}:{info.name}"
    col = pq.read_table(path, columns=[info.name]).column(0)
    lt = _list_type(col.type)
    if lt is None:
        raise InputError(f"{where}: column of type {col.type} is not a list column "
                         "(expected list<float> or fixed_size_list<float>)")
    if not _arrow_float(lt[0]):
        raise InputError(f"{where}: list values are {lt[0]}, not floating point")
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if arr.null_count:
        rows = np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))
        raise InputError(f"{where}: null embedding in {rows_text(rows)}")
    if lt[1] is not None:
        d = lt[1]
    else:
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        d = int(lengths[0]) if n else 0
        ragged = np.flatnonzero(lengths != d)
        if ragged.size:
            i = int(ragged[0])
            raise InputError(
                f"{where}: ragged list column: row 0 has {d} values but row {i} has {int(lengths[i])}"
                f" ({ragged.size} rows differ from row 0)"
            )
    # flatten() honours slicing offsets, unlike .values; one contiguous copy, no per-row loop.
    values = arr.flatten()
    if values.null_count:
        flat = np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))
        raise InputError(f"{where}: null values inside embeddings in {rows_text(np.unique(flat // max(d, 1)))}")
    out = values.to_numpy(zero_copy_only=False).reshape(n, d)
    return out, info.name


# ---------------------------------------------------------------- common


_LIST_ALL_UP_TO, _LIST_FIRST = 20, 10


def listing(path: str, infos: list[ArrayInfo], empty: str = "none") -> str:
    """'a (3×4 float32); b (...)' for an error message; a long list is cut to its first few and a count."""
    if not infos:
        return empty
    if len(infos) <= _LIST_ALL_UP_TO:
        return "; ".join(i.describe() for i in infos)
    shown = "; ".join(i.describe() for i in infos[:_LIST_FIRST])
    return f"{shown}; … and {len(infos) - _LIST_FIRST:,} more; run repalign inspect {path}"


def _literal(infos: list[ArrayInfo], key: str) -> ArrayInfo | None:
    """The array whose name is exactly ``key`` (a leading or trailing '/' aside), whatever characters it holds."""
    for info in infos:
        if info.name == key or info.name == key.strip("/"):
            return info
    return None


def _choose(path: str, infos: list[ArrayInfo], key: str | None, what: str) -> ArrayInfo:
    """Pick the array named by key, or the only embedding-like one."""
    if key is not None:
        info = _literal(infos, key)
        if info is not None:
            return info
        raise InputError(f"{path}: no {what} '{key}' (available: {listing(path, infos)})")
    flat = [i for i in infos if i.embedding_like]
    if len(flat) == 1:  # the one 2-D float array wins, as before layers existed
        return flat[0]
    candidates = flat + [i for i in infos if i.layered]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(f"{path}: no 2-D (or n×layers×d) floating-point {what} to use as embeddings "
                         f"(found: {listing(path, infos, 'nothing')})")
    raise InputError(f"{path}: {len(candidates):,} candidate {what}s, choose one with {path}:KEY: "
                     f"{listing(path, candidates)}")


_LISTERS = {"npy": _list_npy, "npz": _list_npz, "hdf5": _list_hdf5, "parquet": _list_parquet}
_READERS = {"npy": _read_npy, "npz": _read_npz, "hdf5": _read_hdf5, "parquet": _read_parquet}


def _guard(path: str, fmt: str, fn, *args):
    """Run a reader, turning library exceptions about a bad file into one-line InputErrors."""
    try:
        return fn(path, *args)
    except InputError:
        raise
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except MemoryError:
        raise InputError(f"{path}: not enough memory to read this array") from None
    except Exception as exc:  # noqa: BLE001 - h5py, pyarrow, zipfile and numpy raise many types for bad files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if "mmap length is greater than file size" in reason:
            reason = "truncated: the file is shorter than its header says"
        if len(reason) > 160:
            reason = reason[:157] + "..."
        raise InputError(f"{path}: cannot be read as {fmt} ({reason})") from None


def inspect(path: str | os.PathLike) -> list[ArrayInfo]:
    """List every array in a file, marking those usable as embeddings."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    fmt = file_format(path)
    return _guard(path, fmt, _LISTERS[fmt])


def load(selector: Selector | str | os.PathLike, allow_external: bool = False) -> Loaded:
    """Read the array a selector points at. The file is opened read-only.

    ``allow_external`` permits HDF5 external links and virtual or external
    datasets that read other files; they are refused by default.
    """
    if not isinstance(selector, Selector):
        selector = parse_selector(selector)
    path = selector.path
    fmt = file_format(path)
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file")
    args = (selector.key, allow_external) if fmt == "hdf5" else (selector.key,)
    array, key = _guard(path, fmt, _READERS[fmt], *args)
    return Loaded(selector, key, array, fmt, str(array.dtype))


def describe(selector: Selector | str | os.PathLike) -> tuple[tuple[int, int], int, int] | None:
    """Shape of one layer, bytes per value and bytes resident while :func:`load` (or one layer's read) runs,
    from headers and metadata alone.

    Works for any 2-D array of a fixed-size type (and per layer for an n×L×d one), float or not, so that
    even an array later refused for its type is never read before the plan. Returns None when that
    cannot be told (or the input is bad: then :func:`load` gives the error).
    """
    try:
        if not isinstance(selector, Selector):
            selector = parse_selector(selector)
        path = selector.path
        fmt = file_format(path)
        infos = _LISTERS[fmt](path)
        info = infos[0] if fmt == "npy" else _choose(path, infos, selector.key, "array")
        return _plan_array(path, fmt, info)
    except Exception:  # noqa: BLE001 - planning must never replace load()'s precise error
        return None


def stored_bytes(selector: Selector | str | os.PathLike) -> int | None:
    """Bytes a whole read of the array a selector names would hold, whatever its shape, from headers alone
    (0 for a memory-mapped .npy; None when unknown)."""
    try:
        if not isinstance(selector, Selector):
            selector = parse_selector(selector)
        fmt = file_format(selector.path)
        infos = _LISTERS[fmt](selector.path)
        info = infos[0] if fmt == "npy" else _choose(selector.path, infos, selector.key, "array")
        if fmt == "npy" or None in info.shape:
            return 0 if fmt == "npy" else None
        return _product(info.shape) * np.dtype(info.dtype).itemsize
    except Exception:  # noqa: BLE001 - as describe()
        return None


def _plan_array(path: str, fmt: str, info: ArrayInfo) -> tuple[tuple[int, int], int, int] | None:
    if len(info.shape) not in (2, 3):
        return None
    n, d = int(info.shape[0]), info.shape[-1]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        itemsize = _list_type(pf.schema_arrow.field(info.name).type)[0].byte_width
        values = n * d if d is not None else _parquet_values(pf.metadata, info.name)
        d = -(-values // n) if n else 0
        resident = 2 * values * itemsize  # the arrow column and its combined copy, briefly together
    else:
        itemsize = np.dtype(info.dtype).itemsize
        layer = n * d * itemsize
        if fmt == "npy":
            resident = layer if len(info.shape) == 3 else 0  # memory-mapped; a layer is copied out
        elif fmt == "npz" and len(info.shape) == 3:
            resident = _product(info.shape) * itemsize + layer  # the member is read whole, then sliced
        else:
            resident = layer
    widened = n * d * 4 if itemsize == 2 else 0
    return (n, int(d)), int(itemsize), int(resident + widened)


def _parquet_values(meta, column: str) -> int:
    """Upper bound on the values of a list column from the footer alone: each leaf column chunk's
    num_values counts every value (plus one per null or empty list), however well the pages compress."""
    leaf = [j for j in range(meta.num_columns) if meta.schema.column(j).path.split(".")[0] == column]
    return sum(meta.row_group(g).column(j).num_values for g in range(meta.num_row_groups) for j in leaf)


# ---------------------------------------------------------------- layers

_GLOB_CHARS = "*?["


def is_glob(key: str | None) -> bool:
    return key is not None and any(c in key for c in _GLOB_CHARS)


def natural_key(text: str) -> list:
    """Sort key that puts layer_2 before layer_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class LayerSet:
    """The layers one selector names, read one at a time.

    Three layouts: a single n×d array (one layer, ``layered`` False); an n×L×d
    array, axis 1 being the layer (the paper's layout); or separate n×d arrays
    matched by a glob in the key, in natural order.
    """

    selector: Selector
    format: str
    key: str | None
    """The key as resolved: the array's name, or the glob."""
    keys: tuple
    """Per layer, the array it lives in."""
    indices: tuple
    """Per layer, its index along axis 1 (n×L×d layout), else None."""
    labels: tuple[str, ...]
    """Per layer, how reports name it: its index for n×L×d, its key for a glob."""
    shape: tuple
    """Shape as stored (for a glob: n×L×d as if stacked)."""
    stored_dtype: str
    layered: bool
    allow_external: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def where(self) -> str:
        return self.selector.path if self.key is None else f"{self.selector.path}:{self.key}"

    def layer_name(self, i: int) -> str:
        """'file:key' for one layer, for messages."""
        if self.indices[i] is not None:
            return f"{self.where} layer {self.indices[i]}"
        return self.selector.path if self.keys[i] is None else f"{self.selector.path}:{self.keys[i]}"

    def read(self, i: int) -> np.ndarray:
        """Layer i as stored (before validation); only that layer is read where the format allows it."""
        path, key, idx = self.selector.path, self.keys[i], self.indices[i]
        if self.format == "hdf5":
            array, _ = _guard(path, self.format, _read_hdf5, key, self.allow_external, idx)
            return array
        if idx is None:
            array, _ = _guard(path, self.format, _READERS[self.format], key)
            return array
        if self.format == "npy":
            array, _ = _guard(path, self.format, _read_npy, None)
        else:  # npz: the member is read whole (compressed members cannot be sliced)
            array, _ = _guard(path, self.format, _read_npz, key)
        return np.ascontiguousarray(array[:, idx, :])

    def select(self, spec: str | None) -> LayerSet:
        """The layers a --layer-a/--layer-b specification picks (None or 'all': every layer)."""
        if spec is None:
            return self
        if not self.layered:
            raise InputError(f"{self.where}: holds a single 2-D array, so it has no layers to select "
                             f"(--layer {spec})")
        pick = parse_layers(spec, len(self), self.where)
        return LayerSet(self.selector, self.format, self.key, tuple(self.keys[i] for i in pick),
                        tuple(self.indices[i] for i in pick), tuple(self.labels[i] for i in pick), self.shape,
                        self.stored_dtype, True, self.allow_external)


def parse_layers(spec: str, count: int, where: str) -> list[int]:
    """Indices chosen by ``all``, an index (negative counts from the end), a slice ``0:12:2`` or a list ``1,3,-1``."""
    from repalign.errors import UsageError

    text = str(spec).strip()
    if text.lower() == "all":
        return list(range(count))
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if ":" in part:
                bits = [int(b) if b.strip() else None for b in part.split(":")]
                if len(bits) > 3 or bits[2:] == [0]:
                    raise ValueError
                chosen = list(range(count))[slice(*bits)]
                if not chosen:
                    raise InputError(f"{where}: layer slice '{part}' selects no layer ({count} layers)")
                out.extend(chosen)
            else:
                i = int(part)
                if not -count <= i < count:
                    raise InputError(f"{where}: layer {i} is out of range; it has {count} layer"
                                     f"{'s' if count > 1 else ''} (0..{count - 1}, or -{count}..-1)")
                out.append(i % count)
        except ValueError:
            raise UsageError(f"--layer '{spec}': expected all, an index, a slice like 0:12:2 or a list like "
                             "1,3,-1") from None
    return list(dict.fromkeys(out))


def open_layers(selector: Selector | str | os.PathLike, allow_external: bool = False) -> LayerSet:
    """Resolve a selector to its layers without reading any values."""
    if not isinstance(selector, Selector):
        selector = parse_selector(selector)
    path, key = selector.path, selector.key
    fmt = file_format(path)
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file")
    infos = _guard(path, fmt, _LISTERS[fmt])
    if is_glob(key) and _literal(infos, key) is None:  # a key that exists as written is never a pattern
        if fmt == "npy":
            raise InputError(f"{path}: a .npy file holds one array; remove the ':{key}' pattern")
        pattern = key.strip("/")
        matched = sorted((i for i in infos if fnmatch.fnmatchcase(i.name, pattern)), key=lambda i: natural_key(i.name))
        if not matched:
            raise InputError(f"{path}: no array matches '{key}' (available: {listing(path, infos)})")
        for i in matched:
            if not i.embedding_like:
                raise InputError(f"{path}:{i.name} matches '{key}' but is not a 2-D floating-point array "
                                 f"({i.describe()})")
        first = matched[0]
        for i in matched[1:]:
            if i.shape != first.shape and None not in i.shape + first.shape:
                raise InputError(f"{path}: layers matched by '{key}' differ in shape: {first.describe()} but "
                                 f"{i.describe()}")
        n, d = first.shape
        return LayerSet(selector, fmt, key, tuple(i.name for i in matched), (None,) * len(matched),
                        tuple(i.name for i in matched), (n, len(matched), d), first.dtype, True, allow_external)
    if fmt == "npy":
        if key is not None:
            raise InputError(f"{path}: a .npy file holds one array; remove the ':{key}' key")
        info = infos[0]
    else:
        what = {"npz": "member", "hdf5": "dataset", "parquet": "column"}[fmt]
        info = _guard(path, fmt, lambda p: _choose(p, infos, key, what))
    if len(info.shape) == 3:  # a stack of layers (its dtype is checked layer by layer when read)
        count = info.shape[1]
        if count == 0:
            raise InputError(f"{path}{':' + info.name if info.name else ''}: has 0 layers (shape {info.shape})")
        name = info.name or None
        return LayerSet(selector, fmt, name, (name,) * count, tuple(range(count)),
                        tuple(str(i) for i in range(count)), info.shape, info.dtype, True, allow_external)
    if len(info.shape) > 3:
        raise InputError(f"{path}{':' + info.name if info.name else ''}: expected a 2-D array (n × d) or a 3-D "
                         f"stack of layers (n × layers × d), got shape {info.shape}")
    name = info.name or None
    label = name or os.path.basename(path)
    return LayerSet(selector, fmt, name, (name,), (None,), (label,), info.shape, info.dtype, False, allow_external)
