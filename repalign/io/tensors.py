"""The safetensors reader: tensors listed from the JSON header alone, one tensor read per key."""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

from repalign.errors import InputError
from repalign.io.base import FileReader, Stamp, layer_of, product, size_text
from repalign.io.protocol import ArrayInfo

# safetensors dtype → (name shown in listings, bytes per value). Names numpy knows are numpy's, so that
# the rest of repalign (listings, validation) treats them as for any other format.
_DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
    "U64": ("uint64", 8), "U32": ("uint32", 4), "U16": ("uint16", 2), "U8": ("uint8", 1), "BOOL": ("bool", 1),
    "F8_E4M3": ("float8_e4m3", 1), "F8_E5M2": ("float8_e5m2", 1),
}
_FLOATS = {"F16", "F32", "F64", "BF16"}
_INTEGERS = {"I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64"}
_MAX_HEADER = 100 * 2**20  # the limit the safetensors library itself enforces


class _Tensor:
    """One tensor's header entry, checked against the file: dtype, shape and absolute byte range."""

    __slots__ = ("dtype", "shape", "start", "end")

    def __init__(self, dtype: str, shape: tuple[int, ...], start: int, end: int):
        self.dtype, self.shape, self.start, self.end = dtype, shape, start, end


def _header(path: str) -> dict[str, _Tensor]:
    """Every tensor of a safetensors file from its header, each checked to lie inside the file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InputError(f"{path}: truncated: {size} bytes, shorter than the 8-byte header length of a "
                             "safetensors file")
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            raise InputError(f"{path}: header length {length:,} bytes is larger than the file ({size:,} bytes); "
                             "truncated or not a safetensors file")
        if length > _MAX_HEADER:
            raise InputError(f"{path}: header of {size_text(length)} is too large for a safetensors file")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: header is not valid JSON ({exc}); not a safetensors file") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: header is not a JSON object; not a safetensors file")
    base, data = 8 + length, size - 8 - length
    out: dict[str, _Tensor] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}:{name}"
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise InputError(f"{where}: header entry needs dtype, shape and data_offsets [begin, end]") from None
        if dtype not in _DTYPES:
            raise InputError(f"{where}: unknown safetensors dtype {dtype!r}")
        if not isinstance(shape, list) or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in shape):
            raise InputError(f"{where}: invalid shape {shape!r} in the header")
        if any(not isinstance(o, int) or isinstance(o, bool) for o in (begin, end)) or not 0 <= begin <= end:
            raise InputError(f"{where}: invalid data offsets {[begin, end]!r} in the header")
        if end > data:
            raise InputError(f"{where}: data offsets [{begin:,}, {end:,}] go past the end of the file (its data "
                             f"holds {data:,} bytes); truncated")
        if end - begin != product(tuple(shape)) * _DTYPES[dtype][1]:
            raise InputError(f"{where}: data offsets hold {end - begin:,} bytes but shape {shape} of {dtype} "
                             f"needs {product(tuple(shape)) * _DTYPES[dtype][1]:,}")
        out[name] = _Tensor(dtype, tuple(shape), base + begin, base + end)
    return out


def _bf16(path: str, tensor: _Tensor, layer: int | None) -> np.ndarray:
    """A bfloat16 tensor widened to float32 exactly: a bfloat16 is the top half of a float32's bits."""
    raw = layer_of(np.memmap(path, dtype="<u2", mode="r", offset=tensor.start, shape=tensor.shape), layer)
    return (raw.astype(np.uint32) << 16).view(np.float32)


class SafetensorsReader(FileReader):
    """A safetensors file: each tensor is an array, named by its key."""

    format = "safetensors"
    member = "tensor"

    def __init__(self, path: str, stamp: Stamp = ()):
        super().__init__(path, stamp)
        self._tensors: dict[str, _Tensor] = {}

    def _scan(self) -> list[ArrayInfo]:
        self._tensors = _header(self.path)
        return [ArrayInfo(name, t.shape, _DTYPES[t.dtype][0], len(t.shape) == 2 and t.dtype in _FLOATS)
                for name, t in self._tensors.items()]

    def _read(self, key: str | None, layer: int | None, allow_external: bool) -> tuple[np.ndarray, str | None]:
        info = self.choose(key)
        tensor = self._tensors[info.name]
        where = f"{self.path}:{info.name}"
        if tensor.dtype not in _FLOATS:
            raise InputError(f"{where}: tensor of dtype {tensor.dtype} is not floating point "
                             "(expected F16, F32, F64 or BF16)")
        if tensor.dtype == "BF16":  # numpy has no bfloat16, so the safetensors numpy API cannot return one
            return _bf16(self.path, tensor, layer), info.name
        return _get(self.path, info.name, layer), info.name

    def _read_ids(self, key: str) -> np.ndarray:
        self.arrays()
        name = key.strip("/")
        tensor = self._tensors.get(name)
        if tensor is None:
            raise InputError(f"{self.path}: no tensor '{key}'")
        if tensor.dtype not in _INTEGERS or len(tensor.shape) != 1:
            raise InputError(f"{self.path}:{name}: ids must be a 1-D integer tensor, not {tensor.dtype} of shape "
                             f"{list(tensor.shape)} (safetensors cannot store strings)")
        return _get(self.path, name, None)

    def stored_bytes(self, key: str | None) -> int | None:
        info = self._planned(key)
        t = self._tensors[info.name]
        return t.end - t.start

    def _footprint(self, info: ArrayInfo, n: int) -> tuple[int, int, int] | None:
        t = self._tensors[info.name]
        d = t.shape[-1]
        itemsize = _DTYPES[t.dtype][1]
        if t.dtype == "BF16":  # the 2-byte values read and their float32 widening, together
            return d, 4, n * d * 6
        return d, itemsize, n * d * itemsize  # one tensor (or one layer of it) copied out of the file


def _get(path: str, name: str, layer: int | None) -> np.ndarray:
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        if layer is None:
            out: Any = f.get_tensor(name)
        else:  # only that layer is read
            out = f.get_slice(name)[:, layer, :]
    return np.ascontiguousarray(out)
