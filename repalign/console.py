"""The terminal side of the CLI: stdout and stderr that may be closed, full, broken or ASCII; the spinner."""

from __future__ import annotations

import os
import sys
from typing import Literal, cast

from repalign.errors import UsageError
from repalign.text import for_stream, no_color, shown

ColorSystemName = Literal["auto", "standard", "256", "truecolor", "windows"]


def err(line: str) -> None:
    """One line on stderr, escaped and in an encoding it takes; silence when stderr itself is gone."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(for_stream(shown(line), stream) + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


class Progress:
    """A spinner on stderr for work that takes longer than a second, only on a terminal, never with NO_COLOR."""

    def __init__(self, quiet: bool, always: bool = False):
        import threading

        # always: the library's progress=True, where stderr may be a notebook's rather than a terminal.
        enabled = not quiet and not no_color() and sys.stderr is not None and (always or sys.stderr.isatty())

        self.stage = "working"
        self.status = None
        self.timer = threading.Timer(1.0, self._show) if enabled else None
        if self.timer:
            self.timer.daemon = True
            self.timer.start()

    def _show(self):
        from rich.console import Console

        from repalign.text import ascii_only

        # The default spinner is drawn in braille; a terminal that takes only ASCII gets - \\ | /.
        spinner = "line" if ascii_only(sys.stderr) else "dots"
        self.status = Console(stderr=True).status(self.stage, spinner=spinner)
        self.status.start()

    def __call__(self, stage: str):
        self.stage = stage
        if self.status is not None:
            self.status.update(stage)

    def close(self):
        if self.timer:
            self.timer.cancel()
        if self.status is not None:
            self.status.stop()


def render(renderable) -> str:
    """A rich renderable as the text stdout gets: colour only on a terminal, none at all with NO_COLOR."""
    import io

    from rich.console import Console

    # rich decides colour and width for stdout; the text is then written by _emit, which handles a stdout
    # that fails. Names are data: no markup, emoji codes or highlighting are read into them. Off a terminal
    # rich would assume 80 columns and wrap the table; a log or a pipe has room for the whole row.
    from repalign.report.table import Fitted
    from repalign.text import ascii_only, ascii_renderable

    if ascii_only(sys.stdout):
        # A report fitted to the width converts each part before measuring it: ASCII changes widths (± is +/-).
        if isinstance(renderable, Fitted):
            renderable.convert = ascii_renderable
        else:
            renderable = ascii_renderable(renderable)
    probe = Console(file=sys.stdout)
    terminal = probe.is_terminal
    # rich's own NO_COLOR handling keeps bold and dim; otherwise the colours rich found for the real stdout.
    colours = None if no_color() else cast(ColorSystemName, probe.color_system)
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=terminal, color_system=colours,
                      width=probe.width if terminal else 120, markup=False, emoji=False, highlight=False)
    console.print(renderable)
    return buffer.getvalue()


def emit(text_or_renderable, is_json: bool = False) -> None:
    """Write the result to stdout; a closed, full or broken stdout is an error (exit 2), not a traceback."""
    out = sys.stdout
    if out is None:
        raise UsageError("cannot write to standard output (it is closed)")
    text = text_or_renderable if isinstance(text_or_renderable, str) else render(text_or_renderable)
    if is_json:
        from repalign.text import ascii_only, json_ascii

        # For an ASCII stream, JSON's own escapes keep the document valid and the data exact.
        text = json_ascii(text) if ascii_only(out) else text
    try:
        _write_all(out, for_stream(text, out))
    except (OSError, ValueError) as exc:
        _discard_stdout()
        raise UsageError(f"cannot write to standard output ({getattr(exc, 'strerror', None) or exc})") from None


def _write_all(out, text: str) -> None:
    """Write and flush every byte. An unbuffered stdout (python -u, PYTHONUNBUFFERED) may take a large write
    in part when the reader goes away, and its text layer would drop the rest without an error."""
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(text)
        out.flush()
        return
    out.flush()
    view = memoryview(text.encode(out.encoding or "utf-8", out.errors or "strict"))
    while view:
        written = buffer.write(view)
        if written is None:  # a non-blocking stdout that is full: wait until it takes more
            import select

            select.select([], [buffer], [])
            continue
        view = view[written:]
    buffer.flush()


def _discard_stdout() -> None:
    """Point fd 1 at /dev/null, so Python's final flush of what is left does not fail again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that every ``finally`` (temporary files) runs."""


def on_sigterm(signum, frame):
    raise Terminated


def reserve_std_fds() -> None:
    """Put /dev/null on a closed fd 0, 1 or 2, so no file we open takes its place and receives stray output.

    Python has already set sys.stdout (or stderr) to None for a closed descriptor, so writing
    the result still fails as it should.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # takes the lowest free descriptor: this one
