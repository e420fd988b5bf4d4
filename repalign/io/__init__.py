"""Reading embeddings: one reader class per file format, layer sources for files and arrays, PATH:KEY selectors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from repalign.io.array import ArrayLayers, Checked
from repalign.io.arrow import ArrowReader
from repalign.io.base import FileReader, guard, listing
from repalign.io.faiss_index import FaissReader
from repalign.io.h5ad import H5adReader
from repalign.io.hdf5 import HDF5Reader
from repalign.io.layers import LayerSet, is_glob, natural_key, open_layers, parse_layers
from repalign.io.npy import NpyReader
from repalign.io.npz import NpzReader
from repalign.io.parquet import ParquetReader
from repalign.io.protocol import ArrayInfo, LayerSource, Loaded, Plan, Reader
from repalign.io.readers import READERS, describe, inspect, load, reader_for, stored_bytes
from repalign.io.selector import FORMATS, Selector, as_selector, check_regular_file, file_format, parse_selector
from repalign.io.shards import ShardsReader
from repalign.io.tensors import SafetensorsReader
from repalign.io.text import CSVReader, TSVReader
from repalign.io.torch import TorchReader
from repalign.io.zarr_store import ZarrReader

__all__ = [
    "FORMATS", "READERS", "ArrayInfo", "ArrayLayers", "ArrowReader", "CSVReader", "Checked", "FaissReader",
    "FileReader", "H5adReader", "HDF5Reader", "LayerSet", "LayerSource", "Loaded", "NpyReader", "NpzReader",
    "ParquetReader", "Plan", "Reader", "SafetensorsReader", "Selector", "ShardsReader", "TSVReader", "TorchReader",
    "ZarrReader", "as_selector", "check_regular_file", "describe", "file_format", "guard", "inspect", "is_glob",
    "listing", "load", "natural_key", "open_layers", "parse_layers", "parse_selector", "reader_for", "stored_bytes",
]

if TYPE_CHECKING:  # mypy proves here that every class implements the protocol it is used through

    def _implements(files: LayerSet, arrays: ArrayLayers, checked: Checked, npy: NpyReader, npz: NpzReader,
                    hdf5: HDF5Reader, parquet: ParquetReader) -> tuple[LayerSource, LayerSource, LayerSource,
                                                                       Reader, Reader, Reader, Reader]:
        return files, arrays, checked, npy, npz, hdf5, parquet

    def _readers_implement(arrow: ArrowReader, safetensors: SafetensorsReader, shards: ShardsReader,
                           torch: TorchReader, csv: CSVReader, tsv: TSVReader, faiss: FaissReader, h5ad: H5adReader,
                           zarr: ZarrReader) -> tuple[Reader, ...]:
        return arrow, safetensors, shards, torch, csv, tsv, faiss, h5ad, zarr
