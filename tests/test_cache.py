"""The neighbour-list cache: reuse across runs, identical results, every bad entry recomputed, never a failed run."""

import io
import json
import multiprocessing
import os
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

import repalign
from repalign import neighbors
from repalign.cli import app
from repalign.engine.cache import ListCache, ListKey, key

FAST = {"resamples": 0, "permutations": 0, "seed": 7, "metrics": "mknn,cka"}


@pytest.fixture(autouse=True)
def no_ambient_cache(monkeypatch):
    monkeypatch.delenv("REPALIGN_CACHE", raising=False)


def _search_forbidden(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("searched although the cache holds these lists")

    monkeypatch.setattr(neighbors, "knn", refuse)


def _bare(result) -> dict:
    """The report without what the cache may change: its notes and the timing."""
    d = result.to_dict()
    d.pop("timing", None)
    d["notes"] = [n for n in d["notes"] if "cache" not in n]
    return d


def _entries(folder) -> list[str]:
    return sorted(p for p in os.listdir(folder) if p.endswith(".npz"))


@pytest.fixture
def files(write, rng):
    from conftest import make_pair

    X, Y = make_pair(rng, n=120)
    return write.npy(X, "x.npy"), write.npy(Y, "y.npy")


def test_second_run_reads_the_cache_and_gives_the_same_report(files, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    plain = repalign.compare(*files, **FAST)
    first = repalign.compare(*files, cache=cache, **FAST)
    assert not any("read from the cache" in n for n in first.notes)
    assert len(_entries(cache)) == 2
    _search_forbidden(monkeypatch)
    second = repalign.compare(*files, cache=cache, **FAST)
    assert f"{files[0]}: neighbour lists of 1 layer read from the cache {cache}" in second.notes
    assert f"{files[1]}: neighbour lists of 1 layer read from the cache {cache}" in second.notes
    assert _bare(plain) == _bare(first) == _bare(second)


def test_sweep_reads_every_layer_from_the_cache(write, rng, tmp_path, monkeypatch):
    from test_sweep import layered

    z = rng.standard_normal((60, 3))
    a = write.npy(layered(rng, layers=3, shared=z), "a.npy")
    b = write.npy(layered(rng, layers=2, d=5, shared=z), "b.npy")
    cache = str(tmp_path / "cache")
    first = repalign.compare(a, b, cache=cache, **FAST)
    _search_forbidden(monkeypatch)
    second = repalign.compare(a, b, cache=cache, **FAST)
    assert f"{a}: neighbour lists of 3 layers read from the cache {cache}" in second.notes
    assert second.sweep is not None and _bare(first) == _bare(second)


def test_matrix_growing_by_one_input_reuses_the_others(write, rng, tmp_path, monkeypatch):
    from conftest import make_pair

    X, Y = make_pair(rng, n=100)
    paths = [write.npy(X, "x.npy"), write.npy(Y, "y.npy"), write.npy(X + Y[:, :16], "z.npy")]
    cache = str(tmp_path / "cache")
    repalign.matrix(paths[:2], cache=cache, **FAST)
    grown = repalign.matrix(paths, cache=cache, **FAST)
    assert sum("read from the cache" in n for n in grown.notes) == 2
    _search_forbidden(monkeypatch)
    again = repalign.matrix(paths, cache=cache, **FAST)
    assert sum("read from the cache" in n for n in again.notes) == 3
    assert _bare(grown) == _bare(again)


# ---------------------------------------------------------------- bad entries


def _savez(lists, header) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, lists=lists, header=np.array(json.dumps(header)))
    return buf.getvalue()


def _corrupt(path: str, how: str, other: str) -> None:
    with np.load(path) as z:
        lists, header = z["lists"].copy(), json.loads(str(z["header"][()]))
    data = open(path, "rb").read()
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "random bytes":
        data = np.random.default_rng(1).bytes(len(data))
    elif how == "wrong shape":
        data = _savez(lists[:, :-1], header)
    elif how == "out of range":
        lists[3, 0] = len(lists)
        data = _savez(lists, header)
    elif how == "self index":
        lists[5, 1] = 5
        data = _savez(lists, header)
    elif how == "duplicate":
        lists[2, 1] = lists[2, 0]
        data = _savez(lists, header)
    elif how == "float lists":
        data = _savez(lists.astype(np.float64), header)
    elif how == "no header":
        buf = io.BytesIO()
        np.savez(buf, lists=lists)
        data = buf.getvalue()
    elif how == "foreign":  # a whole, valid entry of the other input, under this key's name
        data = open(other, "rb").read()
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("how", ["truncated", "random bytes", "wrong shape", "out of range", "self index",
                                 "duplicate", "float lists", "no header", "foreign"])
def test_bad_entry_is_recomputed_overwritten_and_noted(files, tmp_path, how):
    cache = str(tmp_path / "cache")
    first = repalign.compare(*files, cache=cache, **FAST)
    entries = [os.path.join(cache, p) for p in _entries(cache)]
    _corrupt(entries[0], how, entries[1])
    second = repalign.compare(*files, cache=cache, **FAST)
    assert f"cache entry {entries[0]} was unreadable; recomputed" in second.notes
    assert sum("read from the cache" in n for n in second.notes) == 1  # the other entry still served
    assert _bare(first) == _bare(second)
    third = repalign.compare(*files, cache=cache, **FAST)  # overwritten with a good entry
    assert sum("read from the cache" in n for n in third.notes) == 2
    assert not any("unreadable" in n for n in third.notes)


def test_an_entry_of_other_parameters_is_not_used(files, tmp_path):
    cache = str(tmp_path / "cache")
    repalign.compare(*files, cache=cache, **FAST)
    l2 = repalign.compare(*files, cache=cache, distance="l2", **FAST)
    assert not any("read from the cache" in n for n in l2.notes)
    assert len(_entries(cache)) == 4


# ---------------------------------------------------------------- a cache that cannot be used


def test_unwritable_cache_still_computes_with_a_note(files, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = str(blocker / "cache")  # under a regular file: nothing can be created there, even as root
    plain = repalign.compare(*files, **FAST)
    res = repalign.compare(*files, cache=cache, **FAST)
    notes = [n for n in res.notes if "could not be written" in n]
    assert len(notes) == 1 and notes[0].startswith(f"the cache {cache} could not be written")
    assert not any("unreadable" in n for n in res.notes)  # no directory: every entry is a plain miss
    assert _bare(plain) == _bare(res)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes read-only directories")
def test_read_only_cache_still_computes_with_a_note(files, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        res = repalign.compare(*files, cache=str(folder), **FAST)
    finally:
        folder.chmod(0o700)
    assert any("could not be written" in n for n in res.notes)


def test_cache_naming_a_regular_file_exits_2_in_one_line(files, tmp_path):
    target = tmp_path / "report.json"
    target.write_text("{}")
    r = CliRunner().invoke(app, ["compare", *files, "-B", "0", "-P", "0", "--cache", str(target)])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [f"Error: {target}: --cache names a regular file; give a directory "
                                             "(created if missing)"]
    assert target.read_text() == "{}"


def test_environment_variable_and_the_option_winning(files, tmp_path, monkeypatch):
    env_dir, opt_dir = tmp_path / "env", tmp_path / "opt"
    monkeypatch.setenv("REPALIGN_CACHE", str(env_dir))
    r = CliRunner().invoke(app, ["compare", *files, "-B", "0", "-P", "0", "-f", "json"])
    assert r.exit_code == 0 and len(_entries(env_dir)) == 2
    r = CliRunner().invoke(app, ["compare", *files, "-B", "0", "-P", "0", "-f", "json", "--cache", str(opt_dir)])
    assert r.exit_code == 0 and len(_entries(opt_dir)) == 2
    assert not any("read from the cache" in n for n in json.loads(r.stdout)["notes"])


def test_environment_variable_naming_a_file_only_costs_the_cache(files, tmp_path, monkeypatch):
    target = tmp_path / "f"
    target.write_text("")
    monkeypatch.setenv("REPALIGN_CACHE", str(target))
    res = repalign.compare(*files, **FAST)
    assert any("could not be written" in n for n in res.notes)


# ---------------------------------------------------------------- concurrency


def _write_one(folder: str, seed: int) -> None:
    x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    ListCache(folder).lists(x, "x", ListKey(11, 10, "cosine", True),
                            lambda: neighbors.knn(x, 11, "cosine", ordered=True))


def test_concurrent_writers_leave_one_valid_entry_and_no_temporary_files(tmp_path):
    folder = str(tmp_path / "cache")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_one, args=(folder, s)) for s in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    assert os.listdir(folder) == _entries(folder) and len(_entries(folder)) == 1
    x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    cache = ListCache(folder)
    got = cache.lists(x, "x", ListKey(11, 10, "cosine", True), lambda: pytest.fail("the entry should be valid"))
    np.testing.assert_array_equal(got, neighbors.knn(x, 11, "cosine", ordered=True))
    with zipfile.ZipFile(os.path.join(folder, _entries(folder)[0])) as z:
        assert z.testzip() is None


# ---------------------------------------------------------------- the key


def test_key_changes_with_every_parameter_and_the_data():
    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    base = ListKey(depth=11, k=10, distance="cosine", ordered=False)
    variants = [ListKey(12, 10, "cosine", False), ListKey(11, 9, "cosine", False), ListKey(11, 10, "l2", False),
                ListKey(11, 10, "cosine", True), ListKey(11, 10, "cosine", False, search="hnsw:M=32")]
    keys = {key(x, base)} | {key(x, s) for s in variants}
    keys |= {key(x[1:], base), key(x.astype(np.float64), base), key(x.reshape(25, 16), base), key(x * 2, base)}
    assert len(keys) == 10
    assert key(x.copy(), base) == key(x, base) == key(np.asfortranarray(x), base)


def test_key_changes_with_preprocessing_and_rows(files, tmp_path):
    cache = str(tmp_path / "cache")
    runs = [{}, {"normalize": True}, {"clip": 0.9}, {"max_rows": 100}, {"max_rows": 100, "seed": 8}]
    for count, extra in enumerate(runs, 1):
        res = repalign.compare(*files, cache=cache, **{**FAST, **extra})
        assert not any("read from the cache" in n for n in res.notes), extra
        assert len(_entries(cache)) == 2 * count


def test_approximate_lists_are_not_cached(files, tmp_path):
    """Their recall is measured while they are searched, so a cached copy would have no measured accuracy."""
    cache = str(tmp_path / "cache")
    first = repalign.compare(*files, cache=cache, search="approx", **FAST)
    assert first.search is not None
    assert not os.path.exists(cache) or not _entries(cache)
    second = repalign.compare(*files, cache=cache, search="approx", **FAST)
    assert not any("read from the cache" in n for n in second.notes) and second.search is not None
    assert _bare(first) == _bare(second)


def test_full_cache_disk_still_computes_with_a_note_and_leaves_no_partial_entry(files, tmp_path, monkeypatch):
    """A cache on a full disk: the write fails mid-entry (ENOSPC at fsync); the run's report is unchanged, the
    note says why once, and no entry or temporary file is left behind to be read later."""
    import errno

    from repalign import safe_write

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    cache = tmp_path / "cache"
    plain = repalign.compare(*files, **FAST)
    monkeypatch.setattr(safe_write.os, "fsync", full)
    res = repalign.compare(*files, cache=str(cache), **FAST)
    notes = [n for n in res.notes if "could not be written" in n]
    assert len(notes) == 1 and os.strerror(errno.ENOSPC) in notes[0]
    assert _bare(plain) == _bare(res)
    assert os.listdir(cache) == []
