"""Every row's approximate neighbours under IVF-Flat semantics, scanned list by list with matrix products.

An IVF-Flat index answers a query by scoring it exactly against the rows of its ``nprobe`` nearest inverted
lists. When the queries are the indexed rows themselves (a k-NN graph, which is all repalign asks), the
scan can be turned around: for each list, every query that probes it is scored against the list's rows in
one matrix product (FAISS's brute-force ``knn``). The candidates and their float32 scores are those of
``faiss.IndexIVFFlat`` with the same centroids and ``nprobe`` (a test checks this); the arithmetic runs at
GEMM speed instead of one query at a time.
"""

from __future__ import annotations

import numpy as np

from repalign.neighbors import blas_pays, faiss_path

# Scores formed at once (queries × rows of one list), so a huge list cannot allocate a huge block.
_SCORE_BLOCK = 1 << 23
_NO_ROW = np.iinfo(np.int64).max


# Query rows per coarse-quantizer search.
_PROBE_BLOCK = 1 << 16


def probes(Xf: np.ndarray, centroids: np.ndarray, nprobe: int, l2: bool, rows: np.ndarray | None = None
           ) -> np.ndarray:
    """(q, nprobe) the lists each of ``rows`` (default all) probes, nearest first; column 0 is the list a
    stored row belongs to.

    The coarse quantizer is FAISS's flat index, as inside IndexIVFFlat.
    """
    import faiss

    q = faiss.IndexFlatL2(centroids.shape[1]) if l2 else faiss.IndexFlatIP(centroids.shape[1])
    q.add(np.ascontiguousarray(centroids, dtype=np.float32))
    count = Xf.shape[0] if rows is None else rows.size
    out = np.empty((count, nprobe), dtype=np.int64)
    with faiss_path(blas=True):  # large calls: a shard's rows get the whole layer's probes
        for s in range(0, count, _PROBE_BLOCK):
            block = Xf[s : s + _PROBE_BLOCK] if rows is None else Xf[rows[s : s + _PROBE_BLOCK]]
            out[s : s + _PROBE_BLOCK] = q.search(np.ascontiguousarray(block), nprobe)[1]
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
    _scan(Xf, queries, members, mstart, pairs, qstart, nprobe, m, l2, best_s, best_i)
    return _finish(best_s, best_i, queries, depth)


def _scan(Xf: np.ndarray, queries: np.ndarray, members: np.ndarray, mstart: np.ndarray, pairs: np.ndarray,
          qstart: np.ndarray, nprobe: int, m: int, l2: bool, best_s: np.ndarray, best_i: np.ndarray) -> None:
    """Score every query against the rows of each list it probes, one list at a time, into the running best.

    A list's scores come from one FAISS code path, chosen from the list alone (about nprobe × its size rows
    probe it over the whole layer): BLAS for large lists, per-pair SIMD for small ones, as FAISS itself would
    choose for the whole layer's calls. Chosen from the queries of this call instead, a shard of the query
    rows would score some pairs on the other path than the whole layer, and round them otherwise.
    """
    d = Xf.shape[1]
    for c in range(mstart.size - 1):
        rows = members[mstart[c] : mstart[c + 1]]
        slots = pairs[qstart[c] : qstart[c + 1]] // nprobe  # positions in ``queries``
        if rows.size == 0 or slots.size == 0:
            continue
        base = np.ascontiguousarray(Xf[rows])
        step = max(1, _SCORE_BLOCK // rows.size)
        with faiss_path(blas=blas_pays(nprobe * rows.size, d)):
            for q0 in range(0, slots.size, step):
                qs = slots[q0 : q0 + step]
                s, found = _block_best(np.ascontiguousarray(Xf[queries[qs]]), base, min(m, rows.size), l2)
                _merge(best_s, best_i, qs, s, rows[found])


def _block_best(q: np.ndarray, base: np.ndarray, m: int, l2: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each query's best ``m`` rows of ``base`` with their float32 scores (larger = closer), by FAISS's brute
    force (one matrix product and a selection in C++, as inside its flat index)."""
    import faiss

    D, found = faiss.knn(q, base, m, metric=faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT)
    return (-D if l2 else D), found


def _merge(best_s: np.ndarray, best_i: np.ndarray, qs: np.ndarray, s: np.ndarray, cand: np.ndarray) -> None:
    """Fold one block's best candidates into the queries' running best (as many as ``best_s`` has columns)."""
    m = best_s.shape[1]
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
