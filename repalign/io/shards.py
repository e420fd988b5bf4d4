"""A directory of parquet or Arrow shards (Spark, Hugging Face save_to_disk) read as one table, in file order."""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from repalign.errors import InputError
from repalign.io.arrow import IpcFile, column_ids, column_infos, column_matrix, list_itemsize
from repalign.io.base import FileReader, Stamp
from repalign.io.parquet import _parquet_values
from repalign.io.protocol import ArrayInfo

SHARD_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}


def _natural(text: str) -> list[int | str]:
    """part-2 before part-10 (as io.layers.natural_key, which this module cannot import without a cycle)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def shard_files(path: str) -> tuple[str, list[str]]:
    """(shard format, shard paths in natural name order) of a directory; hidden files, _SUCCESS-style markers,
    .crc checksums and files of other types (dataset_info.json, state.json) are skipped."""
    try:
        names = sorted(os.listdir(path), key=_natural)
    except OSError as exc:
        raise InputError(f"{path}: cannot list the directory ({exc.strerror or type(exc).__name__})") from None
    found: dict[str, list[str]] = {"parquet": [], "arrow": []}
    others = []
    for name in names:
        full = os.path.join(path, name)
        if name.startswith((".", "_")) or name.endswith(".crc") or not os.path.isfile(full):
            continue
        kind = SHARD_SUFFIXES.get(os.path.splitext(name)[1].lower())
        if kind is None:
            others.append(name)
        else:
            found[kind].append(full)
    if found["parquet"] and found["arrow"]:
        raise InputError(f"{path}: a directory mixing parquet ({len(found['parquet'])}) and arrow "
                         f"({len(found['arrow'])}) shards; keep one format per directory")
    for kind, files in found.items():
        if files:
            return kind, files
    held = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "") if others else "none"
    raise InputError(f"{path}: a directory, not a file, and it holds no parquet or arrow shards "
                     "(.parquet, .pq, .arrow, .feather, .ipc); "
                     f"other files: {held}")


def _field_difference(first: Any, other: Any) -> str:
    """What differs between two schemas, for the error message."""
    if first.names != other.names:
        return f"columns {other.names} instead of {first.names}"
    for a, b in zip(first, other):
        if not a.type.equals(b.type):
            return f"column '{a.name}' is {b.type} instead of {a.type}"
        if a.nullable != b.nullable:
            return f"column '{a.name}' is {'' if b.nullable else 'not '}nullable, unlike the first shard"
    return "schema metadata differs"


class ShardsReader(FileReader):
    """A directory of parquet or Arrow shards: the rows of every shard in natural file order, as one table."""

    format = "shards"
    member = "column"

    def __init__(self, path: str, stamp: Stamp = ()):
        super().__init__(path, stamp)
        self._kind = ""
        self._files: list[str] = []
        self._schema: Any = None
        self._metas: list[Any] = []
        """Each parquet shard's footer (for the plan of a list<float> column); empty for arrow."""
        self._ipc: list[IpcFile] = []

    def _scan(self) -> list[ArrayInfo]:
        import pyarrow.parquet as pq

        self._kind, self._files = shard_files(self.path)
        self._schema, self._metas, self._ipc = None, [], []
        n = 0
        for f in self._files:
            if self._kind == "parquet":
                pf = pq.ParquetFile(f)
                schema, rows = pf.schema_arrow, pf.metadata.num_rows
                self._metas.append(pf.metadata)
            else:
                ipc = IpcFile(f)
                schema, rows = ipc.schema, ipc.num_rows
                self._ipc.append(ipc)
            if self._schema is None:
                self._schema = schema
            elif not schema.equals(self._schema, check_metadata=False):
                raise InputError(f"{f}: schema differs from the first shard {os.path.basename(self._files[0])} "
                                 f"({_field_difference(self._schema, schema)})")
            n += rows
        return column_infos(self._schema, n)

    def _column(self, name: str) -> Any:
        """One column of every shard, in file order."""
        import pyarrow as pa
        import pyarrow.dataset as ds

        if self._kind == "arrow" and any(f.stream for f in self._ipc):
            # pyarrow.dataset reads only the IPC file format, and save_to_disk writes IPC streams.
            return pa.chunked_array([f.column(name) for f in self._ipc], type=self._schema.field(name).type)
        fmt = "parquet" if self._kind == "parquet" else "ipc"
        dataset = ds.dataset(self._files, format=fmt, schema=self._schema)
        return dataset.to_table(columns=[name]).column(0)  # fragments come back in the order of the list

    def _read(self, key: str | None, layer: int | None, allow_external: bool) -> tuple[np.ndarray, str | None]:
        info = self.choose(key)
        return column_matrix(self._column(info.name), f"{self.path}:{info.name}"), info.name

    def _read_ids(self, key: str) -> np.ndarray:
        self.arrays()
        if key not in self._schema.names:
            raise InputError(f"{self.path}: no column '{key}'")
        return column_ids(self._column(key), f"{self.path}:{key}")

    def _footprint(self, info: ArrayInfo, n: int) -> tuple[int, int, int] | None:
        itemsize = list_itemsize(self._schema, info.name)
        if itemsize is None:
            return None
        width = info.shape[-1]
        if width is not None:
            values = n * width
        elif self._metas:  # list<float> in parquet: bounded by every shard's footer
            values = sum(_parquet_values(meta, info.name) for meta in self._metas)
        else:
            return None
        d = -(-values // n) if n else 0
        return d, itemsize, 2 * values * itemsize  # the arrow column and its combined copy, briefly together
