"""Text safe to show: names escaped onto one line, and ASCII for streams that cannot take Unicode."""

from __future__ import annotations

import codecs
import locale
import os
import unicodedata

# Our own symbols and their ASCII spellings; anything else non-ASCII is shown as a \x.. escape.
ASCII_SYMBOLS = {
    "×": "x", "—": "-", "–": "-", "−": "-", "±": "+/-", "≥": ">=", "≤": "<=", "≠": "!=", "≈": "~",
    "…": "...", "·": ".", "→": "->", "←": "<-", "✅": "[pass]", "❌": "[FAIL]", "²": "^2", "‖": "||",
    "π": "pi", "Σ": "sum", "α": "alpha", "β": "beta", "τ": "tau", "θ": "theta", "√": "sqrt", "∈": "in",
    "⟨": "<", "⟩": ">", "§": "section ",
}
_SAMPLE = "×—±≥…─│"


def shown(name: object) -> str:
    """``name`` on one line with nothing a terminal would act on.

    Control characters (newline, ESC...) become their escape sequences and bytes that were not
    valid UTF-8 (lone surrogates from the file system) become ``\\xff``, so a file name can neither
    break a line, colour the terminal nor forge another message.
    """
    text = str(name)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte the file system gave us that is not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return ch.encode("unicode_escape").decode("ascii")


def valid_unicode(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes of a file name) spelled out, so it encodes as UTF-8."""
    if not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        return text
    return "".join(_escape(ch) if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


def clean_tree(value):
    """Every string in a JSON-like tree passed through :func:`valid_unicode`."""
    if isinstance(value, str):
        return valid_unicode(value)
    if isinstance(value, dict):
        return {clean_tree(k): clean_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_tree(v) for v in value]
    return value


def _codeset_is_unicode() -> bool:
    """False in the C/POSIX locale: Python then writes UTF-8 anyway, but the terminal reads ASCII."""
    if os.environ.get("PYTHONIOENCODING") or os.environ.get("PYTHONUTF8"):
        return True  # the user chose the encoding explicitly
    try:
        codeset = locale.nl_langinfo(locale.CODESET)
    except (AttributeError, ValueError):  # no nl_langinfo (Windows)
        codeset = locale.getpreferredencoding(False)
    return codecs.lookup(codeset or "ascii").name.startswith("utf")


def ascii_only(stream) -> bool:
    """Whether ``stream`` needs ASCII: its encoding cannot write our symbols, or the locale is not Unicode."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        _SAMPLE.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return True
    return not _codeset_is_unicode()


def _ascii_char(ch: str) -> str:
    if ch in ASCII_SYMBOLS:
        return ASCII_SYMBOLS[ch]
    if "\u2500" <= ch <= "\u257f":  # box drawing: rich's table borders
        name = unicodedata.name(ch, "")
        if " AND " in name or "VERTICAL" not in name and "HORIZONTAL" not in name:
            return "+"  # corners and crossings
        if "VERTICAL" in name:
            return "|"
        return "=" if "DOUBLE" in name or "HEAVY" in name else "-"
    return ch.encode("ascii", "backslashreplace").decode("ascii")


def to_ascii(text: str) -> str:
    """``text`` in ASCII: our symbols spelled out, box lines drawn with - | +, anything else escaped."""
    if text.isascii():
        return text
    return "".join(ch if ch.isascii() else _ascii_char(ch) for ch in text)


def json_ascii(document: str) -> str:
    """A JSON document in ASCII: non-ASCII characters (only ever inside strings) as JSON \\u escapes."""
    import json
    import re

    return re.sub(r"[^\x00-\x7f]", lambda m: json.dumps(m.group())[1:-1], document)


def for_stream(text: str, stream) -> str:
    """``text`` as ``stream`` can take it: valid Unicode, and ASCII where the stream or locale needs it."""
    text = valid_unicode(text)
    return to_ascii(text) if ascii_only(stream) else text


def no_color() -> bool:
    """NO_COLOR (https://no-color.org): any non-empty value switches every escape code off."""
    return bool(os.environ.get("NO_COLOR"))


def ascii_renderable(renderable):
    """A rich table or group with its text in ASCII before rich lays it out, so the columns stay aligned."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    if isinstance(renderable, str):
        return to_ascii(renderable)
    if isinstance(renderable, Text):
        return Text(to_ascii(renderable.plain), style=renderable.style, justify=renderable.justify)
    if isinstance(renderable, Group):
        renderable._renderables = [ascii_renderable(r) for r in renderable._renderables]
    elif isinstance(renderable, Table):
        renderable.title = ascii_renderable(renderable.title) if renderable.title else renderable.title
        for column in renderable.columns:
            column.header = ascii_renderable(column.header)
            column._cells = [ascii_renderable(c) for c in column._cells]
    return renderable
