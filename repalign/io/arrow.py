"""The Arrow IPC / Feather reader: list<float> columns as embeddings, listed from the schema, memory-mapped."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from repalign.errors import InputError
from repalign.io.base import FileReader, Stamp
from repalign.io.parquet import _arrow_float, column_matrix, list_type
from repalign.io.protocol import ArrayInfo
from repalign.validation import rows_text


def column_infos(schema: Any, n: int) -> list[ArrayInfo]:
    """One ArrayInfo per column of an arrow schema with n rows (a list column is n × its list size)."""
    out = []
    for field in schema:
        lt = list_type(field.type)
        if lt is None:
            out.append(ArrayInfo(field.name, (n,), str(field.type), False))
        else:
            out.append(ArrayInfo(field.name, (n, lt[1]), str(field.type), _arrow_float(lt[0])))
    return out


def column_ids(col: Any, where: str) -> np.ndarray:
    """Ids from an arrow column of strings or integers, without nulls."""
    import pyarrow as pa

    if col.null_count:
        rows = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))
        raise InputError(f"{where}: null ids in {rows_text(rows)}")
    t = col.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)):
        raise InputError(f"{where}: ids must be strings or integers, not {t}")
    return np.asarray(col.to_numpy())


def list_itemsize(schema: Any, name: str) -> int | None:
    lt = list_type(schema.field(name).type)
    return None if lt is None else int(lt[0].byte_width)


class IpcFile:
    """An Arrow IPC file (Feather v2) or stream (as Hugging Face datasets writes), opened memory-mapped."""

    def __init__(self, path: str):
        import pyarrow as pa
        import pyarrow.ipc as ipc

        self.path = path
        with open(path, "rb") as f:
            magic = f.read(6)
            f.seek(max(os.fstat(f.fileno()).st_size - 6, 0))
            tail = f.read(6)
        if magic == b"ARROW1" and tail != b"ARROW1":
            raise InputError(f"{path}: truncated: an Arrow IPC file starts and ends with ARROW1, but this one does "
                             "not end with it")
        if magic[:4] == b"FEA1":
            raise InputError(f"{path}: Feather version 1 is not supported; rewrite it as Feather version 2 "
                             "(pyarrow.feather.write_feather) or Arrow IPC")
        self.stream = magic != b"ARROW1"
        with pa.memory_map(path) as source:
            if self.stream:
                # A stream has no footer: its rows are counted batch by batch (memory-mapped, so the values
                # are not read unless the batches are compressed).
                reader = ipc.open_stream(source)
                self.schema = reader.schema
                self.num_rows = sum(batch.num_rows for batch in reader)
            else:
                file_reader = ipc.open_file(source)
                self.schema = file_reader.schema
                self.num_rows = int(file_reader.count_rows())

    def column(self, name: str) -> Any:
        """One column, memory-mapped where the file is uncompressed."""
        import pyarrow as pa
        import pyarrow.feather as feather
        import pyarrow.ipc as ipc

        if not self.stream:  # only this column is read (and decompressed, if the file is compressed)
            return feather.read_table(self.path, columns=[name], memory_map=True).column(0)
        with pa.memory_map(self.path) as source:
            return ipc.open_stream(source).read_all().column(name)


class ArrowReader(FileReader):
    """An Arrow IPC or Feather v2 file: each column is an array; a list column is n × (list length)."""

    format = "arrow"
    member = "column"

    def __init__(self, path: str, stamp: Stamp = ()):
        super().__init__(path, stamp)
        self._file: IpcFile | None = None

    def _ipc(self) -> IpcFile:
        if self._file is None:
            self._file = IpcFile(self.path)
        return self._file

    def _scan(self) -> list[ArrayInfo]:
        f = self._ipc()
        return column_infos(f.schema, f.num_rows)

    def _read(self, key: str | None, layer: int | None, allow_external: bool) -> tuple[np.ndarray, str | None]:
        info = self.choose(key)
        return column_matrix(self._ipc().column(info.name), f"{self.path}:{info.name}"), info.name

    def _read_ids(self, key: str) -> np.ndarray:
        f = self._ipc()
        if key not in f.schema.names:
            raise InputError(f"{self.path}: no column '{key}'")
        return column_ids(f.column(key), f"{self.path}:{key}")

    def _footprint(self, info: ArrayInfo, n: int) -> tuple[int, int, int] | None:
        itemsize = list_itemsize(self._ipc().schema, info.name)
        width = info.shape[-1]
        if itemsize is None or width is None:  # a list<float> column's width is only known once read
            return None
        return width, itemsize, 2 * n * width * itemsize  # the arrow column and its combined copy
