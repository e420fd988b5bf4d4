"""The list-by-list IVF scan against a dense reference of IVF-Flat semantics and against faiss.IndexIVFFlat."""

import faiss
import numpy as np
import pytest

from repalign.search.ivf_join import ivf_lists, probes

N, D, NLIST, DEPTH = 2000, 24, 30, 12
# float32 scores of the GEMM and of the dense float64 reference may order two candidates differently only
# when they are this close (a few float32 ulps of a score of size ~1).
TIE = 1e-5


def clustered(rng, l2):
    centres = rng.standard_normal((25, D)) * 3
    x = (centres[rng.integers(0, 25, N)] + rng.standard_normal((N, D))).astype(np.float32)
    return x if l2 else x / np.linalg.norm(x, axis=1, keepdims=True)


def dense_reference(x, probe, depth, l2):
    """Per row: every row of the lists it probes, scored in float64, best first, ties by index, self removed;
    rows with fewer than ``depth`` candidates are short (list of zeros, scores NaN)."""
    lists, scores, short = [], [], []
    x64 = x.astype(np.float64)
    for i in range(len(x)):
        cand = np.flatnonzero(np.isin(probe[:, 0], probe[i]))
        cand = cand[cand != i]
        s = -((x64[cand] - x64[i]) ** 2).sum(1) if l2 else x64[cand] @ x64[i]
        order = np.lexsort((cand, -s))[:depth]
        short.append(order.size < depth)
        lists.append(cand[order] if order.size == depth else np.zeros(depth, np.int64))
        scores.append(s[order] if order.size == depth else np.full(depth, np.nan))
    return np.array(lists), np.array(scores), np.array(short)


@pytest.mark.parametrize("l2", [False, True])
@pytest.mark.parametrize("nprobe", [1, 3])
def test_matches_dense_ivf_semantics(l2, nprobe):
    rng = np.random.default_rng(5 + nprobe + 10 * l2)
    x = clustered(rng, l2)
    centroids = x[rng.choice(N, NLIST, replace=False)]
    probe = probes(x, centroids, nprobe, l2)
    got, short = ivf_lists(x, probe[:, 0], np.arange(N), probe, NLIST, DEPTH, l2)
    ref, ref_s, ref_short = dense_reference(x, probe, DEPTH, l2)
    assert (short == ref_short).all()
    x64 = x.astype(np.float64)
    differ = np.flatnonzero((got != ref).any(axis=1))
    assert differ.size <= N // 100  # only rows with near-ties may differ
    for i in differ:
        s = -((x64[got[i]] - x64[i]) ** 2).sum(1) if l2 else x64[got[i]] @ x64[i]
        assert np.abs(s - ref_s[i]).max() <= TIE * max(1.0, np.abs(ref_s[i]).max())


def test_agrees_with_faiss_index_ivf_flat():
    rng = np.random.default_rng(3)
    x = clustered(rng, False)
    centroids = x[rng.choice(N, NLIST, replace=False)]
    quantizer = faiss.IndexFlatIP(D)
    quantizer.add(centroids)
    index = faiss.IndexIVFFlat(quantizer, D, NLIST, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    index.add(x)
    index.nprobe = 4
    _, ids = index.search(x, DEPTH + 1)
    probe = probes(x, centroids, 4, False)
    got, _ = ivf_lists(x, probe[:, 0], np.arange(N), probe, NLIST, DEPTH, False)
    theirs = [set(r[r != i][:DEPTH]) for i, r in enumerate(ids)]
    agree = np.mean([len(set(g) & t) / DEPTH for g, t in zip(got, theirs)])
    assert agree >= 0.999


def test_a_subset_of_queries_gets_the_same_lists():
    """Tuning asks for a few rows' lists: they equal those rows of the full run."""
    rng = np.random.default_rng(9)
    x = clustered(rng, False)
    centroids = x[rng.choice(N, NLIST, replace=False)]
    probe = probes(x, centroids, 3, False)
    full, _ = ivf_lists(x, probe[:, 0], np.arange(N), probe, NLIST, DEPTH, False)
    rows = np.sort(rng.choice(N, 50, replace=False))
    part, _ = ivf_lists(x, probe[:, 0], rows, probes(x[rows], centroids, 3, False), NLIST, DEPTH, False)
    assert (part == full[rows]).all()


def test_short_rows_are_flagged():
    """A list holding only its own row cannot fill any list deeper than 0 with nprobe = 1."""
    x = np.eye(4, D, dtype=np.float32)
    probe = probes(x, x, 1, False)
    lists, short = ivf_lists(x, probe[:, 0], np.arange(4), probe, 4, 1, False)
    assert short.all() and (lists == 0).all()
