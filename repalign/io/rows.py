"""Row blocks of one layer as stored: what a run larger than memory reads instead of the whole array.

A :class:`RowSource` hands out rows ``[start, stop)`` or any list of rows, as a fresh in-memory array, without
holding the rest. ``.npy`` files are memory-mapped and their pages released after every read (mapped pages
that stay resident count in the process's RSS), HDF5 datasets are read in chunk-aligned slices and parquet
columns one row group at a time; an in-memory array is the trivial source.
"""

from __future__ import annotations

import mmap
import os
from typing import Callable, Protocol

import numpy as np

from repalign.errors import InputError


class RowSource(Protocol):
    """One n×d layer as stored (before validation), readable a block of rows at a time."""

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def block(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop−1 as an in-memory (stop−start, d) array."""
        ...

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (any order, repeats allowed) as an in-memory (len(rows), d) array."""
        ...

    @property
    def unit_rows(self) -> int:
        """Rows the storage reads at once (a chunk, a row group); a plan holds at least this many."""
        ...


class ArrayRows:
    """An in-memory (or memory-mapped by numpy) array as a row source."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape = (int(array.shape[0]), int(array.shape[1]))
        self.dtype = array.dtype
        self.unit_rows = 1

    def block(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.array[start:stop])

    def take(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.array[rows])


class NpyRows:
    """A C-ordered .npy file (one n×d array or layer ``layer`` of an n×L×d one) read through a private mapping.

    Every read copies the rows out and then drops the pages it touched (``MADV_DONTNEED``): they stay in the
    page cache, shared and reclaimable, but no longer count in this process's resident memory.
    """

    def __init__(self, path: str, offset: int, shape: tuple[int, ...], dtype: np.dtype, layer: int | None = None):
        self.path = path
        self.stored_shape = tuple(int(s) for s in shape)
        self.layer = layer
        self.shape = (self.stored_shape[0], self.stored_shape[-1])
        self.dtype = np.dtype(dtype)
        self.unit_rows = 1
        self._offset = offset
        self._map: mmap.mmap | None = None
        self._view: np.ndarray | None = None

    def _array(self) -> np.ndarray:
        if self._view is None:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0 or self._offset + self.dtype.itemsize * int(np.prod(self.stored_shape)) > size:
                    raise InputError(f"{self.path}: truncated: the file is shorter than its header says")
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            count = int(np.prod(self.stored_shape))
            flat = np.frombuffer(self._map, dtype=self.dtype, count=count, offset=self._offset)
            self._view = flat.reshape(self.stored_shape)
        return self._view

    def _rows(self, pick: slice | np.ndarray) -> np.ndarray:
        view = self._array()
        out = np.array(view[pick] if self.layer is None else view[pick, self.layer, :])
        if isinstance(pick, slice):  # only the pages of these rows were touched
            row_bytes = self.dtype.itemsize * int(np.prod(self.stored_shape[1:]))
            self.release(self._offset + pick.start * row_bytes, (pick.stop - pick.start) * row_bytes)
        else:
            self.release()
        return out

    def block(self, start: int, stop: int) -> np.ndarray:
        return self._rows(slice(start, min(stop, self.shape[0])))

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self._rows(np.asarray(rows, dtype=np.int64))

    def release(self, start: int = 0, length: int | None = None) -> None:
        """Drop mapped pages (all, or those of bytes start..start+length) from this process's resident set;
        the file's data stays in the page cache."""
        if self._map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        if length is None:
            self._map.madvise(mmap.MADV_DONTNEED)
            return
        first = start - start % mmap.PAGESIZE
        end = min(len(self._map), start + length)
        if end > first:
            self._map.madvise(mmap.MADV_DONTNEED, first, end - first)


class ChunkedRows:
    """Rows read in whole storage units (HDF5 chunk rows, parquet row groups) by ``read(unit, start, stop)``.

    A request is widened to whole units, and the last unit read is kept, so consecutive blocks that share a
    unit read it once.
    """

    def __init__(self, shape: tuple[int, int], dtype: np.dtype, bounds: list[int],
                 read: Callable[[int, int, int], np.ndarray]):
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self._bounds = np.asarray(bounds, dtype=np.int64)  # unit starts, then n
        self._read = read
        self._last: tuple[int, int, np.ndarray] | None = None
        self.unit_rows = int(np.max(np.diff(self._bounds))) if len(bounds) > 1 else 1

    def _unit(self, u: int) -> tuple[int, np.ndarray]:
        start, stop = int(self._bounds[u]), int(self._bounds[u + 1])
        if self._last is None or self._last[0] != start:
            self._last = (start, stop, self._read(u, start, stop))
        return start, self._last[2]

    def block(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self.shape[0])
        out = np.empty((max(0, stop - start), self.shape[1]), dtype=self.dtype)
        u = int(np.searchsorted(self._bounds, start, side="right")) - 1
        at = start
        while at < stop:
            u0, values = self._unit(u)
            end = min(stop, int(self._bounds[u + 1]))
            out[at - start : end - start] = values[at - u0 : end - u0]
            at, u = end, u + 1
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.shape[1]), dtype=self.dtype)
        units = np.searchsorted(self._bounds, rows, side="right") - 1
        for u in np.unique(units):  # each unit read once, in storage order
            where = np.flatnonzero(units == u)
            u0, values = self._unit(int(u))
            out[where] = values[rows[where] - u0]
        return out


def unit_bounds(n: int, unit: int) -> list[int]:
    """Unit starts 0, unit, 2·unit, … and n (the HDF5 chunk rows of a dataset)."""
    return list(range(0, n, max(1, unit))) + [n]
