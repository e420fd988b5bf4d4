"""Pairing the rows of two inputs: by row order, or by an id column joined across files; subsampling."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from repalign import io as _io
from repalign.errors import InputError, UsageError
from repalign.seeds import Streams

ID_NAMES = ("id", "ids", "key", "name")


@dataclass(frozen=True)
class Pairing:
    """How row i of a was matched with row j of b, as the report states it."""

    by: str
    """'row' (row i with row i) or 'id' (inner join on ids)."""
    ids: tuple[str | None, ...] = (None, None)
    """Id key in each file."""
    rows: tuple[int, ...] = (0, 0)
    """Rows each input had."""
    paired: int = 0
    """Items compared (before subsampling)."""
    dropped: tuple[int, ...] = (0, 0)
    """Rows of each input without a partner."""
    max_rows: int | None = None
    """Subsample size, if --max-rows cut the paired items."""
    subsample_seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "ids": list(self.ids), "rows": list(self.rows), "paired": self.paired,
                "dropped": list(self.dropped), "max_rows": self.max_rows, "subsample_seed": self.subsample_seed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Pairing:
        return cls(d["by"], tuple(d["ids"]), tuple(d["rows"]), d["paired"], tuple(d["dropped"]), d["max_rows"],
                   d["subsample_seed"])

    def describe(self) -> str:
        if self.by == "row":
            text = f"row i of a with row i of b ({self.paired} items)"
        else:
            text = (f"by id ({self.ids[0]} / {self.ids[1]}): {self.paired} paired of {self.rows[0]} and "
                    f"{self.rows[1]}; dropped {self.dropped[0]} from a, {self.dropped[1]} from b")
        if self.max_rows is not None:
            text += f"; a random {self.max_rows} of them (seed {self.subsample_seed})"
        return text


def _id_candidates(infos: list[_io.ArrayInfo]) -> list[_io.ArrayInfo]:
    return [i for i in infos if i.name.rsplit("/", 1)[-1].lower() in ID_NAMES and len(i.shape) == 1]


def find_ids(selector: _io.Selector, key: str | None) -> str | None:
    """The id key of a file: ``key`` if given, else the one array named id/ids/key/name (in an .h5ad file without
    one, its obs index), else None.

    The file's listing comes from its reader, so a file already opened for its layers is not listed again.
    """
    reader = _io.reader_for(selector.path)
    if reader.format == "npy":
        if key is not None:
            raise UsageError(f"{selector.path}: a .npy file holds one array and no ids; use .npz, HDF5 or parquet")
        return None
    infos = reader.arrays()
    if key is not None:
        if not any(i.name == key.strip("/") for i in infos):
            raise InputError(f"{selector.path}: no id array '{key}' (available: {_io.listing(selector.path, infos)})")
        return key.strip("/")
    found = _id_candidates(infos)
    if not found and reader.format == "h5ad":  # AnnData keeps the items' names as the obs index
        found = [i for i in infos if i.name == "obs/_index" and len(i.shape) == 1]
    if len(found) > 1:
        names = ", ".join(i.name for i in found)
        raise InputError(f"{selector.path}: several id arrays ({names}); choose one with --ids-a/--ids-b")
    return found[0].name if found else None


def read_ids(path: str, key: str) -> np.ndarray:
    """A 1-D array of str or int64 ids; nulls, floats and objects are refused."""
    where = f"{path}:{key}"
    ids = np.asarray(_io.reader_for(path).read_ids(key))
    if ids.ndim != 1:
        raise InputError(f"{where}: ids must be 1-D, got shape {ids.shape}")
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64)
    if ids.dtype.kind in "US":
        return ids.astype(str)
    if ids.dtype.kind == "O" and all(isinstance(x, str) for x in ids):
        return ids.astype(str)
    raise InputError(f"{where}: ids must all be strings or all integers (got {ids.dtype})")


def _check_unique(ids: np.ndarray, where: str) -> None:
    values, counts = np.unique(ids, return_counts=True)
    dup = values[counts > 1]
    if dup.size:
        shown = ", ".join(repr(x.item() if hasattr(x, "item") else x) for x in dup[:3])
        raise InputError(f"{where}: {dup.size} duplicate id{'s' if dup.size > 1 else ''}, e.g. {shown}")


def join(ids_a: np.ndarray, ids_b: np.ndarray, where: tuple[str, str], require_all: bool = False
         ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (ia, ib) of the items both sides have, in a's row order."""
    kind = {"i": "integers", "U": "strings"}
    ka, kb = ids_a.dtype.kind, ids_b.dtype.kind
    if ka != kb:
        raise InputError(f"ids of {where[0]} are {kind.get(ka, ka)} but ids of {where[1]} are {kind.get(kb, kb)}")
    _check_unique(ids_a, where[0])
    _check_unique(ids_b, where[1])
    _, ia, ib = np.intersect1d(ids_a, ids_b, assume_unique=True, return_indices=True)
    order = np.argsort(ia, kind="stable")
    ia, ib = ia[order], ib[order]
    if require_all and (ia.size < ids_a.size or ib.size < ids_b.size):
        missing = [f"{ids_a.size - ia.size} of {where[0]}", f"{ids_b.size - ib.size} of {where[1]}"]
        raise InputError(f"--require-all: ids without a partner: {', '.join(missing)}")
    return ia, ib


def subsample(n: int, max_rows: int, seed: int) -> np.ndarray:
    """The same max_rows items for both sides, in their original order, from the seed's subsample stream."""
    rng = np.random.default_rng(Streams.from_seed(seed).subsample)
    return np.sort(rng.choice(n, size=max_rows, replace=False))


def is_file(x: object) -> bool:
    return isinstance(x, (str, os.PathLike, _io.Selector))


def join_many(ids: list[np.ndarray], wheres: list[str], require_all: bool = False) -> list[np.ndarray]:
    """Row indices, one array per input, of the items every input has, in the first input's row order."""
    rows = [np.arange(ids[0].size)]
    common = ids[0]
    for other, where in zip(ids[1:], wheres[1:]):
        ia, _ = join(common, other, (wheres[0], where))
        common = common[ia]
        rows = [r[ia] for r in rows]
    out = [rows[0]]
    for other in ids[1:]:
        order = np.argsort(other, kind="stable")
        out.append(order[np.searchsorted(other, common, sorter=order)])
    if require_all:
        short = [f"{ids_i.size - common.size} of {where}" for ids_i, where in zip(ids, wheres)
                 if ids_i.size > common.size]
        if short:
            raise InputError(f"--require-all: ids without a partner in every input: {', '.join(short)}")
    return out
