"""Sharded search without a cluster: the query rows split into ranges, each range searched as a shard task does
(the layer's float32 copy made again from the layer), give the lists of the whole-layer search.

The reference is always the same backend searching all rows at once (the single-process path), never the
sharded code's own output.
"""

import numpy as np
import pytest
from conftest import make_pair

from repalign.errors import InputError, UsageError
from repalign.neighbors import _float32_copy
from repalign.search import ApproxSearch, AutoSearch, ExactSearch, ShardedSearch, exact_for, unsharded
from repalign.search.ivf_join import ivf_lists, probes
from repalign.search.sharded import MIN_SHARD_ROWS, SHARDS_PER_WORKER, Shards, shard_count, shard_ranges
from repalign.validation import row_norms


def shards(count, X):
    """``count`` shards run here, each as a shard task runs: the layer's float32 copy made again from the layer
    (a task re-reads the layer from the input's path)."""
    def run_ranges(job, ranges, label):
        norms = row_norms(X)
        return [job(X, _float32_copy(X, norms, job.distance), norms, np.arange(start, stop)) for start, stop in ranges]

    return Shards(count, run_ranges)


def clustered(rng, n, d, dtype=np.float32):
    """Rows around 30 centres: many near-ties inside clusters, and IVF lists of very different sizes."""
    centres = rng.standard_normal((30, d)) * 3
    return (centres[rng.integers(0, 30, n)] + rng.standard_normal((n, d))).astype(dtype)


def near_duplicates(rng, n, d):
    """n/2 clustered rows and each again with a relative change of ~3e-7: float32 rounding decides their order.

    At d = 768 FAISS scores the whole layer by BLAS but a call of fewer than ~160 queries by its own SIMD
    loop (below ``distance_compute_blas_threshold``); without ``neighbors.faiss_path`` the two
    round differently and such pairs swap (the IVF scan test below then differs in most rows).
    """
    base = clustered(rng, n // 2, d)
    return np.concatenate([base, base + (3e-7 * rng.standard_normal(base.shape)).astype(np.float32)])


@pytest.mark.parametrize("distance", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("ordered", [True, False])
def test_exact_shards_give_the_whole_layer_lists(rng, distance, ordered):
    """Also the unordered lists, whose order inside each set of k is FAISS's float32 order: each (query, row)
    score is the same product in a shard as in the whole layer."""
    X = clustered(rng, 1500, 20, np.float64)
    whole = ExactSearch().lists(X, 9, distance, ordered, "a")
    for count in (2, 7):  # shards of 750 and of 214–215 rows
        sharded = ShardedSearch(ExactSearch(), shards(count, X))
        assert np.array_equal(sharded.lists(X, 9, distance, ordered, "a"), whole)


@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_exact_unordered_shards_keep_the_float32_order_of_near_ties(rng, distance):
    X = near_duplicates(rng, 1200, 768)
    whole = ExactSearch().lists(X, 9, distance, False, "a")
    sharded = ShardedSearch(ExactSearch(), shards(12, X))  # 100 rows each
    assert np.array_equal(sharded.lists(X, 9, distance, False, "a"), whole)


def test_exact_shards_with_duplicate_rows(rng):
    """Duplicated rows tie exactly: the certification settles them by index in every shard."""
    base = rng.standard_normal((300, 8))
    X = np.concatenate([base, base[::-1], base[:100]])
    whole = ExactSearch().lists(X, 5, "cosine", True, "a")
    sharded = ShardedSearch(ExactSearch(), shards(5, X))
    assert np.array_equal(sharded.lists(X, 5, "cosine", True, "a"), whole)


@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_approximate_shards_give_the_whole_layer_lists_and_record(rng, distance):
    """Training, tuning and the measuring sample stay with the caller; the scan of all rows is split."""
    X = clustered(rng, 2000, 16)
    local = ApproxSearch(recall=0.9, seed=4, k=5)
    whole = local.lists(X, 8, distance, False, "a")
    inner = ApproxSearch(recall=0.9, seed=4, k=5)
    sharded = ShardedSearch(inner, shards(6, X))  # 333 rows: a few queries per inverted list and shard
    assert np.array_equal(sharded.lists(X, 8, distance, False, "a"), whole)
    a, b = local.records["a"], inner.records["a"]
    assert (a.nlist, a.nprobe, a.fallback_rows, a.tuning_recall) == (b.nlist, b.nprobe, b.fallback_rows,
                                                                      b.tuning_recall)
    assert np.array_equal(a.approx, b.approx) and np.array_equal(a.exact, b.exact)


def test_rows_the_probed_lists_cannot_fill_are_searched_exactly_in_their_shard(rng):
    """A depth larger than most inverted lists, and a low recall target (nprobe stays small): many rows take
    the exact fallback, counted over all shards."""
    X = clustered(rng, 600, 6)
    local = ApproxSearch(recall=0.3, seed=1)
    whole = local.lists(X, 60, "cosine", False, "a")
    inner = ApproxSearch(recall=0.3, seed=1)
    assert np.array_equal(ShardedSearch(inner, shards(4, X)).lists(X, 60, "cosine", False, "a"), whole)
    assert inner.records["a"].fallback_rows == local.records["a"].fallback_rows > 0


def test_the_ivf_scan_of_some_rows_is_those_rows_of_the_whole_scan(rng):
    """The scan's float32 scores do not depend on how many queries share a FAISS call (1 to hundreds)."""
    x = near_duplicates(rng, 3000, 768)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    centroids = x[rng.choice(3000, 50, replace=False)]
    probe = probes(x, centroids, 3, False)
    whole, _ = ivf_lists(x, probe[:, 0], np.arange(3000), probe, 50, 10, False)
    for start in range(0, 3000, 400):  # 64 rows from every 400th: a few queries per inverted list
        rows = np.arange(start, start + 64)
        some, _ = ivf_lists(x, probe[:, 0], rows, probes(x, centroids, 3, False, rows), 50, 10, False)
        assert np.array_equal(some, whole[rows])
    rows = np.sort(rng.choice(3000, 7, replace=False))
    some, _ = ivf_lists(x, probe[:, 0], rows, probes(x, centroids, 3, False, rows), 50, 10, False)
    assert np.array_equal(some, whole[rows])


def test_auto_passes_the_shards_to_the_method_it_chooses(rng):
    X = clustered(rng, 500, 12, np.float64)
    auto = AutoSearch(seed=2)
    got = ShardedSearch(auto, shards(3, X)).lists(X, 6, "cosine", True, "a")
    assert auto.chosen == {"a": "exact"}
    assert np.array_equal(got, ExactSearch().lists(X, 6, "cosine", True, "a"))


def test_a_sharded_backend_reports_and_caches_as_the_one_it_wraps():
    X = np.eye(10, 3)
    inner = ExactSearch()
    sharded = ShardedSearch(inner, shards(2, X))
    assert unsharded(sharded) is inner and unsharded(inner) is inner
    assert exact_for(sharded, (10, 3)) and not exact_for(ShardedSearch(ApproxSearch(), shards(2, X)),
                                                         (10, 3))
    assert sharded.describe() == inner.describe() and sharded.notes is inner.notes and sharded.method == "exact"


def test_bad_input_is_refused_before_any_shard_runs(rng):
    def never(job, ranges, label):
        raise AssertionError("a shard ran")

    X = make_pair(rng, n=50)[0]
    X[7] = 0.0

    with pytest.raises(InputError, match="^a: all-zero row"):
        ShardedSearch(ExactSearch(), Shards(2, never)).lists(X, 3, "cosine", True, "a")
    with pytest.raises(UsageError, match="k must be between 1 and n−1 = 49"):
        ShardedSearch(ExactSearch(), Shards(2, never)).lists(X, 50, "l2", True, "a")


@pytest.mark.parametrize("n, count", [(10, 1), (10, 10), (1000, 7), (100_003, 8)])
def test_shard_ranges_cover_the_rows_in_order(n, count):
    ranges = shard_ranges(n, count)
    assert np.array_equal(np.concatenate([np.arange(a, b) for a, b in ranges]), np.arange(n))
    sizes = [b - a for a, b in ranges]
    assert len(ranges) == count and max(sizes) - min(sizes) <= 1


def test_how_many_shards():
    assert shard_count(99_999, 8) == 1  # below the default threshold
    assert shard_count(100_000, 1) == 1  # one worker thread gains nothing from a split
    assert shard_count(100_000, 8) == SHARDS_PER_WORKER * 8
    assert shard_count(500, 4, min_rows=100) == 500 // MIN_SHARD_ROWS  # no shard below MIN_SHARD_ROWS rows
    assert shard_count(60, 4, min_rows=10) == 1
