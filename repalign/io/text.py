"""The numeric CSV/TSV reader: listed from the first rows and a line count, read by pyarrow in streamed batches."""

from __future__ import annotations

import csv
import re
from typing import Any, ClassVar

import numpy as np

from repalign.errors import InputError
from repalign.io.base import FileReader, Stamp
from repalign.io.protocol import ArrayInfo

_ID_NAMES = ("id", "ids", "key", "name")
_CHUNK = 1 << 24
_FIRST_LINE_LIMIT = 1 << 28  # a "first line" longer than this is not a table
_INTEGER = r"^-?(0|[1-9][0-9]{0,17})$"  # fits int64 and is written canonically (no '007', no '+1')


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_EMPTY_LINE = re.compile(rb"(?<=\n)\r?\n")


def count_rows(path: str) -> int:
    """The number of non-empty lines (pyarrow skips empty ones): one pass over the bytes in fixed-size chunks,
    counting line ends with bytes.count; a regular expression looks for empty lines only in a chunk that has one.
    """
    lines = empty = 0
    tail, last = b"\n", b""  # the file starts as if after a line end
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            lines += chunk.count(b"\n")
            edge = tail + chunk[:2]
            if any(e in part for part in (chunk, edge) for e in (b"\n\n", b"\n\r\n")):
                window = tail + chunk  # an empty line is counted in the chunk holding its end
                empty += sum(1 for m in _EMPTY_LINE.finditer(window) if m.end() > len(tail))
            tail, last = (tail + chunk)[-2:] if len(chunk) < 2 else chunk[-2:], chunk[-1:]
    unended = last not in (b"", b"\n") and tail != b"\n\r"  # a last line without '\n' that is not empty
    return lines + int(unended) - empty


def line_of_row(path: str, row: int) -> int:
    """The 1-based line number of the row-th (0-based) non-empty line, -1 if there is none (error messages only).

    Vectorised over fixed-size chunks: a line is empty when it starts with '\\n' or with '\\r\\n'.
    """
    count, newlines, prev = 0, 0, 10  # the byte before the file counts as a line end
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            if chunk.endswith(b"\r"):  # never split a '\r\n'; a '\r' that ends the file ends an empty line
                chunk += f.read(1) or b"\n"
            buf = np.frombuffer(chunk, np.uint8)
            before = np.empty_like(buf)
            before[0], before[1:] = prev, buf[:-1]
            after = np.empty_like(buf)
            after[:-1], after[-1] = buf[1:], 0
            full = np.flatnonzero((before == 10) & (buf != 10) & ~((buf == 13) & (after == 10)))
            if count + full.size > row:
                pos = int(full[row - count])
                return newlines + int(np.count_nonzero(buf[:pos] == 10)) + 1
            count += full.size
            newlines += int(np.count_nonzero(buf == 10))
            prev = int(buf[-1])
    return -1


class CSVReader(FileReader):
    """A numeric table in text: the embedding ('' in listings) is every numeric column; a header row (a first
    row that is not all numbers) names the columns, and a column named id/ids/key/name, or any text
    column, is listed as a 1-D array usable as ids."""

    format = "csv"
    member = "column"
    delimiter: ClassVar[str] = ","

    def __init__(self, path: str, stamp: Stamp = ()):
        super().__init__(path, stamp)
        self._names: list[str] = []
        """Every column's name as listed (column1... without a header)."""
        self._embedding: list[int] = []
        """Indices of the embedding's columns."""
        self._header = False

    def _scan(self) -> list[ArrayInfo]:
        with open(self.path, "rb") as f:
            lines: list[str] = []
            while len(lines) < 2:
                line = f.readline(_FIRST_LINE_LIMIT)
                if not line:
                    break
                if line.strip(b"\r\n"):
                    lines.append(line.decode("utf-8-sig" if not lines else "utf-8").rstrip("\r\n"))
        if not lines:
            raise InputError(f"{self.path}: empty file, no rows")
        rows = [next(csv.reader([line], delimiter=self.delimiter)) for line in lines]
        first = rows[0]
        self._header = not all(_number(c) for c in first) or _default_names(first, rows[1:])
        width = len(first)
        if self._header:
            if len(rows) < 2:
                raise InputError(f"{self.path}: only a header row, no data")
            self._names = [c.strip() or f"column{j + 1}" for j, c in enumerate(first)]
            data = rows[1]
            self._embedding = [j for j, c in enumerate(data[:width]) if c.strip() and _number(c)
                               and first[j].strip() and first[j].strip().lower() not in _ID_NAMES]
            if not self._embedding:
                raise InputError(f"{self.path}: no numeric column to use as an embedding "
                                 f"(first data row: {lines[1][:80]!r})")
        else:
            self._names = [f"column{j + 1}" for j in range(width)]
            self._embedding = list(range(width))
        n = count_rows(self.path) - int(self._header)
        out = [ArrayInfo("", (n, len(self._embedding)), "float64", True)]
        chosen = set(self._embedding)
        out += [ArrayInfo(name, (n,), "string", False) for j, name in enumerate(self._names) if j not in chosen]
        return out

    def choose(self, key: str | None, what: str | None = None) -> ArrayInfo:
        infos = self.arrays()
        if key is None:
            return infos[0]
        for info in infos[1:]:
            if info.name == key:
                raise InputError(f"{self.path}:{key}: a text column, usable as ids (--ids {key}) but not as an "
                                 f"embedding; the embedding is {self.path} without a key")
        raise InputError(f"{self.path}: a {self.format.upper()} file holds one embedding (every numeric column); "
                         f"remove the ':{key}' key")

    def _read(self, key: str | None, layer: int | None, allow_external: bool) -> tuple[np.ndarray, str | None]:
        import pyarrow as pa

        info = self.choose(key)
        out = np.empty((max(int(info.shape[0] or 0), 0), len(self._embedding)))
        rows = 0
        try:
            with self._open(self._embedding, pa.float64()) as reader:
                for batch in reader:
                    m = batch.num_rows
                    if rows + m > out.shape[0]:  # more rows than counted (a quoted line break): grow
                        out = np.concatenate([out, np.empty((rows + m - out.shape[0], out.shape[1]))])
                    for j in range(batch.num_columns):  # one vectorised copy per column and batch
                        out[rows:rows + m, j] = batch.column(j).to_numpy()
                    rows += m
        except pa.ArrowInvalid as exc:
            raise self._explain(str(exc), rows) from None
        if rows == 0:
            raise InputError(f"{self.path}: no data rows")
        return out[:rows], None

    def _read_ids(self, key: str) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.arrays()
        if key not in self._names:
            raise InputError(f"{self.path}: no column '{key}'")
        try:
            col = self._column(self._names.index(key))
        except pa.ArrowInvalid as exc:
            raise self._explain(str(exc), 0) from None
        if len(col) and pc.all(pc.match_substring_regex(col, _INTEGER)).as_py():
            return np.asarray(col.cast(pa.int64()).to_numpy())
        return np.asarray(col.to_numpy(zero_copy_only=False)).astype(str)

    def _open(self, columns: list[int], kind: Any) -> Any:
        """A streaming pyarrow reader of the columns at these indices, all of type ``kind``."""
        import pyarrow.csv as pcsv

        names = [f"c{j}" for j in range(len(self._names))]  # header names may repeat; these never do
        chosen = [names[j] for j in columns]

        self._ragged: tuple[int, int] | None = None

        def ragged(row: Any) -> str:
            self._ragged = (row.expected_columns, row.actual_columns)
            return "error"

        return pcsv.open_csv(
            self.path,
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=int(self._header)),
            parse_options=pcsv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=ragged),
            # No null values: an empty cell or 'NA' is an error naming its line, never a silent NaN.
            convert_options=pcsv.ConvertOptions(column_types={c: kind for c in chosen}, include_columns=chosen,
                                                null_values=[],
                                                strings_can_be_null=False, quoted_strings_can_be_null=False))

    def _column(self, j: int) -> Any:
        """Column j as arrow strings."""
        import pyarrow as pa

        with self._open([j], pa.string()) as reader:
            return pa.chunked_array([b.column(0) for b in reader], pa.string())

    def _explain(self, message: str, rows_before: int) -> InputError:
        """A one-line error naming the line (and column) of a ragged row or a cell that is not a number."""
        ragged = getattr(self, "_ragged", None)
        if ragged is not None or "Expected" in message and "columns" in message:
            line, got = self._first_ragged()
            expected = len(self._names)
            where = f"line {line}" if line > 0 else "a row"
            return InputError(f"{self.path}: ragged rows: {where} has {got} fields, expected {expected} "
                              f"(as on line 1)")
        found = re.search(r"column #(\d+).*invalid value '(.*)'", message)
        if found:
            j, value = int(found.group(1)), found.group(2)
            row = self._first_bad_cell(j, rows_before)
            line = line_of_row(self.path, row + int(self._header)) if row is not None else -1
            at = f"line {line}" if line > 0 else "a row"
            what = f"'{value[:40]}' is not a number" if value else "empty cell, not a number"
            return InputError(f"{self.path}: {at}, column {j + 1} ({self._names[j]}): {what}")
        reason = " ".join(message.split())[:160]
        return InputError(f"{self.path}: cannot be read as {self.format} ({reason})")

    def _first_ragged(self) -> tuple[int, int]:
        """(line number, fields) of the first line whose field count differs from the first line's.

        The error path only, so a plain csv.reader loop: its line_num counts physical lines, quoted breaks too.
        """
        width = len(self._names)
        with open(self.path, encoding="utf-8-sig", newline="") as f:
            rows = csv.reader(f, delimiter=self.delimiter)
            for row in rows:
                if row and len(row) != width:
                    return rows.line_num, len(row)
        return -1, 0

    def _first_bad_cell(self, column: int, rows_before: int) -> int | None:
        """The index of the first cell of ``column`` that is not a number: bisected with vectorised casts."""
        import pyarrow as pa
        import pyarrow.compute as pc

        # The CSV converter ignores spaces around a number; a cast does not.
        col = pc.utf8_trim_whitespace(self._column(column).combine_chunks())

        def fails(lo: int, hi: int) -> bool:
            try:
                col.slice(lo, hi - lo).cast(pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return True
            return False

        lo, hi = rows_before, len(col)
        if not fails(lo, hi):
            return None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fails(lo, mid):
                hi = mid
            else:
                lo = mid
        return lo


def _default_names(first: list[str], rest: list[list[str]]) -> bool:
    """True for pandas' default header 0,1,...,d-1 (``DataFrame(array).to_csv(index=False)``) above a row that
    is not all integers: such a first row names the columns, it is not an item."""
    if len(first) < 2 or [c.strip() for c in first] != [str(j) for j in range(len(first))] or not rest:
        return False
    return not all(re.fullmatch(r"\s*[+-]?\d+\s*", c) for c in rest[0])


class TSVReader(CSVReader):
    """The same, tab-separated (e.g. the TensorBoard projector's vectors.tsv: no header)."""

    format = "tsv"
    delimiter = "\t"
