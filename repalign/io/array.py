"""In-memory arrays as layer sources: the same interface as a file's LayerSet, for the library's array inputs."""

from __future__ import annotations

import copy

import numpy as np

from repalign.errors import InputError
from repalign.io.layers import parse_layers
from repalign.io.protocol import LayerSource
from repalign.io.rows import ArrayRows, RowSource


class ArrayLayers:
    """An in-memory (n, d) or (n, L, d) array with the interface of :class:`~repalign.io.LayerSet`."""

    def __init__(self, array: np.ndarray, name: str):
        self.array = np.asanyarray(array)
        self.name = name
        self.layered = self.array.ndim == 3
        count = self.array.shape[1] if self.layered else 1
        self.labels: tuple[str, ...] = tuple(str(i) for i in range(count)) if self.layered else (name,)
        self.indices: tuple[int | None, ...] = tuple(range(count)) if self.layered else (None,)
        self.shape: tuple[int | None, ...] = tuple(self.array.shape)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def where(self) -> str:
        return self.name

    def layer_name(self, i: int) -> str:
        return f"{self.name} layer {self.indices[i]}" if self.layered else self.name

    def read(self, i: int) -> np.ndarray:
        return self.array[:, self.indices[i], :] if self.layered else self.array

    def rows(self, i: int) -> RowSource:
        return ArrayRows(self.read(i))

    def select(self, spec: str | None) -> ArrayLayers:
        if spec is None:
            return self
        if not self.layered:
            raise InputError(f"{self.name}: a single 2-D array has no layers to select (--layer {spec})")
        pick = parse_layers(spec, len(self), self.name)
        out = copy.copy(self)  # the same array; only the chosen layers differ
        out.labels = tuple(self.labels[i] for i in pick)
        out.indices = tuple(self.indices[i] for i in pick)
        return out


class Checked:
    """A single-array source whose array has been read and validated already."""

    def __init__(self, source: LayerSource, array: np.ndarray):
        self.source, self.array = source, array
        self.labels, self.layered, self.where = source.labels, False, source.where
        self.shape = source.shape

    def __len__(self) -> int:
        return 1

    def layer_name(self, i: int) -> str:
        return self.source.layer_name(i)

    def read(self, i: int) -> np.ndarray:
        return self.array

    def rows(self, i: int) -> RowSource:
        return ArrayRows(self.array)

    def select(self, spec: str | None) -> LayerSource:
        """Itself; a single array has no layers to select (its source says so)."""
        return self if spec is None else self.source.select(spec)
