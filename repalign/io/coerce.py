"""Anything array-like a notebook holds → a numpy array for the library's in-memory inputs.

Accepted: numpy arrays, objects with ``__array__`` or ``__dlpack__``, torch tensors (detached; bfloat16 widened
to float32 with a note), pandas / polars Series whose cells are lists or arrays (stacked into n×d), and lists of
lists. torch, pandas and polars are never imported unless the object comes from them.
"""

from __future__ import annotations

import numpy as np

from repalign.errors import InputError


def as_array(x: object, label: str) -> tuple[np.ndarray, list[str]]:
    """``x`` as a numpy array, and the notes on any conversion; ``label`` names the input in errors ("array a")."""
    if isinstance(x, np.ndarray):
        return x, []
    module = type(x).__module__ or ""
    if module.startswith("torch"):
        return _torch(x, label)
    if (module.startswith("pandas") or module.startswith("polars")) and type(x).__name__ == "Series":
        return _series(x, label), []
    if isinstance(x, (list, tuple)):
        return _stack(list(x), label), []
    if hasattr(x, "__array__"):
        return _numpy(lambda: np.asarray(x), label), []
    if hasattr(x, "__dlpack__"):
        return _numpy(lambda: np.from_dlpack(x), label), []
    raise InputError(f"{label}: a {type(x).__name__} is not an array (give a numpy array, a tensor, a Series "
                     "of vectors, a list of lists or a file path)")


def _numpy(convert, label: str) -> np.ndarray:
    try:
        return np.asarray(convert())
    except (TypeError, ValueError, RuntimeError, BufferError) as exc:
        raise InputError(f"{label}: cannot be read as an array ({_one_line(exc)})") from None


def _torch(x: object, label: str) -> tuple[np.ndarray, list[str]]:
    import torch

    if not isinstance(x, torch.Tensor):
        return _numpy(lambda: np.asarray(x), label), []
    t = x.detach()
    notes = []
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16; every bfloat16 value is exact in float32
        t = t.float()
        notes.append(f"{label}: bfloat16 values widened to float32")
    if t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{label}: a {str(t.dtype).removeprefix('torch.')} tensor is not an embedding")
    return _numpy(lambda: t.cpu().resolve_conj().resolve_neg().numpy(), label), notes


def _series(x, label: str) -> np.ndarray:
    values = x.to_numpy()
    if values.dtype != object:
        return np.asarray(values)  # numeric cells (one value per item), or polars' fixed-size Array: n×d already
    return _stack(list(values), label)


def _stack(cells: list, label: str) -> np.ndarray:
    """Cells that are vectors (or lists of lists) → one array; ragged cells are an error."""
    if not cells:
        raise InputError(f"{label}: empty (no items)")
    if all(_is_scalar(c) for c in cells):
        return _numpy(lambda: np.asarray(cells), label)
    try:
        rows = [np.asarray(c.to_numpy() if hasattr(c, "to_numpy") else c) for c in cells]
    except (TypeError, ValueError) as exc:
        raise InputError(f"{label}: its items cannot be read as vectors ({_one_line(exc)})") from None
    shapes = {r.shape for r in rows}
    if len(shapes) > 1:
        lengths = sorted({r.shape[0] if r.ndim else 0 for r in rows})
        raise InputError(f"{label}: ragged: its items have different lengths ({_few(lengths)}); every item needs "
                         "a vector of the same dimension")
    if any(r.dtype == object for r in rows):
        raise InputError(f"{label}: ragged or non-numeric items; every item needs a vector of numbers")
    return np.stack(rows)


def _is_scalar(c) -> bool:
    return isinstance(c, (int, float, complex, bool, np.generic)) or c is None


def _few(values: list) -> str:
    return ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
