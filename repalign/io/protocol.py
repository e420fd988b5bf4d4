"""The two interfaces of io: what a format reader does (Reader) and what the engine reads layers from (LayerSource)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from repalign.io.rows import RowSource
from repalign.io.selector import Selector

Plan = tuple[tuple[int, int], int, int]
"""(shape of one layer, bytes per value, bytes resident while it is read), from headers alone."""


def is_float_text(dtype: str) -> bool:
    """True for a dtype name numpy reads as floating point (False for names it cannot read, e.g. arrow's)."""
    try:
        return np.dtype(dtype).kind == "f"
    except TypeError:
        return False


@dataclass(frozen=True)
class ArrayInfo:
    """One array found in a file, as listed by :func:`inspect`."""

    name: str
    """Key that selects the array (npz member, HDF5 dataset path, parquet column)."""
    shape: tuple[int | None, ...]
    """Shape; ``None`` for an unknown dimension (e.g. a ragged parquet list column)."""
    dtype: str
    """Element type as stored in the file."""
    embedding_like: bool
    """True when the array can be used as an n×d embedding (2-D, floating point)."""

    @property
    def layered(self) -> bool:
        """True for an n×L×d floating-point stack of layers (axis 1 is the layer)."""
        return len(self.shape) == 3 and self.dtype not in ("string",) and is_float_text(self.dtype)

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


@runtime_checkable
class Reader(Protocol):
    """One file of one format. The listing is made once and kept; reads go to the file each time."""

    @property
    def path(self) -> str: ...

    @property
    def format(self) -> str:
        """'npy', 'npz', 'hdf5' or 'parquet'."""
        ...

    def arrays(self) -> list[ArrayInfo]:
        """Every array in the file (listed on the first call only)."""
        ...

    def choose(self, key: str | None, what: str | None = None) -> ArrayInfo:
        """The array named by ``key``, or the only embedding-like one; ``what`` names arrays in messages."""
        ...

    def read(self, key: str | None, layer: int | None = None, allow_external: bool = False
             ) -> tuple[np.ndarray, str | None]:
        """One array (or only its layer ``layer`` of axis 1, where the format allows) and the key used."""
        ...

    def read_ids(self, key: str) -> np.ndarray:
        """The id array ``key``, as stored (checked by :func:`repalign.pairing.read_ids`)."""
        ...

    def describe(self, key: str | None) -> Plan | None:
        """The memory plan of one layer of the array ``key``, from the listing alone (None: cannot be told)."""
        ...

    def rows(self, key: str | None, layer: int | None = None, allow_external: bool = False) -> RowSource | None:
        """The array ``key`` (or its layer ``layer``) as a source of row blocks (None: read whole only)."""
        ...

    def stored_bytes(self, key: str | None) -> int | None:
        """Bytes a whole read of the array ``key`` would hold, from the listing alone (None: unknown)."""
        ...


@runtime_checkable
class LayerSource(Protocol):
    """The layers of one input as the engine reads them: from a file (LayerSet) or from memory (ArrayLayers)."""

    @property
    def labels(self) -> tuple[str, ...]:
        """Per layer, how reports name it."""
        ...

    @property
    def layered(self) -> bool:
        """False for a single n×d array."""
        ...

    @property
    def where(self) -> str:
        """The input, for messages."""
        ...

    @property
    def shape(self) -> tuple[int | None, ...]:
        """Shape as stored (n×L×d for layers)."""
        ...

    def __len__(self) -> int: ...

    def layer_name(self, i: int) -> str:
        """Layer i, for messages."""
        ...

    def read(self, i: int) -> np.ndarray:
        """Layer i as stored, before validation."""
        ...

    def rows(self, i: int) -> RowSource | None:
        """Layer i as stored, as a source of row blocks (None: its format can only be read whole)."""
        ...

    def select(self, spec: str | None) -> LayerSource:
        """The layers a --layer specification picks (None: all of them)."""
        ...
