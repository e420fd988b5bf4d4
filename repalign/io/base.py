"""What every format reader shares: the listing made once, choosing an array, one-line errors, memory plans."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar, TypeVar

import numpy as np

from repalign.errors import InputError
from repalign.io.protocol import ArrayInfo, Plan
from repalign.io.rows import RowSource

T = TypeVar("T")

_LIST_ALL_UP_TO, _LIST_FIRST = 20, 10

Stamp = tuple[int, ...]
"""What identifies one version of a file (device, inode, size, mtime, ctime): a changed file is listed again."""


def product(shape: tuple[int, ...]) -> int:
    """The number of elements, in Python ints (no int64 overflow)."""
    out = 1
    for s in shape:
        out *= int(s)
    return out


def known(shape: tuple[int | None, ...]) -> tuple[int, ...] | None:
    """The shape if every dimension is known (a ragged parquet column's width is not), else None."""
    dims = tuple(s for s in shape if s is not None)
    return dims if len(dims) == len(shape) else None


def size_text(nbytes: int) -> str:
    if nbytes >= 2**70:
        return f"{float(nbytes):.1e} bytes"
    for unit, scale in (("EB", 2**60), ("PB", 2**50), ("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes} bytes"


def is_float(dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def listing(path: str, infos: list[ArrayInfo], empty: str = "none") -> str:
    """'a (3×4 float32); b (...)' for an error message; a long list is cut to its first few and a count."""
    if not infos:
        return empty
    if len(infos) <= _LIST_ALL_UP_TO:
        return "; ".join(i.describe() for i in infos)
    shown = "; ".join(i.describe() for i in infos[:_LIST_FIRST])
    return f"{shown}; … and {len(infos) - _LIST_FIRST:,} more; run repalign inspect {path}"


def literal(infos: list[ArrayInfo], key: str) -> ArrayInfo | None:
    """The array whose name is exactly ``key`` (a leading or trailing '/' aside), whatever characters it holds."""
    for info in infos:
        if info.name == key or info.name == key.strip("/"):
            return info
    return None


def choose(path: str, infos: list[ArrayInfo], key: str | None, what: str) -> ArrayInfo:
    """Pick the array named by key, or the only embedding-like one."""
    if key is not None:
        info = literal(infos, key)
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


def guard(path: str, fmt: str, fn: Callable[[], T]) -> T:
    """Run a read, turning library exceptions about a bad file into one-line InputErrors."""
    try:
        return fn()
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


class FileReader(ABC):
    """The part of a :class:`~repalign.io.protocol.Reader` that no format changes.

    A subclass lists its file in ``_scan`` and reads in ``_read`` and ``_read_ids``; this class keeps the
    listing, so one reader lists its file once however many times it is asked.
    """

    format: ClassVar[str]
    member: ClassVar[str]
    """What an array is called in this format's messages (member, dataset, column)."""

    def __init__(self, path: str, stamp: Stamp = ()):
        self.path = path
        self.stamp = stamp
        self._arrays: list[ArrayInfo] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def arrays(self) -> list[ArrayInfo]:
        if self._arrays is None:
            self._arrays = guard(self.path, self.format, self._scan)
        return list(self._arrays)  # a copy: callers may not change what every later step sees

    def choose(self, key: str | None, what: str | None = None) -> ArrayInfo:
        infos = self.arrays()
        return guard(self.path, self.format, lambda: choose(self.path, infos, key, what or self.member))

    def read(self, key: str | None, layer: int | None = None, allow_external: bool = False
             ) -> tuple[np.ndarray, str | None]:
        return guard(self.path, self.format, lambda: self._read(key, layer, allow_external))

    def read_ids(self, key: str) -> np.ndarray:
        return guard(self.path, self.format, lambda: self._read_ids(key))

    def rows(self, key: str | None, layer: int | None = None, allow_external: bool = False) -> RowSource | None:
        """The array ``key`` (or its layer ``layer``) as a source of row blocks; None: this format is read whole."""
        return guard(self.path, self.format, lambda: self._rows(key, layer, allow_external))

    def _rows(self, key: str | None, layer: int | None, allow_external: bool) -> RowSource | None:
        return None

    def describe(self, key: str | None) -> Plan | None:
        info = self._planned(key)
        if len(info.shape) not in (2, 3) or info.shape[0] is None:
            return None
        n = int(info.shape[0])
        footprint = self._footprint(info, n)
        if footprint is None:
            return None
        d, itemsize, resident = footprint
        widened = n * d * 4 if itemsize == 2 else 0  # float16 is widened to float32 once read
        return (n, int(d)), int(itemsize), int(resident + widened)

    def stored_bytes(self, key: str | None) -> int | None:
        info = self._planned(key)
        dims = known(info.shape)
        return None if dims is None else product(dims) * np.dtype(info.dtype).itemsize

    def _planned(self, key: str | None) -> ArrayInfo:
        """The array a plan is made for (its errors are left to the read)."""
        return self.choose(key, "array")

    def _footprint(self, info: ArrayInfo, n: int) -> tuple[int, int, int] | None:
        """(d, bytes per value, bytes resident while one layer is read): a plain read holds the layer."""
        d = info.shape[-1]
        if d is None:
            return None
        itemsize = np.dtype(info.dtype).itemsize
        return d, itemsize, n * d * itemsize

    @abstractmethod
    def _scan(self) -> list[ArrayInfo]:
        """Every array in the file, from headers and metadata only."""

    @abstractmethod
    def _read(self, key: str | None, layer: int | None, allow_external: bool) -> tuple[np.ndarray, str | None]:
        """The array ``key`` (or its layer ``layer``) and the key used."""

    @abstractmethod
    def _read_ids(self, key: str) -> np.ndarray:
        """The id array ``key`` as stored."""


def layer_of(array: np.ndarray, layer: int | None) -> np.ndarray:
    """The whole array, or a contiguous copy of its layer ``layer`` along axis 1."""
    return array if layer is None else np.ascontiguousarray(array[:, layer, :])
