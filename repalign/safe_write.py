"""Output files: checked before any work (suffix, folder, never an input), then written atomically."""

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


def _check_plot_path(path: str | None) -> None:
    """Refuse a --plot file we could not write before any work is done."""
    if path is None:
        return
    from pathlib import Path

    from repalign.report import PLOT_SUFFIXES

    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_SUFFIXES:
        raise UsageError(f"{path}: --plot writes .png, .svg or .pdf (got '{suffix or '(none)'}')")
    _check_folder(path, "the plot")


def _check_folder(path: str, what: str) -> None:
    """The folder exists and ``path`` in it can be written (not a directory, not read-only)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{path}: cannot write {what} (no directory {folder})")
    if os.path.isdir(path):
        raise UsageError(f"{path}: cannot write {what} (it is a directory)")
    # As the shell's > would: a file or folder we may not write is refused now, not after the work.
    if not os.access(folder, os.W_OK) or os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError(f"{path}: cannot write {what} (permission denied)")


def _input_path(selector: str) -> str:
    """The file part of PATH, PATH:KEY or PATH@FORMAT[:KEY], split as the reader splits it (see
    repalign.io.parse_selector and split_format)."""
    from repalign.io.selector import split_format

    if os.path.exists(selector):
        return selector
    head = selector.rsplit(":", 1)[0] if ":" in selector else selector
    if not (head and os.path.exists(head)):
        head = selector
    base = split_format(head)[0]
    return base if os.path.exists(base) else head


def _same_file(p: str, q: str) -> bool:
    """The same file: same device and inode when both exist (catches hard links), else the same real path."""
    try:
        return os.path.samefile(p, q)
    except OSError:
        return os.path.realpath(p) == os.path.realpath(q)


def check_outputs(inputs: list[str], baseline: str | None = None, *, output: str | None,
                  plot: str | None) -> None:
    """Before any work: the output files have known suffixes, can be written, and overwrite nothing we read."""
    from repalign import report

    if output is not None:
        report.output_format(output)
        _check_folder(output, "the report")
    _check_plot_path(plot)
    kept = [("the input", _input_path(i)) for i in inputs] + ([("the --baseline file", baseline)] if baseline else [])
    for option, path in (("--output", output), ("--plot", plot)):
        if path is None:
            continue
        for what, other in kept:
            if _same_file(path, other):
                raise UsageError(f"{path}: {option} would overwrite {what} {other}; choose another file")
        kept.append((f"the {option} file", path))
