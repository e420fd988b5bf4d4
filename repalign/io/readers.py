"""One reader per input file for as long as anything holds it, and the file-level functions built on it."""

from __future__ import annotations

import os
import weakref

from repalign.errors import InputError
from repalign.io.arrow import ArrowReader
from repalign.io.base import FileReader, Stamp
from repalign.io.faiss_index import FaissReader
from repalign.io.h5ad import H5adReader
from repalign.io.hdf5 import HDF5Reader
from repalign.io.npy import NpyReader
from repalign.io.npz import NpzReader
from repalign.io.parquet import ParquetReader
from repalign.io.protocol import ArrayInfo, Loaded, Plan
from repalign.io.selector import Selector, as_selector, file_format, is_stream, split_format
from repalign.io.shards import ShardsReader
from repalign.io.stream import spooled
from repalign.io.tensors import SafetensorsReader
from repalign.io.text import CSVReader, TSVReader
from repalign.io.torch import TorchReader
from repalign.io.zarr_store import ZarrReader

READERS: dict[str, type[FileReader]] = {"npy": NpyReader, "npz": NpzReader, "hdf5": HDF5Reader,
                                        "parquet": ParquetReader, "safetensors": SafetensorsReader,
                                        "arrow": ArrowReader, "shards": ShardsReader, "torch": TorchReader,
                                        "csv": CSVReader, "tsv": TSVReader, "faiss": FaissReader, "h5ad": H5adReader,
                                        "zarr": ZarrReader}

# Readers alive somewhere (a LayerSet holds its own), by path as spelled: within one run every step that needs a
# file's listing (the layers, the memory plan, the ids) gets the same reader, so each file is listed once. Once
# nothing holds a reader it goes, so the next run lists the file afresh; the stamp also catches a file changed
# while a reader was kept.
_LIVE: weakref.WeakValueDictionary[str, FileReader] = weakref.WeakValueDictionary()


def _stamp(path: str) -> Stamp:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def reader_for(path: str | os.PathLike[str]) -> FileReader:
    """The reader of a file (shared while anything holds it); anything but a regular file of a known format is
    refused before any open."""
    path = os.fspath(path)
    fmt = file_format(path)
    source = opened(path)
    stamp = _stamp(source)
    reader = _LIVE.get(path)
    if reader is None or reader.format != fmt or reader.stamp != stamp:
        reader = READERS[fmt](source, stamp)
        _LIVE[path] = reader
    return reader


def opened(path: str) -> str:
    """The file a reader opens for ``path``: itself; its part before '@FORMAT'; or, for standard input or a
    pipe given with a format, a private copy made by reading it once (named as the input in messages)."""
    if is_stream(path):
        return spooled(path, split_format(path)[0])
    return split_format(path)[0]


def check_not_empty(path: str) -> None:
    if os.path.getsize(opened(path)) == 0:
        raise InputError(f"{path}: empty file")


def inspect(path: str | os.PathLike[str]) -> list[ArrayInfo]:
    """List every array in a file, marking those usable as embeddings."""
    path = os.fspath(path)
    base = split_format(path)[0]
    if not is_stream(path) and not os.path.exists(base):
        raise InputError(f"{path}: no such file")
    return reader_for(path).arrays()


def load(selector: Selector | str | os.PathLike[str], allow_external: bool = False) -> Loaded:
    """Read the array a selector points at. The file is opened read-only.

    ``allow_external`` permits HDF5 external links and virtual or external
    datasets that read other files; they are refused by default.
    """
    selector = as_selector(selector)
    reader = reader_for(selector.path)
    check_not_empty(selector.path)
    array, key = reader.read(selector.key, allow_external=allow_external)
    return Loaded(selector, key, array, reader.format, str(array.dtype))


def describe(selector: Selector | str | os.PathLike[str]) -> Plan | None:
    """Shape of one layer, bytes per value and bytes resident while :func:`load` (or one layer's read) runs,
    from headers and metadata alone.

    Works for any 2-D array of a fixed-size type (and per layer for an n×L×d one), float or not, so that
    even an array later refused for its type is never read before the plan. Returns None when that
    cannot be told (or the input is bad: then :func:`load` gives the error).
    """
    try:
        selector = as_selector(selector)
        return reader_for(selector.path).describe(selector.key)
    except Exception:  # noqa: BLE001 - planning must never replace load()'s precise error
        return None


def stored_bytes(selector: Selector | str | os.PathLike[str]) -> int | None:
    """Bytes a whole read of the array a selector names would hold, whatever its shape, from headers alone
    (0 for a memory-mapped .npy; None when unknown)."""
    try:
        selector = as_selector(selector)
        return reader_for(selector.path).stored_bytes(selector.key)
    except Exception:  # noqa: BLE001 - as describe()
        return None
