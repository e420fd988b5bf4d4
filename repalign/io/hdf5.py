"""The HDF5 reader: datasets listed by one walk, one layer read from disk, other files reached only on request."""

from __future__ import annotations

from typing import Any

import numpy as np

from repalign.errors import InputError
from repalign.io.base import FileReader, is_float
from repalign.io.protocol import ArrayInfo
from repalign.io.rows import ChunkedRows, RowSource, unit_bounds

# Bytes per read of a dataset (whole chunk rows, at least one).
_CONTIGUOUS_BYTES = 1 << 24
_HINT = "refused, since it would read another file (pass --allow-external to permit it)"


class HDF5Reader(FileReader):
    """An HDF5 file: each dataset is an array named by its path; external links are listed, never followed."""

    format = "hdf5"
    member = "dataset"

    def _scan(self) -> list[ArrayInfo]:
        import h5py

        out = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                dtype = obj.dtype
                shape = tuple(obj.shape) if obj.shape is not None else ()
                text = "string" if h5py.check_string_dtype(dtype) else str(dtype)
                out.append(ArrayInfo(name, shape, text, len(shape) == 2 and is_float(dtype)))

        def links(name: str, link: Any) -> None:
            if isinstance(link, h5py.ExternalLink):
                out.append(ArrayInfo(name, (), f"external link to {link.filename}:{link.path}", False))

        with h5py.File(self.path, "r") as f:
            f.visititems(visit)  # follows hard links only: never opens another file
            f.visititems_links(links)
        return out

    def _read(self, key: str | None, layer: int | None, allow_external: bool) -> tuple[np.ndarray, str | None]:
        """Read one dataset (or one layer of an n×L×d one); links and virtual or external storage that reach
        other files need allow_external."""
        import h5py

        info = self.choose(key)
        where = f"{self.path}:{info.name}"
        with h5py.File(self.path, "r") as f:
            _check_links(f, info.name, where, allow_external)
            obj = f[info.name]
            if not isinstance(obj, h5py.Dataset):
                raise InputError(f"{where}: is a group, not a dataset")
            if obj.shape is None:
                raise InputError(f"{where}: empty dataset (null dataspace), no values")
            if not allow_external:
                _refuse_external_storage(obj, where)
            if layer is not None:
                return obj[:, layer, :], info.name  # reads only this layer from disk
            return obj[()], info.name

    def _rows(self, key: str | None, layer: int | None, allow_external: bool) -> RowSource | None:
        """Chunk-aligned row slices of the dataset: whole chunk rows making ~16 MB (or ~16 MB if contiguous)."""
        import h5py

        info = self.choose(key)
        where = f"{self.path}:{info.name}"
        with h5py.File(self.path, "r") as f:
            _check_links(f, info.name, where, allow_external)
            obj = f[info.name]
            if not isinstance(obj, h5py.Dataset) or obj.shape is None or len(obj.shape) not in (2, 3):
                return None  # the whole read gives the precise error
            if not allow_external:
                _refuse_external_storage(obj, where)
            shape, dtype = tuple(int(s) for s in obj.shape), obj.dtype
            per_row = max(1, int(np.prod(shape[1:])) * dtype.itemsize)
            # Whole chunk rows, as many as make ~16 MB (a dataset of one-row chunks is not read row by row).
            chunk = obj.chunks[0] if obj.chunks else 1
            unit = chunk * max(1, _CONTIGUOUS_BYTES // per_row // chunk)
        path, name = self.path, info.name

        def read(unit: int, start: int, stop: int) -> np.ndarray:
            with h5py.File(path, "r") as f:
                ds = f[name]
                return ds[start:stop] if layer is None else ds[start:stop, layer, :]

        return ChunkedRows((shape[0], shape[-1]), dtype, unit_bounds(shape[0], unit), read)

    def _read_ids(self, key: str) -> np.ndarray:
        import h5py

        with h5py.File(self.path, "r") as f:
            ds = f[key]
            return np.asarray(ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()])


def _check_links(f: Any, name: str, where: str, allow_external: bool) -> None:
    """Refuse a path any part of which is an external link (it would open another file), unless allowed."""
    import h5py

    parts = name.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        link = f.get("/".join(parts[:i]), getlink=True)
        if isinstance(link, h5py.ExternalLink) and not allow_external:
            raise InputError(f"{where}: external link to {link.filename}:{link.path}; {_HINT}")


def _refuse_external_storage(obj: Any, where: str) -> None:
    """Refuse a virtual dataset that maps other files, or one stored in external raw files."""
    if obj.is_virtual:
        others = sorted({s.file_name for s in obj.virtual_sources() if s.file_name != "."})
        if others:
            raise InputError(f"{where}: virtual dataset reading {', '.join(others)}; {_HINT}")
    if obj.external:
        raise InputError(f"{where}: stored in external raw files; {_HINT}")
