"""Standard input and pipes: read once, to the end, into a private copy that the format readers open."""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import sys
import tempfile
from typing import IO, cast

from repalign.errors import InputError
from repalign.io.selector import STDIN

_CHUNK = 1 << 20


class Shown(str):
    """The private copy's path (what a reader opens) that shows as the input's name in messages.

    Readers open ``self.path`` and put it in their messages with f-strings: the str value is the copy,
    ``format``/``str`` give the name the user typed.
    """

    shown: str

    def __new__(cls, path: str, shown: str) -> Shown:
        out = super().__new__(cls, path)
        out.shown = shown
        return out

    def __str__(self) -> str:
        return self.shown

    def __format__(self, spec: str) -> str:
        return format(self.shown, spec)


_DIR: str | None = None
_COPIES: dict[tuple[object, ...], tuple[Shown, object]] = {}
"""Each copy by what it was read from, with that stream kept alive (so an in-memory stream's id is not reused)."""


def _folder() -> str:
    global _DIR
    if _DIR is None:
        _DIR = tempfile.mkdtemp(prefix="repalign-stdin-")  # mode 0700: private to this user
        atexit.register(shutil.rmtree, _DIR, True)
    return _DIR


def _identity(base: str, stream: IO[bytes] | None) -> tuple[object, ...]:
    """What tells one pipe (or one standard input) from another: a pipe can be read once, so it is copied once."""
    try:
        st = os.fstat(stream.fileno()) if stream is not None else os.stat(base)
        return (base, st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode))
    except (OSError, AttributeError, ValueError):  # an in-memory stream (a test runner's stdin)
        return (base, id(stream))


def _is_terminal(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def spooled(path: str, base: str) -> Shown:
    """The private copy of standard input (``base`` '-') or of the pipe ``base``, read once to the end."""
    if base == STDIN:
        stream = cast("IO[bytes] | None", getattr(sys.stdin, "buffer", sys.stdin))  # bytes; a test's may be text
        if stream is None:
            raise InputError("standard input is closed ('-' reads it)")
        if _is_terminal(stream):
            raise InputError("standard input is a terminal; pipe the file in ('-' reads standard input)")
        name, empty = "standard input", "standard input is empty (nothing was piped to '-')"
    else:
        stream, name, empty = None, base, f"{base}: empty (nothing was written to it)"
    key = _identity(base, stream)
    kept = _COPIES.get(key)
    if kept is not None and os.path.exists(kept[0]):
        return kept[0]
    fd, target = tempfile.mkstemp(dir=_folder(), suffix=".input")
    try:
        with os.fdopen(fd, "wb") as out:
            if stream is not None:
                shutil.copyfileobj(stream, out, _CHUNK)
            else:
                with open(base, "rb") as src:  # a pipe: read to its end, as the user asked with '@FORMAT'
                    shutil.copyfileobj(src, out, _CHUNK)
    except OSError as exc:
        os.unlink(target)
        raise InputError(f"{name}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if os.path.getsize(target) == 0:
        os.unlink(target)
        raise InputError(empty)
    copy = Shown(target, name)
    _COPIES[key] = (copy, stream)
    return copy
