"""The layers one file selector names (one array, an n×L×d stack, or a glob over arrays), read one at a time."""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field

import numpy as np

from repalign.errors import InputError
from repalign.io.base import FileReader, listing, literal
from repalign.io.protocol import ArrayInfo
from repalign.io.readers import check_not_empty, reader_for
from repalign.io.rows import RowSource
from repalign.io.selector import Selector, as_selector

_GLOB_CHARS = "*?["


def is_glob(key: str | None) -> bool:
    return key is not None and any(c in key for c in _GLOB_CHARS)


def natural_key(text: str) -> list[int | str]:
    """Sort key that puts layer_2 before layer_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class LayerSet:
    """The layers one selector names, read one at a time.

    Three layouts: a single n×d array (one layer, ``layered`` False); an n×L×d
    array, axis 1 being the layer (the paper's layout); or separate n×d arrays
    matched by a glob in the key, in natural order.
    """

    selector: Selector
    format: str
    key: str | None
    """The key as resolved: the array's name, or the glob."""
    keys: tuple[str | None, ...]
    """Per layer, the array it lives in."""
    indices: tuple[int | None, ...]
    """Per layer, its index along axis 1 (n×L×d layout), else None."""
    labels: tuple[str, ...]
    """Per layer, how reports name it: its index for n×L×d, its key for a glob."""
    shape: tuple[int | None, ...]
    """Shape as stored (for a glob: n×L×d as if stacked)."""
    stored_dtype: str
    layered: bool
    reader: FileReader = field(repr=False, compare=False)
    """The file's reader, listed already; holding it lets every later step reuse that listing."""
    allow_external: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def where(self) -> str:
        return self.selector.path if self.key is None else f"{self.selector.path}:{self.key}"

    def layer_name(self, i: int) -> str:
        """'file:key' for one layer, for messages."""
        if self.indices[i] is not None:
            return f"{self.where} layer {self.indices[i]}"
        return self.selector.path if self.keys[i] is None else f"{self.selector.path}:{self.keys[i]}"

    def read(self, i: int) -> np.ndarray:
        """Layer i as stored (before validation); only that layer is read where the format allows it."""
        array, _ = self.reader.read(self.keys[i], self.indices[i], self.allow_external)
        return array

    def rows(self, i: int) -> RowSource | None:
        """Layer i as a source of row blocks (None: its format is read whole)."""
        return self.reader.rows(self.keys[i], self.indices[i], self.allow_external)

    def select(self, spec: str | None) -> LayerSet:
        """The layers a --layer-a/--layer-b specification picks (None or 'all': every layer)."""
        if spec is None:
            return self
        if not self.layered:
            raise InputError(f"{self.where}: holds a single 2-D array, so it has no layers to select "
                             f"(--layer {spec})")
        pick = parse_layers(spec, len(self), self.where)
        return LayerSet(self.selector, self.format, self.key, tuple(self.keys[i] for i in pick),
                        tuple(self.indices[i] for i in pick), tuple(self.labels[i] for i in pick), self.shape,
                        self.stored_dtype, True, self.reader, self.allow_external)


def parse_layers(spec: str, count: int, where: str) -> list[int]:
    """Indices chosen by ``all``, an index (negative counts from the end), a slice ``0:12:2`` or a list ``1,3,-1``."""
    from repalign.errors import UsageError

    text = str(spec).strip()
    if text.lower() == "all":
        return list(range(count))
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if ":" in part:
                out.extend(_layer_slice(part, count, where))
            else:
                out.append(_layer_index(int(part), count, where))
        except ValueError:
            raise UsageError(f"--layer '{spec}': expected all, an index, a slice like 0:12:2 or a list like "
                             "1,3,-1") from None
    return list(dict.fromkeys(out))


def _layer_slice(part: str, count: int, where: str) -> list[int]:
    bits = [int(b) if b.strip() else None for b in part.split(":")]
    if len(bits) > 3 or bits[2:] == [0]:
        raise ValueError
    chosen = list(range(count))[slice(*bits)]
    if not chosen:
        raise InputError(f"{where}: layer slice '{part}' selects no layer ({count} layers)")
    return chosen


def _layer_index(i: int, count: int, where: str) -> int:
    if not -count <= i < count:
        raise InputError(f"{where}: layer {i} is out of range; it has {count} layer"
                         f"{'s' if count > 1 else ''} (0..{count - 1}, or -{count}..-1)")
    return i % count


def open_layers(selector: Selector | str | os.PathLike[str], allow_external: bool = False) -> LayerSet:
    """Resolve a selector to its layers without reading any values."""
    selector = as_selector(selector)
    path, key = selector.path, selector.key
    reader = reader_for(path)
    check_not_empty(path)
    infos = reader.arrays()
    if key is not None and is_glob(key) and literal(infos, key) is None:  # a key that exists is never a pattern
        return _glob_layers(selector, key, reader, infos, allow_external)
    info = reader.choose(key)
    name = info.name or None
    where = f"{path}{':' + info.name if info.name else ''}"
    if len(info.shape) == 3:  # a stack of layers (its dtype is checked layer by layer when read)
        count = info.shape[1]
        if count == 0 or count is None:
            raise InputError(f"{where}: has 0 layers (shape {info.shape})")
        return LayerSet(selector, reader.format, name, (name,) * count, tuple(range(count)),
                        tuple(str(i) for i in range(count)), info.shape, info.dtype, True, reader, allow_external)
    if len(info.shape) > 3:
        raise InputError(f"{where}: expected a 2-D array (n × d) or a 3-D stack of layers (n × layers × d), got "
                         f"shape {info.shape}")
    label = name or os.path.basename(path)
    return LayerSet(selector, reader.format, name, (name,), (None,), (label,), info.shape, info.dtype, False, reader,
                    allow_external)


def _glob_layers(selector: Selector, key: str, reader: FileReader, infos: list[ArrayInfo],
                 allow_external: bool) -> LayerSet:
    """The n×d arrays a glob matches, in natural order, as the layers of one input."""
    path = selector.path
    if reader.format == "npy":
        raise InputError(f"{path}: a .npy file holds one array; remove the ':{key}' pattern")
    pattern = key.strip("/")
    matched = sorted((i for i in infos if fnmatch.fnmatchcase(i.name, pattern)), key=lambda i: natural_key(i.name))
    if not matched:
        raise InputError(f"{path}: no array matches '{key}' (available: {listing(path, infos)})")
    for i in matched:
        if not i.embedding_like:
            raise InputError(f"{path}:{i.name} matches '{key}' but is not a 2-D floating-point array "
                             f"({i.describe()})")
    first = matched[0]
    for i in matched[1:]:
        if i.shape != first.shape and None not in i.shape + first.shape:
            raise InputError(f"{path}: layers matched by '{key}' differ in shape: {first.describe()} but "
                             f"{i.describe()}")
    n, d = first.shape
    names = tuple(i.name for i in matched)
    return LayerSet(selector, reader.format, key, names, (None,) * len(matched), names, (n, len(matched), d),
                    first.dtype, True, reader, allow_external)

