"""The zarr reader (v2 and v3 directory stores): arrays listed from their metadata files alone (.zarray,
zarr.json), every chunk checked present before a read, one array or one layer read through zarr."""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from repalign.errors import InputError
from repalign.io.base import FileReader, is_float
from repalign.io.npy import refuse_objects
from repalign.io.protocol import ArrayInfo

EXTRA_HINT = "pip install 'repalign[zarr]'"

_V2_ARRAY, _V2_GROUP, _V3 = ".zarray", ".zgroup", "zarr.json"


def is_zarr_dir(path: str) -> bool:
    """A directory named *.zarr, or one holding zarr metadata at its top."""
    return os.path.isdir(path) and (path.rstrip("/\\").lower().endswith(".zarr")
                                    or any(os.path.isfile(os.path.join(path, m)) for m in (_V2_ARRAY, _V2_GROUP, _V3)))


def _zarr(path: str) -> Any:
    try:
        import zarr
    except ImportError:
        raise InputError(f"{path}: reading zarr stores needs zarr: {EXTRA_HINT}") from None
    return zarr


@dataclass(frozen=True)
class _Meta:
    """What the reader needs of one array's metadata."""

    version: int
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    chunk_key: tuple[str, str]
    """(encoding 'v2' or 'default', separator)."""
    fill_value: Any


def _json(where: str, file: str) -> dict[str, Any]:
    try:
        with open(file, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: corrupt metadata {os.path.basename(file)}: not valid JSON "
                         f"({' '.join(str(exc).split())[:100]})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{where}: corrupt metadata {os.path.basename(file)}: not a JSON object")
    return doc


def _pickled(node: Any) -> bool:
    """True if a codec or filter anywhere in the metadata unpickles (numcodecs' 'pickle')."""
    if isinstance(node, dict):
        return any(isinstance(node.get(k), str) and "pickle" in node[k].lower() for k in ("id", "name")) \
            or any(_pickled(v) for v in node.values())
    if isinstance(node, list):
        return any(_pickled(v) for v in node)
    return False


def _dims(where: str, value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise InputError(f"{where}: corrupt metadata: '{what}' is not a list of non-negative integers")
    return tuple(value)


def _v2_dtype(doc: dict[str, Any]) -> str:
    raw = doc.get("dtype")
    if raw == "|O":
        ids = {f.get("id") for f in doc.get("filters") or [] if isinstance(f, dict)}
        return "str" if ids & {"vlen-utf8", "vlen-bytes"} else "object"
    try:
        return np.dtype(raw).name if isinstance(raw, str) else str(raw)
    except TypeError:
        return str(raw)


def _v3_dtype(raw: Any) -> str:
    if raw == "string":
        return "str"
    try:
        return np.dtype(raw).name if isinstance(raw, str) else json.dumps(raw)
    except TypeError:
        return str(raw)


def _meta(where: str, folder: str) -> _Meta | None:
    """The array stored in ``folder``, None for a group; refused when its metadata is broken or unpickles."""
    v2 = os.path.join(folder, _V2_ARRAY)
    if os.path.isfile(v2):
        doc = _json(where, v2)
        if _pickled(doc):
            raise InputError(f"{where}: uses the 'pickle' codec; repalign never unpickles data")
        shape, chunks = _dims(where, doc.get("shape"), "shape"), _dims(where, doc.get("chunks"), "chunks")
        return _Meta(2, shape, chunks, _v2_dtype(doc), ("v2", str(doc.get("dimension_separator") or ".")),
                     doc.get("fill_value"))
    v3 = os.path.join(folder, _V3)
    if not os.path.isfile(v3):
        return None
    doc = _json(where, v3)
    if doc.get("node_type") != "array":
        return None
    if _pickled(doc):
        raise InputError(f"{where}: uses the 'pickle' codec; repalign never unpickles data")
    shape = _dims(where, doc.get("shape"), "shape")
    grid = doc.get("chunk_grid") or {}
    chunks = _dims(where, (grid.get("configuration") or {}).get("chunk_shape"), "chunk_grid")
    encoding = doc.get("chunk_key_encoding") or {}
    name = str(encoding.get("name", "default"))
    separator = str((encoding.get("configuration") or {}).get("separator", "/" if name == "default" else "."))
    return _Meta(3, shape, chunks, _v3_dtype(doc.get("data_type")), (name, separator), doc.get("fill_value"))


def _chunk_key(meta: _Meta, index: tuple[int, ...]) -> str:
    name, sep = meta.chunk_key
    parts = [str(i) for i in index]
    if name == "v2":
        return sep.join(parts) or "0"
    return sep.join(["c", *parts])


class ZarrReader(FileReader):
    """A zarr v2 or v3 directory store; arrays are named by their path in the store ('group/array'), an array
    stored at the root is named '/'."""

    format = "zarr"
    member = "array"

    def _scan(self) -> list[ArrayInfo]:
        if not os.path.isdir(self.path):
            raise InputError(f"{self.path}: not a directory; zarr stores are read from a directory")
        top = _meta(self.path, self.path)
        if top is not None:
            return [self._info("/", top)]
        if not any(os.path.isfile(os.path.join(self.path, m)) for m in (_V2_GROUP, _V3)):
            raise InputError(f"{self.path}: not a zarr store (no .zgroup, .zarray or zarr.json at its top)")
        out: list[ArrayInfo] = []
        self._walk(self.path, "", out)
        return out

    def _walk(self, folder: str, prefix: str, out: list[ArrayInfo]) -> None:
        """Groups are entered, arrays are listed and not entered (their chunks are never listed here)."""
        for entry in sorted(os.listdir(folder)):
            child = os.path.join(folder, entry)
            if entry.startswith(".") or not os.path.isdir(child) or os.path.islink(child):
                continue
            name = prefix + entry
            meta = _meta(f"{self.path}:{name}", child)
            if meta is not None:
                out.append(self._info(name, meta))
            elif any(os.path.isfile(os.path.join(child, m)) for m in (_V2_GROUP, _V3)):
                self._walk(child, name + "/", out)

    @staticmethod
    def _info(name: str, meta: _Meta) -> ArrayInfo:
        try:
            flt = is_float(np.dtype(meta.dtype))
        except TypeError:
            flt = False
        return ArrayInfo(name, meta.shape, meta.dtype, len(meta.shape) == 2 and flt)

    def _folder(self, name: str) -> str:
        return self.path if name == "/" else os.path.join(self.path, *name.split("/"))

    def _checked(self, name: str) -> _Meta:
        """The array's metadata, once every chunk of its grid is found in the store: zarr would fill a missing
        chunk with the fill value without a word."""
        where = f"{self.path}:{name}"
        folder = self._folder(name)
        meta = _meta(where, folder)
        if meta is None:
            raise InputError(f"{where}: not an array")
        if len(meta.chunks) != len(meta.shape) or any(c <= 0 for c in meta.chunks):
            raise InputError(f"{where}: corrupt metadata: chunk shape {list(meta.chunks)} does not fit shape "
                             f"{list(meta.shape)}")
        present = set()
        for root, _, files in os.walk(folder):
            rel = os.path.relpath(root, folder)
            for f in files:
                present.add(f if rel == "." else "/".join([*rel.split(os.sep), f]))
        grid = [range(-(-s // c)) for s, c in zip(meta.shape, meta.chunks)]
        for index in itertools.product(*grid):
            key = _chunk_key(meta, index).replace("\\", "/")
            if key not in present:
                raise InputError(f"{where}: missing chunk '{key}' (zarr would silently fill it with the fill value "
                                 f"{meta.fill_value!r}; a chunk equal to the fill value is skipped when written "
                                 "with write_empty_chunks=False: rewrite with write_empty_chunks=True)")
        return meta

    def _array(self, name: str) -> Any:
        zarr = _zarr(self.path)
        self._checked(name)
        store = zarr.storage.LocalStore(self.path, read_only=True)
        return zarr.open_array(store=store, path="" if name == "/" else name, mode="r")

    def _read(self, key: str | None, layer: int | None, allow_external: bool) -> tuple[np.ndarray, str | None]:
        info = self.choose(key)
        if info.dtype == "str":
            raise InputError(f"{self.path}:{info.name}: holds strings, not numbers")
        if info.dtype == "object":
            refuse_objects(f"{self.path}:{info.name}", np.dtype(object))
        array = self._array(info.name)
        if layer is not None and len(info.shape) == 3:
            return np.ascontiguousarray(array[:, layer, :]), info.name
        return np.asarray(array[...]), info.name

    def _read_ids(self, key: str) -> np.ndarray:
        info = self.choose(key, "id array")
        ids = np.asarray(self._array(info.name)[...])
        if ids.dtype.kind == "T":  # numpy's variable-width StringDType
            ids = np.array(ids.tolist(), dtype=str)
        return ids
