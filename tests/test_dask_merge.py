"""What a distributed run's driver merges from its workers: their caches' notes and their search records, against
one process doing the same work (no cluster needed)."""

import os

import numpy as np
import pytest

from repalign.engine import cache as cache_module
from repalign.engine.cache import ListCache, ListKey
from repalign.engine.distributed import _absorb
from repalign.errors import UsageError
from repalign.search import AutoSearch

KEY = ListKey(depth=3, k=3, distance="cosine", ordered=False)


def _layers(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal((20, 5)) for _ in range(count)]


def _fill(cache: ListCache, who: str, x: np.ndarray) -> None:
    from repalign.neighbors import knn

    cache.lists(x, who, KEY, lambda: knn(x, 3, "cosine"))


def test_merged_hits_are_the_counts_one_process_notes(tmp_path):
    xs = _layers(3)
    warm = ListCache(str(tmp_path))
    for x in xs:
        _fill(warm, "m", x)
    one = ListCache(str(tmp_path))
    for x in xs:
        _fill(one, "m", x)
    merged = ListCache(str(tmp_path))
    for x in xs:  # one worker per layer
        worker = ListCache(str(tmp_path))
        _fill(worker, "m", x)
        merged.merge(worker)
    assert merged.notes() == one.notes()
    assert one.notes()[0].startswith("m: neighbour lists of 3 layers read from the cache")


def test_a_failed_write_is_noted_once_as_in_one_process(tmp_path, monkeypatch):
    """Each worker's failed write names its own entry; one process stops at the first, so the merge keeps it."""
    def full(path, fill, what):
        raise UsageError(f"{path}: cannot write {what} (disk full)")

    monkeypatch.setattr(cache_module, "write_atomic", full)
    xs = _layers(2)
    one = ListCache(str(tmp_path))
    for x in xs:
        _fill(one, "m", x)
    merged = ListCache(str(tmp_path))
    for x in xs:
        worker = ListCache(str(tmp_path))
        _fill(worker, "m", x)
        merged.merge(worker)
    assert len(one.notes()) == 1
    assert merged.notes() == one.notes()


def test_search_records_merge_in_layer_order(monkeypatch):
    """Auto search forced to approximate: one backend over both layers vs one backend per layer, absorbed."""
    import repalign.search.auto as auto

    monkeypatch.setattr(auto, "AUTO_EXACT_SECONDS", -1.0)
    xs = _layers(2) + [np.random.default_rng(2).standard_normal((20, 5))]
    one = AutoSearch(recall=0.9, seed=4)
    for i, x in enumerate(xs):
        one.lists(x, 3, "cosine", False, f"layer {i}")
    driver = AutoSearch(recall=0.9, seed=4)
    for i, x in enumerate(xs):
        worker = AutoSearch(recall=0.9, seed=4)
        worker.lists(x, 3, "cosine", False, f"layer {i}")
        _absorb(driver, worker)
    assert driver.notes == one.notes and len(one.notes) == 3
    assert driver.chosen == one.chosen
    assert list(driver.records) == list(one.records) == ["layer 0", "layer 1", "layer 2"]
    for label, rec in one.records.items():
        got = driver.records[label]
        assert (got.nprobe, got.nlist) == (rec.nprobe, rec.nlist)
        assert np.array_equal(got.approx, rec.approx) and np.array_equal(got.exact, rec.exact)


def test_notes_name_the_directory_as_given(tmp_path, monkeypatch):
    """A worker got the absolute path of a relative --cache: the merged notes say what the user typed."""
    monkeypatch.chdir(tmp_path)
    xs = _layers(2)
    warm = ListCache("given")
    for x in xs:
        _fill(warm, "m", x)
    victim = sorted(os.listdir("given"))[0]
    with open(os.path.join("given", victim), "wb") as f:
        f.write(b"not an entry")  # a corrupt entry is noted with its path
    one = ListCache("given")
    for x in xs:
        _fill(one, "m", x)
    with open(os.path.join("given", victim), "wb") as f:
        f.write(b"not an entry")
    merged = ListCache("given")
    for x in xs:
        worker = ListCache(str(tmp_path / "given"))
        _fill(worker, "m", x)
        merged.merge(worker)
    assert any("given/" in note and "unreadable" in note for note in one.notes())
    assert merged.notes() == one.notes()


def test_a_worker_with_another_version_refuses_the_task():
    from repalign import __version__
    from repalign.engine.distributed import _check_version
    from repalign.errors import ClusterError

    _check_version(__version__)
    with pytest.raises(ClusterError, match=f"runs repalign {__version__}, this run needs 0.0.1: install the same"):
        _check_version("0.0.1")
