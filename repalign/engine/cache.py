"""The neighbour-list cache: one file per (layer content, search parameters), checked on every read."""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from repalign.errors import RepalignError
from repalign.safe_write import write_atomic
from repalign.text import shown

# Bump when the entry layout or the meaning of stored lists changes: old entries then miss, never mislead.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ListKey:
    """Everything besides the data that decides a layer's neighbour lists."""

    depth: int
    k: int
    distance: str
    ordered: bool
    search: str = "exact"
    """The search backend and its parameters, so an approximate backend's lists get their own entries."""

    def header(self, x: np.ndarray) -> dict:
        return {"format": FORMAT_VERSION, "search": self.search, "distance": self.distance, "depth": self.depth,
                "k": self.k, "ordered": self.ordered, "dtype": x.dtype.str, "shape": list(x.shape)}


def key(x: np.ndarray, search: ListKey) -> str:
    """A content hash of the layer as searched (rows paired and selected, preprocessed) and the parameters.

    sha256: about 20 ms for 10,000×768 float32 on a CPU with SHA extensions, next to seconds of search.
    """
    h = hashlib.sha256(json.dumps(search.header(x), sort_keys=True).encode())
    h.update(np.ascontiguousarray(x).data.cast("B"))  # the buffer itself: no copy of a contiguous layer
    return h.hexdigest()


def _valid_lists(lists: np.ndarray, n: int, depth: int) -> bool:
    """n×depth integers in [0, n), no row holding itself or the same item twice."""
    if lists.ndim != 2 or lists.shape != (n, depth) or lists.dtype.kind not in "iu":
        return False
    if lists.size == 0:
        return True
    if lists.min() < 0 or lists.max() >= n:
        return False
    if np.any(lists == np.arange(n)[:, None]):
        return False
    ranked = np.sort(lists, axis=1)
    return not np.any(ranked[:, 1:] == ranked[:, :-1])


class ListCache:
    """A directory of neighbour lists shared by runs and processes; it never makes a run fail.

    Entries are written atomically (a temporary file in the same directory, fsync, rename), so a reader sees
    a whole entry or none, and two writers of one key both write whole files, the last rename winning. Each
    entry stores its key and parameters next to the lists; a read checks them and the lists' validity, and
    anything else (truncated, foreign, garbage) is recomputed, overwritten and noted.
    """

    def __init__(self, directory: str):
        self.directory = directory
        self._hits: dict[str, int] = {}
        self._problems: list[str] = []
        self._writable = True
        self._write_failure: str | None = None
        """The note of the first failed write (a merge keeps only the first, as one process notes only one)."""

    def lists(self, x: np.ndarray, who: str, search: ListKey, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The lists of layer ``x`` from the cache, or ``compute()``d and stored; ``who`` names the input."""
        digest = key(x, search)
        path = os.path.join(self.directory, f"{digest}.npz")
        found = self._read(path, digest, search, x)
        if found is not None:
            self._hits[who] = self._hits.get(who, 0) + 1
            return found
        lists = compute()
        self._write(path, digest, search, x, lists)
        return lists

    def _read(self, path: str, digest: str, search: ListKey, x: np.ndarray) -> np.ndarray | None:
        """The stored lists if the entry exists and checks out; None (with a note if it existed) otherwise."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):  # no entry, or no directory yet: a plain miss
            return None
        except OSError as exc:  # a directory in its place, no permission: treated as a bad entry
            self._note(f"cache entry {shown(path)} was unreadable ({exc.strerror or exc}); recomputed")
            return None
        lists = _parse(data, digest, search.header(x))
        if lists is None or not _valid_lists(lists, x.shape[0], search.depth):
            self._note(f"cache entry {shown(path)} was unreadable; recomputed")
            return None
        return lists

    def _write(self, path: str, digest: str, search: ListKey, x: np.ndarray, lists: np.ndarray) -> None:
        if not self._writable:
            return
        header = json.dumps({"key": digest, **search.header(x)}, sort_keys=True)
        try:
            os.makedirs(self.directory, exist_ok=True)
            write_atomic(path, lambda f: np.savez(f, lists=lists, header=np.array(header)), "a cache entry")
        except (OSError, RepalignError) as exc:
            # Once is enough: every later layer would fail the same way.
            self._writable = False
            # write_atomic's message names the entry and the reason; makedirs' has only the reason.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._write_failure = (f"the cache {shown(self.directory)} could not be written; neighbour lists were "
                                   f"computed and not stored ({reason})")
            self._note(self._write_failure)

    def merge(self, other: ListCache) -> None:
        """Add what another process's cache of the same directory served and noted (a distributed run's
        workers each keep their own), as if this one had done it: hits add up, a failed write is noted once,
        and notes name the directory as this cache does (a worker may have been given its absolute path)."""
        def renamed(note: str) -> str:
            return note.replace(shown(other.directory), shown(self.directory))

        for who, count in other._hits.items():
            self._hits[who] = self._hits.get(who, 0) + count
        for note in other._problems:
            if not (note == other._write_failure and self._write_failure is not None):
                self._note(renamed(note))
        if self._write_failure is None and other._write_failure is not None:
            self._write_failure = renamed(other._write_failure)
        self._writable = self._writable and other._writable

    def _note(self, note: str) -> None:
        if note not in self._problems:
            self._problems.append(note)

    def notes(self) -> list[str]:
        """Which inputs' lists came from the cache, and every entry or write that failed."""
        hits = [f"{who}: neighbour lists of {count} layer{'s' if count > 1 else ''} read from the cache "
                f"{shown(self.directory)}" for who, count in self._hits.items()]
        return hits + self._problems


def _parse(data: bytes, digest: str, expected: dict) -> np.ndarray | None:
    """The lists of an entry whose stored header names this key and these parameters; None for anything else."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            header = json.loads(str(z["header"][()]))
            lists = z["lists"]
    except Exception:  # noqa: BLE001 - any failure to parse a cache file means the same: recompute it
        return None
    if not isinstance(header, dict) or header != {"key": digest, **expected}:
        return None
    return lists
