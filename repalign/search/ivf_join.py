"""Every row's approximate neighbours under IVF-Flat semantics, scanned list by list with matrix products.

An IVF-Flat index answers a query by scoring it exactly against the rows of its ``nprobe`` nearest inverted
lists. When the queries are the indexed rows themselves (a k-NN graph, which is all repalign asks), the
scan can be turned around: for each list, every query that probes it is scored against the list's rows in
one matrix product. The candidates and their float32 scores are those of ``faiss.IndexIVFFlat`` with the
same centroids and ``nprobe`` (a test checks this); the arithmetic runs at GEMM speed instead of one
query at a time.
"""

from __future__ import annotations

import numpy as np

from repalign.linalg import matmul

# Scores formed at once (queries × rows of one list), so a huge list cannot allocate a huge block.
_SCORE_BLOCK = 1 << 23
_NO_ROW = np.iinfo(np.int64).max


def probes(Xf: np.ndarray, centroids: np.ndarray, nprobe: int, l2: bool) -> np.ndarray:
    """(n, nprobe) the lists each row probes, nearest first; column 0 is the list a stored row belongs to.

    The coarse quantizer is FAISS's flat index, as inside IndexIVFFlat.
    """
    import faiss

    q = faiss.IndexFlatL2(centroids.shape[1]) if l2 else faiss.IndexFlatIP(centroids.shape[1])
    q.add(np.ascontiguousarray(centroids, dtype=np.float32))
    out = np.empty((Xf.shape[0], nprobe), dtype=np.int64)
    for s in range(0, Xf.shape[0], 1 << 16):
        out[s : s + (1 << 16)] = q.search(np.ascontiguousarray(Xf[s : s + (1 << 16)]), nprobe)[1]
    return out


def _groups(keys: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions sorted by key (stable) and where each key's run starts: group g is order[start[g]:start[g+1]]."""
    order = np.argsort(keys, kind="stable")
    return order, np.searchsorted(keys[order], np.arange(count + 1))


def ivf_lists(Xf: np.ndarray, assign: np.ndarray, queries: np.ndarray, probe: np.ndarray, nlist: int, depth: int,
              l2: bool) -> tuple[np.ndarray, np.ndarray]:
    """The ``depth`` best other rows of each query row among the rows of the lists it probes.

    Parameters
    ----------
    Xf : (n, d) float32 rows as the index stores them (L2-normalised for cosine).
    assign : (n,) the list each row is stored in (its nearest centroid: column 0 of :func:`probes`).
    queries : (q,) the rows whose lists are wanted.
    probe : (q, nprobe) the lists each query probes (:func:`probes` of the query rows).
    nlist : number of lists.
    depth : neighbours per row, self excluded.
    l2 : rank by smallest squared L2 distance, else by largest inner product.

    Returns
    -------
    lists : (q, depth) int64, ordered by float32 score, ties by the smaller row index.
    short : (q,) bool, rows whose probed lists hold fewer than ``depth`` other rows (their lists are padded
        with 0 and must be searched another way).
    """
    q, nprobe = probe.shape
    m = depth + 1  # room for the row itself, removed at the end
    members, mstart = _groups(assign, nlist)
    pairs, qstart = _groups(probe.ravel(), nlist)
    best_s = np.full((q, m), -np.inf, dtype=np.float32)
    best_i = np.full((q, m), _NO_ROW, dtype=np.int64)
    sq = np.einsum("ij,ij->i", Xf, Xf) if l2 else None
    for c in range(nlist):
        rows = members[mstart[c] : mstart[c + 1]]
        slots = pairs[qstart[c] : qstart[c + 1]] // nprobe  # positions in ``queries``
        if rows.size == 0 or slots.size == 0:
            continue
        base = np.ascontiguousarray(Xf[rows].T)
        step = max(1, _SCORE_BLOCK // rows.size)
        for q0 in range(0, slots.size, step):
            qs = slots[q0 : q0 + step]
            s = matmul(np.ascontiguousarray(Xf[queries[qs]]), base)
            if l2:  # −‖x−y‖² up to the query's own ‖x‖², which does not change its order
                s = 2 * s - sq[rows]  # type: ignore[index]
            _merge(best_s, best_i, qs, s, rows, m)
    return _finish(best_s, best_i, queries, depth)


def _merge(best_s: np.ndarray, best_i: np.ndarray, qs: np.ndarray, s: np.ndarray, rows: np.ndarray, m: int) -> None:
    """Fold one block of candidate scores into the queries' running best ``m``."""
    if rows.size > m:
        keep = np.argpartition(-s, m - 1, axis=1)[:, :m]
        s, cand = np.take_along_axis(s, keep, axis=1), rows[keep]
    else:
        cand = np.broadcast_to(rows, s.shape)
    all_s = np.concatenate([best_s[qs], s], axis=1)
    all_i = np.concatenate([best_i[qs], cand], axis=1)
    # A partition, not a sort (the merge runs once per probed list): exact float32 ties at the cut are kept
    # in an order fixed by the data, not by index.
    keep = np.argpartition(-all_s, m - 1, axis=1)[:, :m]
    best_s[qs] = np.take_along_axis(all_s, keep, axis=1)
    best_i[qs] = np.take_along_axis(all_i, keep, axis=1)


def _finish(best_s: np.ndarray, best_i: np.ndarray, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop each row itself, order by score then index, and flag rows left with too few candidates."""
    own = best_i == queries[:, None]
    s = np.where(own, -np.inf, best_s)
    i = np.where(own, _NO_ROW, best_i)
    order = np.lexsort((i, -s), axis=1)[:, :depth]
    lists = np.take_along_axis(i, order, axis=1)
    short = (lists == _NO_ROW).any(axis=1)
    lists[short] = 0
    return lists, short
