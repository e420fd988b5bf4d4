"""The .npy reader: one array, its header checked against the file size, memory-mapped when read."""

from __future__ import annotations

import ast
import os
import struct
from typing import IO, Any

import numpy as np

from repalign.errors import InputError
from repalign.io.base import FileReader, Stamp, is_float, layer_of, product, size_text
from repalign.io.protocol import ArrayInfo
from repalign.io.rows import NpyRows, RowSource


def npy_header(f: IO[bytes], where: str, stored: int) -> tuple[tuple[int, ...], np.dtype]:
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
    declared = dtype.itemsize * product(shape)  # Python ints: no int64 overflow
    if not dtype.hasobject and f.tell() + declared > stored:  # objects are pickled (and refused later)
        dims = "×".join(map(str, shape))
        raise InputError(f"{where}: truncated: header declares {dims} {dtype} ({size_text(declared)}) but the "
                         f"file holds {stored:,} bytes")
    return shape, dtype


def _npy_header_3_0(f: IO[bytes]) -> tuple[Any, np.dtype]:
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


def refuse_objects(where: str, dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise InputError(f"{where}: contains Python objects; repalign never unpickles data (store a float array)")


class NpyReader(FileReader):
    """A .npy file: a single array named '' in listings."""

    format = "npy"
    member = "array"

    def __init__(self, path: str, stamp: Stamp = ()):
        super().__init__(path, stamp)
        self._dtype: np.dtype | None = None

    def _scan(self) -> list[ArrayInfo]:
        with open(self.path, "rb") as f:
            shape, dtype = npy_header(f, self.path, os.fstat(f.fileno()).st_size)
        self._dtype = dtype  # kept whole: a structured dtype's text cannot be parsed back
        return [ArrayInfo("", shape, str(dtype), len(shape) == 2 and is_float(dtype))]

    def choose(self, key: str | None, what: str | None = None) -> ArrayInfo:
        if key is not None:
            raise InputError(f"{self.path}: a .npy file holds one array; remove the ':{key}' key")
        return self.arrays()[0]

    def _read(self, key: str | None, layer: int | None, allow_external: bool) -> tuple[np.ndarray, str | None]:
        self.choose(key)
        assert self._dtype is not None  # set by the listing
        refuse_objects(self.path, self._dtype)
        # Memory-mapped: a large file costs no memory until the rows are used.
        array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return layer_of(array, layer), None

    def _rows(self, key: str | None, layer: int | None, allow_external: bool) -> RowSource | None:
        """Rows by offset from a private mapping whose pages are released after each read (C order only)."""
        self.choose(key)
        assert self._dtype is not None  # set by the listing
        refuse_objects(self.path, self._dtype)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                return None  # format 3.0 (rare) is read whole
            offset = f.tell()
        if fortran or len(shape) not in (2, 3):
            return None  # a column-major file's rows are not contiguous: read whole
        return NpyRows(self.path, offset, tuple(shape), np.dtype(dtype), layer)

    def _read_ids(self, key: str) -> np.ndarray:
        raise InputError(f"{self.path}: a .npy file holds one array and no ids; use .npz, HDF5 or parquet")

    def stored_bytes(self, key: str | None) -> int | None:
        self.arrays()
        return 0  # memory-mapped

    def _planned(self, key: str | None) -> ArrayInfo:
        return self.arrays()[0]  # a stray key is the read's error to give

    def _footprint(self, info: ArrayInfo, n: int) -> tuple[int, int, int] | None:
        footprint = super()._footprint(info, n)
        if footprint is None:
            return None
        d, itemsize, layer = footprint
        return d, itemsize, layer if len(info.shape) == 3 else 0  # memory-mapped; a layer is copied out
