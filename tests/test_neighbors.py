"""k-NN lists against a full-sort reference: self by index, ties by index, duplicates, fallback."""

import numpy as np
import pytest
import reference as ref

from repalign import neighbors
from repalign.errors import InputError, UsageError


@pytest.mark.parametrize("distance", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_dense_reference(rng, distance, dtype):
    X = rng.standard_normal((400, 20)).astype(dtype)
    for k in (1, 7, 25):
        assert np.array_equal(neighbors.knn(X, k, distance), ref.dense_knn(X, k, distance))


def tied_data(rng, distance, n=300):
    """Data whose scores are exact in floating point, so ties are true ties whatever the summation order.

    ip, l2: small integers. cosine: ±(power of two)·e_j, whose normalised rows are exactly ±e_j.
    """
    if distance == "cosine":
        X = np.zeros((n, 4))
        X[np.arange(n), rng.integers(0, 4, n)] = rng.choice([-4.0, -1.0, 0.5, 2.0], n)
        return X
    return rng.integers(-2, 3, size=(n, 3)).astype(np.float64)


@pytest.mark.parametrize("distance", ["cosine", "ip", "l2"])
def test_ties_and_duplicates(rng, distance):
    """Many exact ties and duplicate rows: the order must follow the index rule."""
    X = tied_data(rng, distance)
    for k in (1, 5, 12):
        got = neighbors.knn(X, k, distance)
        assert np.array_equal(got, ref.dense_knn(X, k, distance))
        assert not (got == np.arange(300)[:, None]).any()


def test_duplicate_before_self_is_kept():
    """Row 0 and row 1 identical, 5 copies: each copy lists the other copies, never itself."""
    X = np.vstack([np.tile([1.0, 0.0], (5, 1)), np.random.default_rng(0).standard_normal((20, 2)) + 3])
    got = neighbors.knn(X, 4, "l2")
    for i in range(5):
        assert sorted(got[i]) == [j for j in range(5) if j != i]


def test_fallback_path_is_exact(rng, monkeypatch):
    """Force every row through the exact numpy path by making the error bound huge."""
    X = rng.standard_normal((150, 6))
    monkeypatch.setattr(neighbors, "_error_bound", lambda norms, d, distance, unit: np.full(norms.shape, 1e9))
    for distance in ("cosine", "ip", "l2"):
        assert np.array_equal(neighbors.knn(X, 9, distance), ref.dense_knn(X, 9, distance))


def test_exact_knn_matches_reference(rng):
    X = rng.standard_normal((90, 5))
    for distance in ("cosine", "ip", "l2"):
        assert np.array_equal(neighbors.exact_knn(X, 4, distance), ref.dense_knn(X, 4, distance))


def test_memmap_input(rng, tmp_path):
    X = rng.standard_normal((200, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert np.array_equal(neighbors.knn(mm, 5), ref.dense_knn(X, 5))


@pytest.mark.parametrize("distance", ["cosine", "ip", "l2"])
def test_near_ties_resolved_in_float64(distance):
    """Clusters of copies differing by 1e-6: float32 cannot order them, float64 can.

    With the error bound set to zero this fails for ip and l2 (checked when
    the test was written), so it guards the certification step.
    """
    rng = np.random.default_rng(5)
    base = rng.standard_normal((40, 16))
    X = np.repeat(base, 5, axis=0) * (1 + rng.standard_normal((200, 1)) * 1e-6)
    X += rng.standard_normal((200, 16)) * 1e-6
    assert np.array_equal(neighbors.knn(X, 6, distance), ref.dense_knn(X, 6, distance))


def test_bad_arguments(rng):
    X = rng.standard_normal((10, 3))
    with pytest.raises(UsageError):
        neighbors.knn(X, 10)
    with pytest.raises(UsageError, match="unknown --distance"):
        neighbors.knn(X, 2, "manhattan")
    X[4] = 0
    with pytest.raises(InputError, match="row 4"):
        neighbors.knn(X, 2, "cosine", label="x.npy")


def _sets(lists):
    return [set(row) for row in np.asarray(lists).tolist()]


@pytest.mark.parametrize("distance", ["cosine", "ip", "l2"])
def test_unordered_lists_have_the_exact_sets(rng, distance):
    """ordered=False certifies only each row's set of k: it must equal the definition's set, ties included."""
    near = np.repeat(rng.standard_normal((40, 16)), 5, axis=0) + rng.standard_normal((200, 16)) * 1e-6
    for X in (rng.standard_normal((400, 20)).astype(np.float32), tied_data(rng, distance), near):
        for k in (1, 6, 12):
            got = neighbors.knn(X, k, distance, ordered=False)
            assert _sets(got) == _sets(ref.dense_knn(X, k, distance))
            assert not (got == np.arange(X.shape[0])[:, None]).any()


def test_unordered_skips_rescoring_of_in_set_near_ties(rng, monkeypatch):
    """Near-ties inside the set need no float64 work when only the set matters (the point of ordered=False)."""
    # Triplets of near-copies, far apart: each row's 2 neighbours are its siblings (a near-tie float32
    # cannot order), and the next row is far away, so the set is certain from the float32 scores alone.
    X = np.repeat(rng.standard_normal((100, 16)) * 10, 3, axis=0) + rng.standard_normal((300, 16)) * 1e-7
    calls = []
    original = neighbors._pair_scores
    monkeypatch.setattr(neighbors, "_pair_scores", lambda *a: calls.append(len(a[2])) or original(*a))
    unordered = neighbors.knn(X, 2, "l2", ordered=False)
    assert sum(calls) == 0
    ordered = neighbors.knn(X, 2, "l2", ordered=True)
    assert sum(calls) > 0 and np.array_equal(ordered, ref.dense_knn(X, 2, "l2"))
    assert _sets(unordered) == _sets(ordered)


def test_rows_of_wildly_different_norms(rng):
    """A row near float32 underflow next to ordinary rows: still the exact lists (float64 normalisation path)."""
    X = rng.standard_normal((120, 8))
    X[5] *= 1e-70
    X[9] *= 1e-70
    for ordered in (True, False):
        got = neighbors.knn(X, 6, "cosine", ordered=ordered)
        want = ref.dense_knn(X, 6, "cosine")
        assert [set(r) for r in got.tolist()] == [set(r) for r in want.tolist()]
        if ordered:
            assert np.array_equal(got, want)


def _rows_knn(X, rows, k, distance):
    norms = neighbors.row_norms(X)
    Xf = neighbors._float32_copy(X, norms, distance)
    return neighbors.knn_of_rows(X, Xf, rows, k, distance, norms)


@pytest.mark.parametrize("distance", ["cosine", "ip", "l2"])
def test_lists_of_some_rows_match_dense_reference(rng, distance):
    """knn_of_rows (the approximate search's measuring rows) gives each chosen row its exact full-sort list,
    on random data and on data full of exact ties and duplicates."""
    for X in (rng.standard_normal((400, 20)), tied_data(rng, distance)):
        rows = np.sort(rng.choice(X.shape[0], 57, replace=False))
        for k in (1, 9):
            assert np.array_equal(_rows_knn(X, rows, k, distance), ref.dense_knn(X, k, distance)[rows])


def test_lists_of_some_rows_fallback_is_exact(rng, monkeypatch):
    """With a huge error bound nothing is certified in float32: every row goes to the float64 paths."""
    X = rng.standard_normal((150, 6))
    rows = np.array([3, 0, 149, 77])  # unsorted on purpose: the result follows the order asked
    monkeypatch.setattr(neighbors, "_error_bound", lambda norms, d, distance, unit: np.full(norms.shape, 1e9))
    for distance in ("cosine", "ip", "l2"):
        assert np.array_equal(_rows_knn(X, rows, 5, distance), ref.dense_knn(X, 5, distance)[rows])


@pytest.mark.parametrize("distance", ["cosine", "ip", "l2"])
def test_near_ties_rescored_by_runs(rng, distance, monkeypatch):
    """Rows with near-duplicates (scores within float32 rounding of each other, but distinct in float64): the
    ordered lists rescored run by run must be the dense reference's, and the run-by-run path must have done
    the work (not handed every row to the full rescoring)."""
    base = rng.standard_normal((200, 16))
    X = np.vstack([base, base * (1 + 1e-7 * rng.standard_normal((200, 1))) + 1e-7 * rng.standard_normal((200, 16))])
    settled_by_runs = []
    real = neighbors._rescore_ties

    def spy(*args):
        left = real(*args)
        settled_by_runs.append(args[5].size - left.size)
        return left

    monkeypatch.setattr(neighbors, "_rescore_ties", spy)
    monkeypatch.setattr(neighbors, "_TIE_ROWS", 64)  # several blocks
    for k in (5, 20):
        assert np.array_equal(neighbors.knn(X, k, distance), ref.dense_knn(X, k, distance))
    assert sum(settled_by_runs) > 100
