"""One layer's neighbour search split into query-row shards on a real cluster of two worker processes gives the
single-process run's lists and report.

The threshold is lowered on the driver (REPALIGN_SHARD_MIN_ROWS, read by the driver only and shipped in the
layer plan), so n = 1,500 is split into 4 shards (two per worker). The reference is always the same run
without a cluster; only the report's ``timing`` may differ.
"""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("distributed")

from conftest import bare_json, report_json

import repalign  # noqa: E402
from repalign import engine  # noqa: E402
from repalign.cli import app  # noqa: E402
from repalign.engine import distributed  # noqa: E402
from repalign.metrics import list_depth  # noqa: E402
from repalign.options import Options  # noqa: E402

N = 1500
SPLIT = "cluster: 2 layer searches split into 4 shard tasks each"


@pytest.fixture(autouse=True)
def split_from_1000_rows(monkeypatch):
    monkeypatch.delenv("REPALIGN_CACHE", raising=False)
    monkeypatch.delenv(distributed.KILL_HOOK, raising=False)
    monkeypatch.delenv(distributed.SHARD_KILL_HOOK, raising=False)
    monkeypatch.setenv(distributed.SHARD_ROWS_ENV, "1000")


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two inputs of N items sharing a rank-5 signal, float32 and float64, clustered (near-ties in lists)."""
    rng = np.random.default_rng(1203)
    root = tmp_path_factory.mktemp("shard")
    z = rng.standard_normal((N, 5)) + 3 * rng.standard_normal((20, 5))[rng.integers(0, 20, N)]
    paths = []
    for number, (d, dtype) in enumerate(((24, np.float32), (32, np.float64))):
        path = root / f"m{number}.npy"
        np.save(path, (z @ rng.standard_normal((5, d)) + rng.standard_normal((N, d))).astype(dtype))
        paths.append(str(path))
    return paths


def test_compare_with_two_workers_splits_each_search_and_gives_the_single_processreport_json(inputs):
    """A plain compare (one pair, no sweep): each input's one layer task splits its exact search; mknn's
    interval reads ordered lists deeper than k, cka its statistics."""
    args = ["compare", *inputs, "-m", "mknn,cka", "--search", "exact", "-B", "200", "-P", "50", "--seed", "7",
            "-f", "json"]
    local = CliRunner().invoke(app, args)
    cluster = CliRunner().invoke(app, [*args, "--workers", "2"])
    expected = report_json(local)
    assert json.dumps(report_json(cluster)) == json.dumps(expected)
    assert {m["name"] for m in expected["metrics"]} == {"mknn", "cka"}
    assert all(m["ci_low"] is not None and m["p_value"] is not None for m in expected["metrics"])


@pytest.mark.parametrize("search", ["exact", "approx"])
def test_the_lists_are_the_single_process_lists(inputs, scheduler, search):
    """The lists themselves, not only the report: unordered sets of k (no resamples), whose float32 order
    inside each set is compared too, and approximate lists."""
    settings = {"metrics": "mknn", "resamples": 0, "permutations": 0, "seed": 3, "search": search}
    local = engine.prepare(inputs, Options.build(**settings), compare=True)
    options = Options.build(**settings, scheduler=scheduler)
    stages: list[str] = []
    done = distributed.score(engine.prepare(inputs, options, compare=True), inputs, options, [(0, 1)],
                             compare=True, diagonal=False, progress=stages.append)
    assert SPLIT in stages
    k = options.k
    for here, there in zip(local.reps, done.reps):
        want = here.lists(0, list_depth(N, k, 0), options.distance, k, False)
        assert there.work[0].lists.shape == want.shape == (N, k)
        assert np.array_equal(there.work[0].lists, want)


def test_approximate_search_report_on_a_scheduler(inputs, scheduler):
    """Training, tuning and the measuring sample stay in the layer task; the report's search object (recall,
    nprobe, the rows searched exactly as a fallback, mknn's shift) is the single-process one."""
    settings = {"metrics": "mknn,cka", "resamples": 100, "permutations": 20, "seed": 9, "search": "approx"}
    local = repalign.compare(*inputs, **settings)
    stages: list[str] = []
    cluster = repalign.compare(*inputs, scheduler=scheduler, progress=stages.append, **settings)
    assert SPLIT in stages
    assert local.search is not None and len(local.search.indexes) == 2 and local.search.shifts
    assert bare_json(cluster) == bare_json(local)


def test_split_exact_lists_are_cached(inputs, scheduler, tmp_path):
    """The layer task writes the joined lists to --cache as an unsplit search would; a second run reads them
    and runs no shard."""
    settings = {"metrics": "mknn", "resamples": 0, "permutations": 0, "seed": 2, "search": "exact",
                "cache": str(tmp_path / "cache")}
    first_stages: list[str] = []
    second_stages: list[str] = []
    first = repalign.compare(*inputs, scheduler=scheduler, progress=first_stages.append, **settings)
    second = repalign.compare(*inputs, scheduler=scheduler, progress=second_stages.append, **settings)
    local = repalign.compare(*inputs, **settings)
    assert SPLIT in first_stages and not any("shard" in s for s in second_stages)
    assert sum("read from the cache" in note for note in second.notes) == 2
    assert bare_json(second) == bare_json(local) and second.metrics == first.metrics


def test_below_the_threshold_nothing_is_split(inputs, scheduler, monkeypatch):
    monkeypatch.setenv(distributed.SHARD_ROWS_ENV, str(N + 1))
    stages: list[str] = []
    repalign.compare(*inputs, metrics="mknn", resamples=0, permutations=0, scheduler=scheduler,
                     progress=stages.append)
    assert not any("shard" in s for s in stages) and any(s.startswith("cluster: 2 layer tasks done") for s in stages)


def test_a_local_split_that_cannot_fit_is_not_made(inputs, monkeypatch):
    """On a local cluster the driver knows this machine's memory (here: a shard said to need a petabyte)."""
    monkeypatch.setattr(distributed, "_shard_bytes", lambda n, d: 10**15)
    settings = {"metrics": "mknn", "resamples": 0, "permutations": 0, "seed": 1}
    local = repalign.compare(*inputs, **settings)
    stages: list[str] = []
    cluster = repalign.compare(*inputs, workers=2, progress=stages.append, **settings)
    assert not any("shard tasks" in s for s in stages)
    [note] = [x for x in cluster.notes if x not in local.notes]
    assert note.startswith("neighbour searches not split across the 2 workers: 2 search shards and their layer "
                           "tasks would hold ")
    assert cluster.metrics == local.metrics


@pytest.mark.parametrize("value", ["0", "many", "-5"])
def test_a_bad_threshold_is_refused(inputs, tmp_path, monkeypatch, value):
    monkeypatch.setenv(distributed.SHARD_ROWS_ENV, value)
    out = tmp_path / "out.json"
    r = CliRunner().invoke(app, ["compare", *inputs, "-m", "mknn", "-B", "0", "--workers", "1", "-o", str(out)])
    assert r.exit_code == 2 and not out.exists()
    assert r.stderr.strip() == (f"Error: REPALIGN_SHARD_MIN_ROWS={value}: expected a whole number of rows of at "
                                "least 1 (layers with that many rows are searched in shards; unset, 100,000)")


def test_a_shard_that_kills_its_worker_once_changes_nothing(inputs, tmp_path, monkeypatch):
    """The first shard task kills its worker (and any layer task waiting on that worker with it); Dask runs
    them again, with the same lists."""
    args = ["compare", *inputs, "-m", "mknn,cka", "-B", "0", "-P", "0", "--search", "exact", "--seed", "5", "-f",
            "json"]
    local = CliRunner().invoke(app, args)
    monkeypatch.setenv(distributed.SHARD_KILL_HOOK, str(tmp_path))
    cluster = CliRunner().invoke(app, [*args, "--workers", "2"])
    assert (tmp_path / "killed").exists()  # a shard did kill its worker
    assert report_json(cluster) == report_json(local)
