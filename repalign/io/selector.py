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
    ".safetensors": "safetensors",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".pt": "torch",
    ".pth": "torch",
    ".csv": "csv", ".tsv": "tsv", ".faiss": "faiss", ".index": "faiss", ".h5ad": "h5ad",
    ".zarr": "zarr",
}

STDIN = "-"
"""The path that means standard input (read once, fully; .npy unless a format is given)."""

OVERRIDE_SYNTAX = "PATH@FORMAT (e.g. data.bin@npy, -@parquet)"


@dataclass(frozen=True)
class Selector:
    """A file and, optionally, the array inside it (``PATH:KEY``)."""

    path: str
    key: str | None = None

    def __str__(self) -> str:
        return self.path if self.key is None else f"{self.path}:{self.key}"


def format_names() -> list[str]:
    """What may follow '@': a format's name or one of its suffixes without the dot."""
    return sorted(set(FORMATS.values()) | {s.lstrip(".") for s in FORMATS})


def split_format(path: str) -> tuple[str, str | None]:
    """``PATH@FORMAT`` → (PATH, format name); a path that exists as given (or has no known '@FORMAT') is kept.

    ``-`` alone is standard input in .npy.
    """
    if path == STDIN:
        return STDIN, "npy"
    head, at, name = path.rpartition("@")
    if not at or not head or os.path.lexists(path):
        return path, None
    fmt = FORMATS.get("." + name.lower(), name.lower())
    if fmt not in FORMATS.values():
        return path, None
    return head, fmt


def check_format_name(fmt: str | None) -> None:
    """Refuse a --format-a/--format-b that names no format."""
    if fmt is not None and "." + fmt.lower() not in FORMATS and fmt.lower() not in FORMATS.values():
        from repalign.errors import UsageError

        raise UsageError(f"unknown input format '{fmt}' (choose from {', '.join(format_names())})")


def _is_path(head: str) -> bool:
    """An existing non-directory path, or standard input (with or without '@FORMAT')."""
    base, fmt = split_format(head)
    if base == STDIN:
        return True
    return (fmt is not None or base == head) and os.path.exists(base) and (not os.path.isdir(base) or fmt == "zarr")


def parse_selector(text: str | os.PathLike[str], fmt: str | None = None) -> Selector:
    """Split ``PATH:KEY`` after the shortest existing file path, so keys may contain colons.

    A path that exists as given is never split, so file names containing a
    colon keep working. PATH may end in ``@FORMAT`` (or ``fmt`` adds it) to name the format, and ``-`` is
    standard input.
    """
    text = os.fspath(text)
    tag = "" if fmt is None else "@" + FORMATS.get("." + fmt.lower(), fmt.lower())
    if os.path.exists(text) or text == STDIN or (fmt is None and split_format(text)[1] is not None
                                                 and _is_path(text)):
        return Selector(text + tag)
    # A file first; a directory (of shards) only when no file prefix exists.
    for accepts in (lambda head: _is_path(head + tag), os.path.isdir):
        for i, c in enumerate(text):
            head = text[:i]
            if c == ":" and head and accepts(head):
                if i + 1 == len(text):
                    raise InputError(f"{head}: empty key after ':'")
                return Selector(head + tag, text[i + 1 :])
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


def is_pipe(path: str) -> bool:
    """A pipe (/dev/stdin in a pipeline, process substitution's /dev/fd/63): it ends when the writer closes it.
    Devices do not (a terminal waits, /dev/zero never ends) and a socket file cannot be opened: both refused."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode)


def is_stream(path: str) -> bool:
    """True for an input read once, fully, into a private copy: standard input, or a pipe or other non-regular
    file given with an explicit format (PATH@FORMAT)."""
    base, fmt = split_format(path)
    if base == STDIN:
        return True
    return fmt is not None and is_pipe(base)


def file_format(path: str) -> str:
    """The format name for a path, from its '@FORMAT' or its suffix; anything but a regular file (or a directory
    of parquet or arrow shards) is refused before any open, except standard input and a pipe given with an
    explicit format."""
    base, fmt = split_format(path)
    if fmt is not None:
        if fmt == "zarr" and os.path.isdir(base):
            return fmt
        if not is_stream(path):
            check_regular_file(base)
        return fmt
    if is_pipe(path):  # read once, to its end, only when asked: reading it to guess could block forever
        raise InputError(f"{path}: a named pipe (FIFO), not a file; name its format to read it once: {path}@npy "
                         "(or @parquet, @npz, ...)")
    if os.path.isdir(path):
        from repalign.io.shards import shard_files
        from repalign.io.zarr_store import is_zarr_dir

        if is_zarr_dir(path):
            return "zarr"

        shard_files(path)  # refuses a directory without shards, saying what it holds
        return "shards"
    check_regular_file(path)
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise InputError(f"{path}: unsupported file type '{p.suffix or '(none)'}' (expected one of {known}, "
                         f"or name the format: {OVERRIDE_SYNTAX}; anything else: convert it with numpy.save to .npy)")
    return fmt
