"""One layer of an input too large for memory: validated, paired and preprocessed block by block, on demand."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from repalign import preprocess as _pre
from repalign.errors import InputError
from repalign.io.rows import RowSource
from repalign.validation import Conform, check_dtype, finite_top

# Rows per block of the passes made here (validation, quantile, norms): ~64 MB of float64 at d = 1024.
PASS_ROWS = 8192


class StreamedLayer:
    """A layer read from its file a block of rows at a time, with the numbers the in-memory path computes.

    The blocked kernels (CKA sums, neighbour search, certification, the CKA jackknife) read it like an
    array: ``x[start:stop]`` and ``x[rows]`` return in-memory blocks, conformed (validation's widening and
    power-of-two scaling), restricted to the paired rows and preprocessed with :class:`preprocess.Steps`
    whose data-dependent parts (quantile, row norms) were fixed by whole passes first. Every step is
    element- or row-wise, so each block holds exactly the rows of the array the in-memory path would build.

    ``budget``: bytes the run planned for the neighbour search's float32 blocks (the search blocks its
    database when a whole float32 copy is larger). ``whole_limit``: bytes a caller may materialise the layer
    into (``np.asarray``) before that is refused.
    """

    ndim = 2

    def __init__(self, raw: RowSource, rows: np.ndarray | None, pre: _pre.Preprocessing, label: str, budget: int,
                 whole_limit: int | None):
        self.raw = raw
        self.label = label
        self.selected = rows
        self.budget = budget
        self.whole_limit = whole_limit
        n_raw, d = raw.shape
        check_dtype(np.dtype(raw.dtype), label)
        if n_raw == 0:
            raise InputError(f"{label}: has no rows (shape {raw.shape})")
        if d == 0:
            raise InputError(f"{label}: has zero dimensions (shape {raw.shape})")
        # Validation reads every stored row (paired or not), as the in-memory path does.
        top = finite_top(raw.block, n_raw, label, PASS_ROWS)
        self.conform = Conform.of(np.dtype(raw.dtype), top, label)
        self.notes = list(self.conform.notes)
        self.shape = (n_raw if rows is None else int(rows.size), d)
        self.dtype = self.conform.dtype
        self.steps = _pre.plan_streamed(self._conformed_blocks, pre, label)

    def __len__(self) -> int:
        return self.shape[0]

    def _conformed(self, pick: slice | np.ndarray) -> np.ndarray:
        if isinstance(pick, slice):
            start, stop = pick.start, pick.stop
            raw = self.raw.block(start, stop) if self.selected is None else self.raw.take(self.selected[start:stop])
        else:
            raw = self.raw.take(pick if self.selected is None else self.selected[pick])
        return self.conform.apply(raw)

    def _conformed_blocks(self) -> Iterator[np.ndarray]:
        n = self.shape[0]
        for start in range(0, n, PASS_ROWS):
            yield self._conformed(slice(start, min(n, start + PASS_ROWS)))

    def _rows(self, pick: slice | np.ndarray) -> np.ndarray:
        block = self._conformed(pick)
        return block if self.steps is None else self.steps.apply(block, pick)

    def __getitem__(self, key: Any) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                return self._rows(np.arange(start, stop, step))
            return self._rows(slice(start, max(start, stop)))
        if isinstance(key, (int, np.integer)):
            return self._rows(np.array([int(key) % n]))[0]
        rows = np.asarray(key)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        flat = rows.ravel().astype(np.int64)
        if flat.size and (flat.min() < -n or flat.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        return self._rows(flat % n).reshape(rows.shape + (self.shape[1],))

    def blocks(self, rows: int = PASS_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """(start, block) over every row, in order."""
        n = self.shape[0]
        for start in range(0, n, rows):
            yield start, self[start : start + rows]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole layer in memory, for the rare step that needs it, if it fits what the plan left free."""
        nbytes = self.shape[0] * self.shape[1] * np.dtype(dtype or self.dtype).itemsize
        if self.whole_limit is not None and nbytes > self.whole_limit:
            raise InputError(f"{self.label}: this step needs the whole layer in memory ({nbytes / 2**30:.1f} GB) "
                             f"but the run streams it with {self.whole_limit / 2**30:.1f} GB to spare; "
                             "raise REPALIGN_MEMORY_LIMIT or compare fewer rows (--max-rows)")
        out = np.empty(self.shape, dtype=self.dtype)
        for start, block in self.blocks():
            out[start : start + block.shape[0]] = block
        return out if dtype is None else out.astype(dtype, copy=False)
