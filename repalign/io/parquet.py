"""The parquet reader: list<float> columns as embeddings, planned from the footer, read one column at a time."""

from __future__ import annotations

from typing import Any

import numpy as np

from repalign.errors import InputError
from repalign.io.base import FileReader, Stamp
from repalign.io.protocol import ArrayInfo
from repalign.io.rows import ChunkedRows, RowSource
from repalign.validation import rows_text


def list_type(t: Any) -> tuple[Any, int | None] | None:
    """(value_type, fixed_size or None) for a list-like arrow type, else None."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(t):
        return t.value_type, t.list_size
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return t.value_type, None
    return None


def _arrow_float(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_floating(t))


class ParquetReader(FileReader):
    """A parquet file: each column is an array; a list column is n × (list length)."""

    format = "parquet"
    member = "column"

    def __init__(self, path: str, stamp: Stamp = ()):
        super().__init__(path, stamp)
        self._footer: tuple[Any, Any] | None = None
        """(metadata, arrow schema), kept from the listing for the memory plan."""

    def _scan(self) -> list[ArrayInfo]:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.path)
        self._footer = (pf.metadata, pf.schema_arrow)
        n = pf.metadata.num_rows
        out = []
        for field in pf.schema_arrow:
            lt = list_type(field.type)
            if lt is None:
                out.append(ArrayInfo(field.name, (n,), str(field.type), False))
            else:
                value_type, size = lt
                out.append(ArrayInfo(field.name, (n, size), str(field.type), _arrow_float(value_type)))
        return out

    def _read(self, key: str | None, layer: int | None, allow_external: bool) -> tuple[np.ndarray, str | None]:
        import pyarrow.parquet as pq

        info = self.choose(key)
        where = f"{self.path}:{info.name}"
        col = pq.read_table(self.path, columns=[info.name]).column(0)
        return column_matrix(col, where), info.name

    def _rows(self, key: str | None, layer: int | None, allow_external: bool) -> RowSource | None:
        """One row group at a time (its column converted to an n×d block); a ragged column is read whole."""
        import pyarrow.parquet as pq

        info = self.choose(key)
        if info.shape[-1] is None or len(info.shape) != 2:
            return None
        where = f"{self.path}:{info.name}"
        pf = pq.ParquetFile(self.path)
        meta = pf.metadata
        lt = list_type(pf.schema_arrow.field(info.name).type)
        if lt is None or not _arrow_float(lt[0]) or meta.num_rows == 0:
            return None
        groups = [g for g in range(meta.num_row_groups) if meta.row_group(g).num_rows > 0]
        bounds = [0]
        for g in groups:
            bounds.append(bounds[-1] + meta.row_group(g).num_rows)
        path, name = self.path, info.name

        def read(unit: int, start: int, stop: int) -> np.ndarray:
            table = pq.ParquetFile(path).read_row_group(groups[unit], columns=[name])
            return column_matrix(table.column(0), f"{where} (row group {groups[unit]}, counting rows from {start})")

        dtype = np.dtype(lt[0].to_pandas_dtype())
        return ChunkedRows((int(meta.num_rows), int(info.shape[-1])), dtype, bounds, read)

    def _read_ids(self, key: str) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.parquet as pq

        where = f"{self.path}:{key}"
        col = pq.read_table(self.path, columns=[key]).column(0)
        if col.null_count:
            rows = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))
            raise InputError(f"{where}: null ids in {rows_text(rows)}")
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_integer(col.type)):
            raise InputError(f"{where}: ids must be strings or integers, not {col.type}")
        return np.asarray(col.to_numpy())

    def _footprint(self, info: ArrayInfo, n: int) -> tuple[int, int, int] | None:
        self.arrays()
        assert self._footer is not None  # set by the listing
        meta, schema = self._footer
        lt = list_type(schema.field(info.name).type)
        if lt is None:
            return None
        itemsize = int(lt[0].byte_width)
        width = info.shape[-1]
        values = n * width if width is not None else _parquet_values(meta, info.name)
        d = -(-values // n) if n else 0
        return d, itemsize, 2 * values * itemsize  # the arrow column and its combined copy, briefly together


def _to_matrix(arr: Any, size: int | None, where: str) -> np.ndarray:
    """An n×d float array from a list column without nulls, whose rows all hold ``size`` (or equally many) values."""
    import pyarrow.compute as pc

    n = len(arr)
    if arr.null_count:
        rows = np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))
        raise InputError(f"{where}: null embedding in {rows_text(rows)}")
    if size is not None:
        d = size
    else:
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        d = int(lengths[0]) if n else 0
        ragged = np.flatnonzero(lengths != d)
        if ragged.size:
            i = int(ragged[0])
            raise InputError(
                f"{where}: ragged list column: row 0 has {d} values but row {i} has {int(lengths[i])}"
                f" ({ragged.size} rows differ from row 0)"
            )
    # flatten() honours slicing offsets, unlike .values; one contiguous copy, no per-row loop.
    values = arr.flatten()
    if values.null_count:
        flat = np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))
        raise InputError(f"{where}: null values inside embeddings in {rows_text(np.unique(flat // max(d, 1)))}")
    return np.asarray(values.to_numpy(zero_copy_only=False).reshape(n, d))


def column_matrix(col: Any, where: str) -> np.ndarray:
    """An n×d float array from an arrow column (chunked or not) of fixed_size_list<float> or list<float>."""
    import pyarrow as pa

    lt = list_type(col.type)
    if lt is None:
        raise InputError(f"{where}: column of type {col.type} is not a list column "
                         "(expected list<float> or fixed_size_list<float>)")
    if not _arrow_float(lt[0]):
        raise InputError(f"{where}: list values are {lt[0]}, not floating point")
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
    return _to_matrix(col, lt[1], where)


def _parquet_values(meta: Any, column: str) -> int:
    """Upper bound on the values of a list column from the footer alone: each leaf column chunk's
    num_values counts every value (plus one per null or empty list), however well the pages compress."""
    leaf = [j for j in range(meta.num_columns) if meta.schema.column(j).path.split(".")[0] == column]
    return int(sum(meta.row_group(g).column(j).num_values for g in range(meta.num_row_groups) for j in leaf))
