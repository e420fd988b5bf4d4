"""PATH:KEY selectors, the format of a path, and the refusal of anything but a regular file before any open."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from repalign.errors import InputError

FORMATS = {
    ".npy": "npy",
    ".npz": "npz",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv", ".tsv": "tsv", ".faiss": "faiss", ".index": "faiss", ".h5ad": "h5ad",
}


@dataclass(frozen=True)
class Selector:
    """A file and, optionally, the array inside it (``PATH:KEY``)."""

    path: str
    key: str | None = None

    def __str__(self) -> str:
        return self.path if self.key is None else f"{self.path}:{self.key}"


def parse_selector(text: str | os.PathLike[str]) -> Selector:
    """Split ``PATH:KEY`` after the shortest existing file path, so keys may contain colons.

    A path that exists as given is never split, so file names containing a
    colon keep working.
    """
    text = os.fspath(text)
    if os.path.exists(text):
        return Selector(text)
    for i, c in enumerate(text):
        head = text[:i]
        if c == ":" and head and os.path.exists(head) and not os.path.isdir(head):
            if i + 1 == len(text):
                raise InputError(f"{head}: empty key after ':'")
            return Selector(head, text[i + 1 :])
    raise InputError(f"{text}: no such file")


def as_selector(selector: Selector | str | os.PathLike[str]) -> Selector:
    """A Selector as given, or parsed from ``PATH:KEY`` text."""
    return selector if isinstance(selector, Selector) else parse_selector(selector)


_NOT_FILES: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def check_regular_file(path: str, what: str = "file") -> None:
    """Refuse anything but a regular file from its stat alone: opening a FIFO or a device could block forever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    for test, kind in _NOT_FILES:
        if test(mode):
            raise InputError(f"{path}: {kind}, not a {what}")
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: not a regular {what}")


def file_format(path: str) -> str:
    """The format name for a path, from its suffix; anything but a regular file is refused before any open."""
    check_regular_file(path)
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise InputError(f"{path}: unsupported file type '{p.suffix or '(none)'}' (expected one of {known})")
    return fmt
