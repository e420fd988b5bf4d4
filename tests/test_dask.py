"""--workers / --scheduler: a real cluster of two worker processes gives the single-process run's report.

The reference is always the same run without a cluster (one process, the code path every other test covers);
only the report's ``timing`` (wall-clock seconds) may differ.
"""

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("distributed")

from conftest import bare_json, report_json

import repalign  # noqa: E402
from repalign.cli import app  # noqa: E402

# mknn (lists, IJ interval, permutations), cka (statistics, jackknife interval, explicit permutations) and
# cknna (ordered lists) cover every kind of per-layer work a task ships back.
METRICS = "mknn,cka,cknna"
SETTINGS = ["-m", METRICS, "-B", "200", "-P", "100", "--seed", "11", "-f", "json"]
LIBRARY = {"metrics": METRICS, "resamples": 200, "permutations": 100, "seed": 11}


@pytest.fixture(autouse=True)
def no_ambient_cache(monkeypatch):
    monkeypatch.delenv("REPALIGN_CACHE", raising=False)


@pytest.fixture(scope="module")
def scheduler():
    """One cluster of two worker processes for the library tests (--scheduler); --workers starts its own."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    """Three inputs of n = 300 items × 2 layers (16, 24 and 32 dimensions) sharing a rank-6 signal; the second
    is float16, so its layers' reads add a note (which must come back from the workers)."""
    rng = np.random.default_rng(20261203)
    root = tmp_path_factory.mktemp("layered")
    n, z = 300, rng.standard_normal((300, 6))
    paths = []
    for number, (d, dtype) in enumerate(((16, np.float32), (24, np.float16), (32, np.float32))):
        stack = np.stack([z @ rng.standard_normal((6, d)) + (0.5 + layer) * rng.standard_normal((n, d))
                          for layer in range(2)], axis=1)
        path = root / f"model{number}.npy"
        np.save(path, stack.astype(dtype))
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def single(layered, tmp_path_factory):
    """Each input's last layer as a plain n×d file."""
    root = tmp_path_factory.mktemp("single")
    paths = []
    for path in layered:
        target = root / os.path.basename(path)
        np.save(target, np.load(path)[:, -1])
        paths.append(str(target))
    return paths


def test_matrix_with_two_workers_gives_the_single_processreport_json(layered):
    local = CliRunner().invoke(app, ["matrix", *layered, *SETTINGS])
    cluster = CliRunner().invoke(app, ["matrix", *layered, *SETTINGS, "--workers", "2"])
    expected = report_json(local)
    assert json.dumps(report_json(cluster)) == json.dumps(expected)
    # The run did score best layer pairs with intervals and p-values (not an empty report that trivially agrees).
    assert any("float16 values widened" in note for note in expected["notes"])
    cells = [m for cell in expected["cells"] for m in cell["metrics"]]
    assert {m["name"] for m in cells} == {"mknn", "cka", "cknna"}
    assert all(m["ci_low"] is not None and m["p_value"] is not None for m in cells if m["name"] != "cknna")


def test_compare_sweep_on_a_scheduler_gives_the_single_process_result(layered, scheduler):
    kwargs = {**LIBRARY, "max_rows": 250}  # subsampled rows are shipped to the workers as indices
    local = repalign.compare(layered[0], layered[2], **kwargs)
    cluster = repalign.compare(layered[0], layered[2], scheduler=scheduler, **kwargs)
    assert local.sweep is not None and local.n == 250
    assert bare_json(cluster) == bare_json(local)
    assert set(cluster.timing) == set(local.timing)  # the same stages were timed


def test_single_arrays_on_a_scheduler(single, scheduler):
    """A plain comparison (one pair, one layer each) and a matrix of single arrays with its diagonal."""
    local = repalign.compare(single[0], single[1], **LIBRARY)
    cluster = repalign.compare(single[0], single[1], scheduler=scheduler, **LIBRARY)
    assert local.sweep is None and any("float16" in note for note in local.notes)
    assert bare_json(cluster) == bare_json(local)
    local = repalign.matrix(single, **LIBRARY)
    cluster = repalign.matrix(single, scheduler=scheduler, **LIBRARY)
    assert len(local.diagonal) == 3
    assert bare_json(cluster) == bare_json(local)


def test_matrix_against_a_reference_on_a_scheduler(layered, scheduler):
    kwargs = {**LIBRARY, "layers": "-1,0"}  # the layer selection is shipped and applied by the workers
    local = repalign.matrix(layered[1:], reference=layered[0], **kwargs)
    cluster = repalign.matrix(layered[1:], reference=layered[0], scheduler=scheduler, **kwargs)
    assert local.inputs[0].layers == ("1", "0")
    assert bare_json(cluster) == bare_json(local)


def test_relative_paths_are_opened_where_the_driver_sees_them(layered, scheduler, monkeypatch):
    """The workers started elsewhere (their working directory is not this one): the driver resolves relative
    paths for them, and the report still names the inputs as given."""
    monkeypatch.chdir(os.path.dirname(layered[0]))
    names = [os.path.basename(p) for p in layered]
    filled = repalign.matrix(names, cache="relative-cache", **LIBRARY)  # the cache directory is relative too
    local = repalign.matrix(names, cache="relative-cache", **LIBRARY)
    cluster = repalign.matrix(names, scheduler=scheduler, cache="relative-cache", **LIBRARY)
    assert [i.path for i in cluster.inputs] == names
    assert not any("cache" in note for note in filled.notes)
    assert sum(note.endswith("read from the cache relative-cache") for note in cluster.notes) == 3
    assert bare_json(cluster) == bare_json(local)


def test_approximate_search_records_come_back_from_the_workers(layered, scheduler):
    """Each layer task keeps its search backend's records; the report's search object is the local one."""
    kwargs = {**LIBRARY, "search": "approx", "metrics": "mknn,cka"}
    local = repalign.compare(layered[1], layered[2], **kwargs)
    cluster = repalign.compare(layered[1], layered[2], scheduler=scheduler, **kwargs)
    assert local.search is not None and len(local.search.indexes) == 4
    assert bare_json(cluster) == bare_json(local)


def test_the_cache_works_with_workers(layered, scheduler, tmp_path):
    """Workers write the entries (atomically, each its own); a second run reads them; the notes say so as in a
    single-process run, and the numbers do not change."""
    cache = str(tmp_path / "cache")
    kwargs = {**LIBRARY, "metrics": "mknn,cka"}
    first = repalign.matrix(layered, scheduler=scheduler, cache=cache, **kwargs)
    entries = sorted(p for p in os.listdir(cache) if p.endswith(".npz"))
    assert len(entries) == 6  # one per input layer
    assert not [p for p in os.listdir(cache) if p.endswith(".tmp")]  # no temporary file left behind
    second = repalign.matrix(layered, scheduler=scheduler, cache=cache, **kwargs)
    local_second = repalign.matrix(layered, cache=cache, **kwargs)
    assert sum("read from the cache" in note for note in second.notes) == 3
    assert bare_json(second) == bare_json(local_second)
    d_first, d_second = json.loads(bare_json(first)), json.loads(bare_json(second))
    assert d_first["cells"] == d_second["cells"]
