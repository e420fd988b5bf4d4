"""The PyTorch reader: torch.load with weights_only=True and mmap=True only (never a full unpickle)."""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from repalign.errors import InputError
from repalign.io.base import FileReader, Stamp
from repalign.io.protocol import ArrayInfo

EXTRA_HINT = "pip install 'repalign[torch]'"

_FLOATS = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
"""Floating-point tensor types repalign reads, with their bytes per value (bfloat16 has no numpy type)."""

FEATS = "feats"
"""platonic-rep's feature files hold their n×L×d features under this key (next to num_params, mask, ...)."""


@dataclass(frozen=True)
class TorchInfo(ArrayInfo):
    """An entry of a .pt file; its dtype is torch's name, so bfloat16 counts as floating point here."""

    @property
    def layered(self) -> bool:
        return len(self.shape) == 3 and self.dtype in _FLOATS


def _torch(path: str) -> Any:
    try:
        import torch
    except ImportError:
        raise InputError(f"{path}: reading PyTorch files needs torch: {EXTRA_HINT}") from None
    return torch


def _dtype_name(tensor: Any) -> str:
    return str(tensor.dtype).removeprefix("torch.")


class TorchReader(FileReader):
    """A .pt/.pth file: a tensor (named '' in listings) or a dict of them, nested keys joined by '/'.

    The file is loaded with ``torch.load(weights_only=True, mmap=True)``: torch's restricted unpickler
    refuses anything but tensors and plain containers (so no code in the file ever runs), and mmap maps the
    tensors' storage without reading it. Torch has no header-only read, so the listing is this load (no data
    page is touched); the memory plan comes from the tensors' shapes.
    """

    format = "torch"
    member = "entry"

    def __init__(self, path: str, stamp: Stamp = ()):
        super().__init__(path, stamp)
        self._entries: dict[str, Any] | None = None
        """Every listed entry by key: the mapped tensors (and id lists), kept from the listing."""

    def _load(self) -> Any:
        torch = _torch(self.path)
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap can only be used" not in str(exc):
                raise
            raise InputError(f"{self.path}: not a torch.save zip archive (the format since torch 1.6, which "
                             "repalign needs to map the file without reading it)") from None
        except pickle.UnpicklingError as exc:
            found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", str(exc))
            what = f" ({found.group(1)})" if found else ""
            raise InputError(f"{self.path}: holds pickled Python objects{what}, not only tensors and plain "
                             "containers; refused (repalign loads .pt files with torch.load(weights_only=True) "
                             "and never runs code from a file)") from None

    def _scan(self) -> list[ArrayInfo]:
        torch = _torch(self.path)
        entries: dict[str, Any] = {}
        out: list[ArrayInfo] = []

        def walk(name: str, obj: Any) -> None:
            if isinstance(obj, torch.Tensor):
                dtype = _dtype_name(obj)
                shape = tuple(int(s) for s in obj.shape)
                entries[name] = obj
                out.append(TorchInfo(name, shape, dtype, len(shape) == 2 and dtype in _FLOATS))
            elif isinstance(obj, dict):
                for k, v in obj.items():
                    walk(f"{name}/{k}" if name else str(k), v)
            elif isinstance(obj, (list, tuple)) and obj and all(isinstance(v, str) for v in obj):
                entries[name] = np.asarray(list(obj), dtype=str)
                out.append(TorchInfo(name, (len(obj),), "str", False))
            elif isinstance(obj, (list, tuple)) and obj and all(type(v) is int for v in obj):
                entries[name] = np.asarray(list(obj), dtype=np.int64)
                out.append(TorchInfo(name, (len(obj),), "int64", False))
            elif isinstance(obj, (list, tuple)):
                for i, v in enumerate(obj):
                    walk(f"{name}/{i}" if name else str(i), v)
            else:  # a number, string or None stored next to the tensors (platonic-rep's num_params): listed only
                out.append(TorchInfo(name, (), type(obj).__name__, False))

        walk("", self._load())
        self._entries = entries
        return out

    def choose(self, key: str | None, what: str | None = None) -> ArrayInfo:
        if key is None:  # platonic-rep's layout: the features are under 'feats', whatever else the dict holds
            feats = [i for i in self.arrays() if i.name == FEATS and (i.embedding_like or i.layered)]
            if feats:
                return feats[0]
        return super().choose(key, what)

    def _tensor(self, key: str | None) -> tuple[Any, str]:
        info = self.choose(key)
        self.arrays()
        assert self._entries is not None  # set by the listing
        where = f"{self.path}:{info.name}" if info.name else self.path
        if info.name not in self._entries:
            raise InputError(f"{where}: is a {info.dtype}, not a tensor")
        return self._entries[info.name], info.name

    def _read(self, key: str | None, layer: int | None, allow_external: bool) -> tuple[np.ndarray, str | None]:
        torch = _torch(self.path)
        tensor, name = self._tensor(key)
        where = f"{self.path}:{name}" if name else self.path
        if not isinstance(tensor, torch.Tensor):
            kind = "strings" if tensor.dtype.kind == "U" else "integers"
            raise InputError(f"{where}: is a list of {kind} (usable as ids), not a tensor of embeddings")
        tensor = tensor.detach()  # saved with requires_grad: the values are all we need
        if layer is not None:
            tensor = tensor[:, layer, :]
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16; widened exactly (the engine notes it)
            tensor = tensor.to(torch.float32)
        try:
            array = tensor.numpy()
        except TypeError as exc:  # float8, quantized and other types numpy cannot hold
            raise InputError(f"{where}: tensor of type {_dtype_name(tensor)} is not supported ({exc})") from None
        # A layer is a strided view of the mapped storage: copied out contiguous, as every reader returns it.
        return (array if layer is None else np.ascontiguousarray(array)), name or None

    def _read_ids(self, key: str) -> np.ndarray:
        torch = _torch(self.path)
        tensor, _ = self._tensor(key)
        if isinstance(tensor, torch.Tensor):
            return np.asarray(tensor.detach().numpy())
        return np.asarray(tensor)

    def stored_bytes(self, key: str | None) -> int | None:
        self.arrays()
        return 0  # memory-mapped

    def _footprint(self, info: ArrayInfo, n: int) -> tuple[int, int, int] | None:
        d = info.shape[-1]
        itemsize = _FLOATS.get(info.dtype)
        if d is None or itemsize is None:
            return None
        # Mapped: a 2-D tensor is used in place; a layer is copied out (bfloat16 is widened, counted by describe).
        return d, itemsize, n * d * itemsize if len(info.shape) == 3 else 0
