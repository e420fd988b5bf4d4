"""The FAISS index reader: listed from the index header, vectors read back only from indexes that store them exactly."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from repalign.errors import InputError
from repalign.io.base import FileReader
from repalign.io.protocol import ArrayInfo

# The fourcc that starts every index file (faiss/impl/index_read.cpp), by what we can do with it.
EXACT = {b"IxFI": "IndexFlatIP", b"IxF2": "IndexFlatL2", b"IxFl": "IndexFlat", b"IwFl": "IndexIVFFlat",
         b"IHNf": "IndexHNSWFlat"}
LOSSY = {b"IxPq": "IndexPQ", b"IxSQ": "IndexScalarQuantizer", b"IwPQ": "IndexIVFPQ", b"IwSq": "IndexIVFScalarQuantizer",
         b"IvPQ": "IndexIVFPQ", b"IvSQ": "IndexIVFScalarQuantizer", b"IwPR": "IndexIVFPQR",
         b"IHNp": "IndexHNSWPQ", b"IHNs": "IndexHNSWSQ", b"IxHe": "IndexLSH", b"IxHE": "IndexLSH",
         b"IPfs": "IndexPQFastScan", b"IwPf": "IndexIVFPQFastScan", b"IxRq": "IndexResidualQuantizer",
         b"IxLS": "IndexLocalSearchQuantizer", b"IwRq": "IndexIVFResidualQuantizer",
         b"IwLS": "IndexIVFLocalSearchQuantizer", b"IxPR": "IndexProductResidualQuantizer",
         b"IxPL": "IndexProductLocalSearchQuantizer", b"ImRQ": "IndexResidualQuantizerFastScan",
         b"IHc2": "IndexHNSWCagra"}
OTHER = {b"IxMp": "IndexIDMap", b"IxM2": "IndexIDMap2", b"IxPT": "IndexPreTransform", b"IxRF": "IndexRefineFlat",
         b"IxRf": "IndexRefine", b"INSf": "IndexNSGFlat", b"IwFd": "IndexIVFFlatDedup", b"IxSh": "IndexShards",
         b"IxSC": "IndexShards"}
_BINARY = (b"IBxF", b"IBwF", b"IBHf", b"IBHh", b"IBMp", b"IBM2", b"IBFf")

_HINT = "export the vectors themselves (e.g. numpy.save of the array added to the index) or an IndexFlat"


def index_header(path: str) -> tuple[bytes, int, int]:
    """(fourcc, d, ntotal) from the first bytes of an index file, nothing else read."""
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) < 16:
        raise InputError(f"{path}: too short for a FAISS index ({len(head)} bytes)")
    fourcc = head[:4]
    if fourcc in _BINARY:
        raise InputError(f"{path}: a binary FAISS index (bit codes, not float vectors); repalign compares float "
                         "embeddings")
    if fourcc not in EXACT and fourcc not in LOSSY and fourcc not in OTHER:
        raise InputError(f"{path}: not a FAISS index file this version knows (starts with {fourcc!r})")
    d, ntotal = struct.unpack("<iq", head[4:16])  # read_index_header: int d, int64 ntotal
    if d <= 0 or ntotal < 0:
        raise InputError(f"{path}: FAISS header declares d={d}, ntotal={ntotal}")
    return fourcc, d, ntotal


class FaissReader(FileReader):
    """A FAISS index file: one array named '' in listings, the ntotal vectors in the order of their ids."""

    format = "faiss"
    member = "array"

    def _scan(self) -> list[ArrayInfo]:
        fourcc, d, n = index_header(self.path)
        if fourcc in EXACT:
            return [ArrayInfo("", (n, d), "float32", True)]
        kind = "lossy codes" if fourcc in LOSSY else "not read"
        return [ArrayInfo("", (n, d), f"{_name(fourcc)} ({kind})", False)]

    def choose(self, key: str | None, what: str | None = None) -> ArrayInfo:
        if key is not None:
            raise InputError(f"{self.path}: a FAISS index holds one set of vectors; remove the ':{key}' key")
        return self.arrays()[0]

    def _read(self, key: str | None, layer: int | None, allow_external: bool) -> tuple[np.ndarray, str | None]:
        import faiss

        self.choose(key)
        fourcc, d, n = index_header(self.path)
        name = _name(fourcc)
        if fourcc in LOSSY:
            raise InputError(f"{self.path}: {name} stores compressed (lossy) codes, not the vectors, so the scores "
                             f"would be of approximations; {_HINT}")
        if fourcc not in EXACT:
            raise InputError(f"{self.path}: {name} is not read (only IndexFlat L2/IP, IndexIVFFlat and "
                             f"IndexHNSWFlat, whose vectors are stored exactly and numbered 0..n-1); {_HINT}")
        index = faiss.read_index(self.path)
        if index.ntotal != n or index.d != d:
            raise InputError(f"{self.path}: header says {n}×{d} but the index holds {index.ntotal}×{index.d}")
        if fourcc == b"IwFl":
            return _ivf_vectors(self.path, index, allow_external), None
        return np.ascontiguousarray(index.reconstruct_n(0, n), dtype=np.float32).reshape(n, d), None

    def _read_ids(self, key: str) -> np.ndarray:
        raise InputError(f"{self.path}: a FAISS index numbers its vectors 0..n-1 and holds no ids")

    def _footprint(self, info: ArrayInfo, n: int) -> tuple[int, int, int] | None:
        d = info.shape[-1]
        if d is None:
            return None
        return d, 4, 2 * n * d * 4 + n * 8  # the index as loaded and the copy read out (IVF: plus its ids)


def _name(fourcc: bytes) -> str:
    return EXACT.get(fourcc) or LOSSY.get(fourcc) or OTHER.get(fourcc) or repr(fourcc)


def _ivf_vectors(path: str, index: Any, allow_external: bool) -> np.ndarray:
    """The vectors of an IndexIVFFlat in id order, straight from its inverted lists; the ids must be 0..n-1."""
    import faiss

    ivf: Any = faiss.extract_index_ivf(index)
    lists: Any = faiss.downcast_InvertedLists(ivf.invlists)
    if isinstance(lists, faiss.OnDiskInvertedLists) and not allow_external:
        # faiss has only mapped the other file so far; nothing of it is read unless allowed, as for HDF5 links
        raise InputError(f"{path}: its inverted lists are stored in another file ({lists.filename}); refused, "
                         "since it would read another file (pass --allow-external to permit it)")
    n, d = int(ivf.ntotal), int(ivf.d)
    out = np.empty((n, d), dtype=np.float32)
    seen = np.zeros(n, dtype=bool)
    code_size = int(lists.code_size)
    if code_size != 4 * d:
        raise InputError(f"{path}: inverted lists hold {code_size}-byte codes, not {d} float32 values")
    for j in range(int(lists.nlist)):
        size = int(lists.list_size(j))
        if size == 0:
            continue
        ids = faiss.rev_swig_ptr(lists.get_ids(j), size).copy()
        codes = faiss.rev_swig_ptr(lists.get_codes(j), size * code_size).copy().view(np.float32).reshape(size, d)
        bad = (ids < 0) | (ids >= n)
        if bad.any():
            raise InputError(f"{path}: IndexIVFFlat holds id {int(ids[bad][0])}, outside 0..{n - 1}: vectors added "
                             "with their own ids (add_with_ids) have no row order to compare by")
        if seen[ids].any() or np.unique(ids).size != ids.size:
            raise InputError(f"{path}: IndexIVFFlat holds an id twice, so its ids are not 0..{n - 1}")
        seen[ids] = True
        out[ids] = codes
    if not seen.all():
        raise InputError(f"{path}: IndexIVFFlat ids are not 0..{n - 1} (id {int(np.flatnonzero(~seen)[0])} is "
                         "missing)")
    return out
