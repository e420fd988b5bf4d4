"""Readers for embedding files (npy, npz, HDF5, parquet), PATH:KEY selectors and inspect()."""

from __future__ import annotations

import fnmatch
import os
import re
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
    """Split ``PATH:KEY`` at the last colon, but only when PATH exists.

    A path that exists as given is never split, so file names containing a
    colon keep working.
    """
    text = os.fspath(text)
    if os.path.exists(text):
        return Selector(text)
    if ":" in text:
        head, key = text.rsplit(":", 1)
        if head and os.path.exists(head):
            if not key:
                raise InputError(f"{head}: empty key after ':'")
            return Selector(head, key)
    raise InputError(f"{text}: no such file")


def file_format(path: str) -> str:
    """The format name for a path, from its suffix."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{path}: is a directory, not an embedding file")
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


def _npy_header(f) -> tuple[tuple, np.dtype]:
    """Shape and dtype from an open .npy stream, without reading the data."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:  # (3, 0) only differs in the header's text encoding
        shape, _, dtype = np.lib.format._read_array_header(f, version)
    return tuple(shape), np.dtype(dtype)


def _list_npy(path: str) -> list[ArrayInfo]:
    with open(path, "rb") as f:
        shape, dtype = _npy_header(f)
    return [ArrayInfo("", shape, str(dtype), len(shape) == 2 and _is_float(dtype))]


def _read_npy(path: str, key: str | None) -> tuple[np.ndarray, str | None]:
    if key is not None:
        raise InputError(f"{path}: a .npy file holds one array; remove the ':{key}' key")
    with open(path, "rb") as f:
        _, dtype = _npy_header(f)
    if dtype.hasobject:
        raise InputError(f"{path}: contains Python objects; repalign never unpickles data (store a float array)")
    # Memory-mapped: a large file costs no memory until the rows are used.
    return np.load(path, mmap_mode="r", allow_pickle=False), None


def _list_npz(path: str) -> list[ArrayInfo]:
    out = []
    with zipfile.ZipFile(path) as z:
        for member in z.namelist():
            name = member.removesuffix(".npy")
            with z.open(member) as f:
                shape, dtype = _npy_header(f)
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


def _choose(path: str, infos: list[ArrayInfo], key: str | None, what: str) -> ArrayInfo:
    """Pick the array named by key, or the only embedding-like one."""
    if key is not None:
        for info in infos:
            if info.name == key or info.name == key.strip("/"):
                return info
        listing = "; ".join(i.describe() for i in infos) or "none"
        raise InputError(f"{path}: no {what} '{key}' (available: {listing})")
    flat = [i for i in infos if i.embedding_like]
    if len(flat) == 1:  # the one 2-D float array wins, as before layers existed
        return flat[0]
    candidates = flat + [i for i in infos if i.layered]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        listing = "; ".join(i.describe() for i in infos) or "nothing"
        raise InputError(f"{path}: no 2-D (or n×layers×d) floating-point {what} to use as embeddings "
                         f"(found: {listing})")
    listing = "; ".join(i.describe() for i in candidates)
    raise InputError(f"{path}: {len(candidates)} candidate {what}s, choose one with {path}:KEY: {listing}")


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
    """Shape, bytes per value and resident bytes of what :func:`load` would read, without reading it.

    Returns None when that cannot be told cheaply (or the input is bad: then
    :func:`load` gives the error). Used to plan memory before loading.
    """
    try:
        if not isinstance(selector, Selector):
            selector = parse_selector(selector)
        path = selector.path
        fmt = file_format(path)
        infos = _LISTERS[fmt](path)
        info = infos[0] if fmt == "npy" else _choose(path, infos, selector.key, "array")
        if len(info.shape) != 2 or not info.embedding_like:
            return None
        n, d = info.shape
        itemsize = np.dtype(info.dtype).itemsize if fmt != "parquet" else 0
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            value_type = _list_type(pf.schema_arrow.field(info.name).type)[0]
            itemsize = value_type.byte_width
            if d is None:
                meta = pf.metadata
                leaf = [j for j in range(meta.num_columns)
                        if meta.schema.column(j).path.split(".")[0] == info.name]
                size = sum(meta.row_group(g).column(j).total_uncompressed_size
                           for g in range(meta.num_row_groups) for j in leaf)
                d = max(1, size // max(1, n * itemsize))
        widened = n * d * 4 if itemsize == 2 else 0
        if fmt == "npy":
            resident = widened
        elif fmt == "parquet":
            resident = 2 * n * d * itemsize + widened  # the arrow column and its numpy copy, briefly together
        else:
            resident = n * d * itemsize + widened
        return (int(n), int(d)), itemsize, int(resident)
    except Exception:  # noqa: BLE001 - planning must never replace load()'s precise error
        return None


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
    if is_glob(key):
        if fmt == "npy":
            raise InputError(f"{path}: a .npy file holds one array; remove the ':{key}' pattern")
        pattern = key.strip("/")
        matched = sorted((i for i in infos if fnmatch.fnmatchcase(i.name, pattern)), key=lambda i: natural_key(i.name))
        if not matched:
            listing = "; ".join(i.describe() for i in infos) or "none"
            raise InputError(f"{path}: no array matches '{key}' (available: {listing})")
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
