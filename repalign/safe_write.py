"""Atomic file writes: a run that fails half-way leaves the previous file as it was, and no debris."""

from __future__ import annotations

import os
import stat
import tempfile
from typing import BinaryIO, Callable

from repalign.errors import UsageError
from repalign.text import shown


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(target: str) -> int:
    """The permission bits of the file being replaced, or what a plain open() would have given."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_current_umask()


def write_atomic(path: str, fill: Callable[[BinaryIO], None] | bytes, what: str = "the report") -> None:
    """Write ``path`` through a temporary file in the same directory, fsync it, then rename it over ``path``.

    ``fill`` is the content or a function that writes it to the open binary file. On any failure
    (full disk, file size limit, an exception or a signal in ``fill``) the temporary file is removed
    and ``path`` is untouched; an OSError becomes a UsageError naming the path. A symlink is followed,
    so the file it points to is replaced and the link stays.
    """
    target = os.path.realpath(path) if os.path.islink(path) else path
    folder = os.path.dirname(os.path.abspath(target))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise UsageError(f"{shown(path)}: cannot write {what} ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f) if callable(fill) else f.write(fill)
            f.flush()
            os.fchmod(f.fileno(), _mode_for(target))
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        raise UsageError(f"{shown(path)}: cannot write {what} ({exc.strerror or exc})") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
