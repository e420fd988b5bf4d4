"""Approximate neighbour lists from a FAISS inverted-file index (IndexIVFFlat), nprobe tuned to a recall target.

The lists are not certified: they are whatever the index returns, ordered by FAISS's float32 scores (ties by
the smaller index). What they cost in accuracy is measured on every run instead (:mod:`.accuracy`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

# k-means training rows per list: FAISS warns below 39 and gains little above ~40.
TRAIN_PER_LIST = 40
MIN_TRAIN_PER_LIST = 39
# k-means iterations (FAISS's default is 25; 10 already places centroids well enough for search, and
# training is then a small share of the run at n = 200,000).
KMEANS_ITER = 10
# Query rows whose exact lists measure the accuracy of the approximate ones (reported).
SAMPLE_ROWS = 1000
# Query rows, disjoint from the measuring sample when n allows, on which nprobe is tuned (so the reported
# recall is not the one nprobe was selected on).
TUNE_ROWS = 500
# Queries searched at once (bounds the (block, depth+1) score and label arrays).
_QUERY_BLOCK = 1 << 14
# Salt of the sample stream: every input draws the same rows from the same seed and n, which makes the
# metric shift a paired difference over the same items.
_SALT = 0x5EA4C4


def nlist_for(n: int) -> int:
    """About 4·sqrt(n) inverted lists, but never fewer than 39 training rows per list."""
    return max(1, min(int(round(4 * math.sqrt(n))), n // MIN_TRAIN_PER_LIST))


def sample_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """The measuring sample (sorted), the tuning sample (disjoint when n ≥ both sizes) and the stream after them."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SALT]))
    perm = rng.permutation(n)
    m = min(n, SAMPLE_ROWS)
    t = min(n, TUNE_ROWS)
    tune = perm[m : m + t] if n - m >= t else perm[n - t :]
    return np.sort(perm[:m]), np.sort(tune), rng


def row_recall(approx: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Per row, the share of the exact list that the approximate list holds (order ignored)."""
    return (approx[:, :, None] == exact[:, None, :]).any(axis=2).mean(axis=1)


@dataclass
class Record:
    """What one approximate search did, and the exact lists of its sample rows."""

    label: str
    n: int
    d: int
    nlist: int
    nprobe: int
    training_rows: int
    tuning_rows: int
    tuning_recall: float
    """recall@depth on the tuning rows at the chosen nprobe."""
    fallback_rows: int
    """Rows the probed lists could not fill (fewer than depth other rows): searched exactly."""
    sample: np.ndarray
    exact: np.ndarray
    """(m, depth) exact lists of the sample rows (neighbors.exact_knn)."""
    approx: np.ndarray
    """(m, depth) approximate lists of the same rows."""
    seconds: float


class ApproxSearch:
    """IVF-Flat search with nprobe raised until a seeded tuning sample reaches ``recall``.

    Deterministic for a seed on one machine: training rows, the k-means seed (``cp.seed``) and the samples
    come from the seed; the index's search is deterministic. FAISS's k-means and BLAS may round differently
    with another thread count or build, so lists can differ slightly across machines.
    """

    method = "approx"

    def __init__(self, recall: float = 0.95, seed: int = 0):
        self.recall = recall
        self.seed = seed
        self.notes: list[str] = []
        self.records: dict[str, Record] = {}

    def lists(self, X: np.ndarray, depth: int, distance: str, ordered: bool, label: str) -> np.ndarray:
        import faiss

        from repalign.errors import UsageError
        from repalign.neighbors import _check_distance, _normalised_in_float32, exact_knn, float32_block, float32_rows
        from repalign.validation import check_nonzero_rows, row_norms

        _check_distance(distance)
        t0 = time.perf_counter()
        n, d = X.shape
        if not 1 <= depth <= n - 1:
            raise UsageError(f"k must be between 1 and n−1 = {n - 1} (got {depth})")
        norms = row_norms(X)
        if distance == "cosine":
            check_nonzero_rows(norms, label, "cosine similarity")
        cosine = distance == "cosine"
        single = cosine and _normalised_in_float32(norms)

        def rows_f32(rows: np.ndarray) -> np.ndarray:
            """Some rows as FAISS searches them (made as neighbors.float32_block makes a block)."""
            return float32_rows(X[rows], norms[rows] if cosine else None, single)

        nlist = nlist_for(n)
        sample, tune, rng = sample_rows(n, self.seed)
        train = np.sort(rng.choice(n, min(n, TRAIN_PER_LIST * nlist), replace=False))
        l2 = distance == "l2"
        quantizer = faiss.IndexFlatL2(d) if l2 else faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = int(self.seed % (2**31 - 1))
        index.cp.niter = KMEANS_ITER
        index.train(rows_f32(train))
        # Added and queried in fixed blocks whether the layer is in memory or streamed, so both build the same
        # index (FAISS assigns a batch through one product whose rounding may depend on the batch) and never
        # hold a float32 copy of the layer next to it.
        for s0 in range(0, n, _QUERY_BLOCK):
            index.add(float32_block(X, norms, distance, s0, min(n, s0 + _QUERY_BLOCK)))
        exact_tune = exact_knn(X, depth, distance, rows=tune, norms=norms)
        tune_f32 = rows_f32(tune)
        nprobe = 1
        while True:
            index.nprobe = nprobe
            got, _ = _search(index, tune_f32, tune, depth, l2)
            got_recall = float(row_recall(got, exact_tune).mean())
            if got_recall >= self.recall or nprobe >= nlist:
                break
            nprobe = min(nlist, max(nprobe + 1, int(round(nprobe * 1.5))))
        out = np.empty((n, depth), dtype=np.int64)
        short_rows = []
        for s0 in range(0, n, _QUERY_BLOCK):
            rows = np.arange(s0, min(n, s0 + _QUERY_BLOCK))
            out[rows], short = _search(index, float32_block(X, norms, distance, s0, int(rows[-1]) + 1), rows, depth, l2)
            short_rows.append(rows[short])
        del index  # one index at a time: the next layer's is built after this one is gone
        short_all = np.concatenate(short_rows)
        if short_all.size:
            out[short_all] = exact_knn(X, depth, distance, rows=short_all, norms=norms)
        exact_sample = exact_knn(X, depth, distance, rows=sample, norms=norms)
        self.records[label] = Record(label, n, d, nlist, nprobe, int(train.size), int(tune.size), got_recall,
                                     int(short_all.size), sample, exact_sample, out[sample].copy(),
                                     time.perf_counter() - t0)
        return out

    def describe(self) -> dict:
        return {"method": "approx", "certified": False, "recall_target": self.recall, "seed": self.seed}


def _search(index, queries: np.ndarray, rows: np.ndarray, depth: int, l2: bool) -> tuple[np.ndarray, np.ndarray]:
    """The index's ``depth`` best other rows of each query row (``queries``: rows ``rows`` in float32), self
    removed by index, ordered by FAISS's float32 score (ties by the smaller index); also which rows the probed
    lists could not fill."""
    D, Ilab = index.search(np.ascontiguousarray(queries), depth + 1)
    score = (-D if l2 else D).astype(np.float64)
    bad = (Ilab < 0) | (Ilab == rows[:, None])
    score[bad] = -np.inf
    Ilab = np.where(bad, np.iinfo(np.int64).max, Ilab)
    order = np.lexsort((Ilab, -score), axis=-1)
    Ilab = np.take_along_axis(Ilab, order, axis=1)[:, :depth]
    short = (Ilab == np.iinfo(np.int64).max).any(axis=1)
    Ilab[short] = 0
    return Ilab.astype(np.int64), short
