"""Approximate neighbour lists with IVF-Flat semantics (FAISS k-means and coarse quantizer), nprobe tuned to a
recall target.

The lists are not certified: they are the best rows of the probed inverted lists by float32 score (ties by
the smaller index), scanned list by list with matrix products (:mod:`.ivf_join`), which is what
``faiss.IndexIVFFlat`` returns for the same centroids and nprobe. What they cost in accuracy is measured on
every run instead (:mod:`.accuracy`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from repalign.search.base import RowRunner

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
# Salt of the sample stream: every input draws the same rows from the same seed and n, which makes the
# metric shift a paired difference over the same items.
_SALT = 0x5EA4C4


def nlist_for(n: int) -> int:
    """About sqrt(n) inverted lists, but never fewer than 39 training rows per list.

    The scan costs n·nprobe·(n/nlist) products and the coarse quantizer n·nlist; scanned by matrix products,
    large lists are cheap per product, and on clustered data √n lists reached recall@10 ≥ 0.95 with
    nprobe = 2 where 4·√n lists needed 6 (benchmarks/README.md, "approximate search").
    """
    return max(1, min(int(round(math.sqrt(n))), n // MIN_TRAIN_PER_LIST))


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
    """(m, depth) exact lists of the sample rows (neighbors.knn_of_rows)."""
    approx: np.ndarray
    """(m, depth) approximate lists of the same rows."""
    seconds: float


class ApproxSearch:
    """IVF-Flat search with nprobe raised until a seeded tuning sample reaches ``recall``.

    Deterministic for a seed on one machine: training rows, the k-means seed (``cp.seed``) and the samples
    come from the seed. FAISS's k-means and its matrix products may round differently with another thread
    count or build, so lists can differ slightly across machines.
    """

    method = "approx"

    def __init__(self, recall: float = 0.95, seed: int = 0, k: int | None = None):
        self.recall = recall
        self.seed = seed
        self.k = k
        """nprobe is tuned to recall@k, the recall the report measures (None: recall at the depth searched)."""
        self.notes: list[str] = []
        self.records: dict[str, Record] = {}

    def lists(self, X: np.ndarray, depth: int, distance: str, ordered: bool, label: str,
              runner: RowRunner | None = None) -> np.ndarray:
        """``runner``: how the final pass over all rows runs (None: here; :mod:`.sharded`: in shards). Training,
        nprobe tuning and the measuring sample run here either way."""
        from repalign.neighbors import _float32_copy, checked_norms, knn_of_rows
        from repalign.search.ivf_join import ivf_lists, probes

        t0 = time.perf_counter()
        n, d = X.shape
        norms = checked_norms(X, depth, distance, label)
        Xf = _float32_copy(X, norms, distance)
        nlist = nlist_for(n)
        sample, tune, rng = sample_rows(n, self.seed)
        train = np.sort(rng.choice(n, min(n, TRAIN_PER_LIST * nlist), replace=False))
        l2 = distance == "l2"
        centroids = _train(Xf[train], nlist, l2, self.seed)
        assign = probes(Xf, centroids, 1, l2)[:, 0]
        tune_depth = depth if self.k is None else min(depth, self.k)
        # Exact lists of the tuning and measuring rows in one certified float32 product against the copy.
        both = np.concatenate([tune, sample])
        exact_both = knn_of_rows(X, Xf, both, depth, distance, norms)
        exact_tune, exact_sample = exact_both[: tune.size, :tune_depth], exact_both[tune.size :]
        nprobe = 1
        while True:
            got, _ = ivf_lists(Xf, assign, tune, probes(Xf[tune], centroids, nprobe, l2), nlist, tune_depth, l2)
            per_row = row_recall(got, exact_tune)
            got_recall = float(per_row.mean())
            if _surely_reached(per_row, self.recall) or nprobe >= nlist:
                break
            nprobe = min(nlist, max(nprobe + 1, int(round(nprobe * 1.5))))
        index = IvfIndex(centroids, assign, nlist, nprobe, depth, distance)
        if runner is None:
            out, fallback = index(X, Xf, norms, np.arange(n))
            del Xf
        else:
            del Xf  # each shard makes its own copy
            out, fallback = runner.run(index, n, label)
        self.records[label] = Record(label, n, d, nlist, nprobe, int(train.size), int(tune.size), got_recall,
                                     fallback, sample, exact_sample, out[sample].copy(), time.perf_counter() - t0)
        return out

    def describe(self) -> dict:
        return {"method": "approx", "certified": False, "recall_target": self.recall, "seed": self.seed}


@dataclass(frozen=True)
class IvfIndex:
    """A trained index and its tuned nprobe: what the pass over all rows needs besides the layer itself (a
    :class:`~.base.RowJob`, so a shard of rows can run it on a worker)."""

    centroids: np.ndarray
    assign: np.ndarray
    """(n,) the list each row is stored in."""
    nlist: int
    nprobe: int
    depth: int
    distance: str

    def __call__(self, X: np.ndarray, Xf: np.ndarray, norms: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, int]:
        """The approximate lists of ``rows``; rows their probed lists cannot fill are searched exactly (their
        count is returned second)."""
        from repalign.neighbors import knn_of_rows
        from repalign.search.ivf_join import ivf_lists, probes

        l2 = self.distance == "l2"
        probe = probes(Xf, self.centroids, self.nprobe, l2, rows)
        out, short = ivf_lists(Xf, self.assign, rows, probe, self.nlist, self.depth, l2)
        fill = np.flatnonzero(short)
        if fill.size:
            out[fill] = knn_of_rows(X, Xf, rows[fill], self.depth, self.distance, norms)
        return out, int(fill.size)


# One-sided 97.5 % normal bound: the tuning sample's recall must clear the target by its sampling error, so
# the recall measured afterwards on the disjoint sample is not below the target half of the time.
_TUNE_Z = 1.96


def _surely_reached(per_row: np.ndarray, target: float) -> bool:
    """Whether the tuning rows' mean recall is above ``target`` by more than its sampling error."""
    se = float(per_row.std(ddof=1)) / np.sqrt(per_row.size) if per_row.size > 1 else 0.0
    return float(per_row.mean()) - _TUNE_Z * se >= target


def _train(rows: np.ndarray, nlist: int, l2: bool, seed: int) -> np.ndarray:
    """(nlist, d) centroids from FAISS's k-means on the training rows, seeded, as IndexIVFFlat trains them."""
    import faiss

    d = rows.shape[1]
    quantizer = faiss.IndexFlatL2(d) if l2 else faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(seed % (2**31 - 1))
    index.cp.niter = KMEANS_ITER
    index.train(np.ascontiguousarray(rows))
    return quantizer.reconstruct_n(0, nlist)
