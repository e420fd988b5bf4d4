"""The AnnData (.h5ad) reader: HDF5 with sparse matrices refused by name and the obs index as ids."""

from __future__ import annotations

from typing import Any

import numpy as np

from repalign.errors import InputError
from repalign.io.hdf5 import HDF5Reader
from repalign.io.protocol import ArrayInfo

OBS_INDEX = "obs/_index"
"""How the obs index (the cells' or items' names) is selected, whatever column the obs '_index' attribute names."""

_SPARSE = ("csr_matrix", "csc_matrix")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _sparse_kind(group: Any) -> str | None:
    """'csr_matrix' or 'csc_matrix' for an AnnData sparse matrix group, else None."""
    kind = _text(group.attrs.get("encoding-type", group.attrs.get("h5sparse_format", "")))
    if kind in ("csr", "csc"):
        kind += "_matrix"
    if kind in _SPARSE or {"data", "indices", "indptr"} <= set(group.keys()):
        return kind or "sparse matrix"
    return None


def _matrix_places(f: Any) -> list[str]:
    """X, raw/X, and every member of layers, obsm, varm, obsp, varp (and raw/varm)."""
    places = [p for p in ("X", "raw/X") if p in f]
    for group in ("layers", "obsm", "varm", "obsp", "varp", "raw/varm"):
        g = f.get(group)
        if g is not None and hasattr(g, "keys"):
            places += [f"{group}/{k}" for k in g.keys()]
    return places


class H5adReader(HDF5Reader):
    """An AnnData file: X, obsm/* and layers/* are arrays when stored dense; ``--ids obs/_index`` pairs by the
    obs index."""

    format = "h5ad"

    def _scan(self) -> list[ArrayInfo]:
        import h5py

        infos = super()._scan()
        sparse: dict[str, ArrayInfo] = {}
        with h5py.File(self.path, "r") as f:
            for name in _matrix_places(f):  # where AnnData keeps matrices: no second walk of the whole file
                obj = f.get(name)
                kind = _sparse_kind(obj) if isinstance(obj, h5py.Group) else None
                if kind is not None:
                    shape = tuple(int(s) for s in obj.attrs.get("shape", obj.attrs.get("h5sparse_shape", ())))
                    sparse[name] = ArrayInfo(name, shape, f"sparse {kind}", False)
            index = self._index_column(f)
        out = [i for i in infos if not any(i.name.startswith(s + "/") for s in sparse)] + list(sparse.values())
        if index is not None and index != OBS_INDEX:
            target = next((i for i in infos if i.name == index), None)
            if target is not None:
                out.append(ArrayInfo(OBS_INDEX, target.shape, target.dtype, False))
        return out

    def _read(self, key: str | None, layer: int | None, allow_external: bool) -> tuple[np.ndarray, str | None]:
        info = self.choose(key)
        if info.dtype.startswith("sparse"):
            raise InputError(f"{self.path}:{info.name}: a {info.dtype.removeprefix('sparse ')} (sparse) matrix; "
                             "repalign reads dense arrays: choose a dense one such as obsm/X_pca, or store it dense")
        return super()._read(info.name, layer, allow_external)

    def _read_ids(self, key: str) -> np.ndarray:
        import h5py

        if key.strip("/") == OBS_INDEX:
            with h5py.File(self.path, "r") as f:
                index = self._index_column(f)
            if index is None:
                raise InputError(f"{self.path}: no obs index (obs has no '_index' attribute or dataset)")
            key = index
        return super()._read_ids(key)

    @staticmethod
    def _index_column(f: Any) -> str | None:
        """The dataset the obs index lives in: the column named by obs's '_index' attribute, else obs/_index."""
        obs = f.get("obs")
        if obs is None or not hasattr(obs, "attrs"):
            return None
        name = obs.attrs.get("_index")
        if name is not None:
            return f"obs/{_text(name)}"
        return OBS_INDEX if OBS_INDEX in f else None
