"""The .npz reader: members listed from their headers, one member read whole (compressed members cannot be sliced)."""

from __future__ import annotations

import zipfile

import numpy as np

from repalign.io.base import FileReader, is_float, layer_of, product
from repalign.io.npy import npy_header, refuse_objects
from repalign.io.protocol import ArrayInfo


class NpzReader(FileReader):
    """A .npz archive: each member is an array named without its '.npy'."""

    format = "npz"
    member = "member"

    def _scan(self) -> list[ArrayInfo]:
        out = []
        with zipfile.ZipFile(self.path) as z:
            for member in z.infolist():
                name = member.filename.removesuffix(".npy")
                with z.open(member) as f:
                    shape, dtype = npy_header(f, f"{self.path}:{name}", member.file_size)
                out.append(ArrayInfo(name, shape, str(dtype), len(shape) == 2 and is_float(dtype)))
        return out

    def _read(self, key: str | None, layer: int | None, allow_external: bool) -> tuple[np.ndarray, str | None]:
        info = self.choose(key)
        refuse_objects(f"{self.path}:{info.name}", np.dtype(info.dtype))
        with np.load(self.path, allow_pickle=False) as z:
            return layer_of(z[info.name], layer), info.name

    def _read_ids(self, key: str) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as z:
            return np.asarray(z[key])

    def _footprint(self, info: ArrayInfo, n: int) -> tuple[int, int, int] | None:
        footprint = super()._footprint(info, n)
        if footprint is None or len(info.shape) != 3:
            return footprint
        d, itemsize, layer = footprint
        whole = product(tuple(int(s) for s in info.shape if s is not None)) * itemsize
        return d, itemsize, whole + layer  # the member is read whole, then sliced
