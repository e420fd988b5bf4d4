"""--workers / --scheduler given bad input: one line, exit 2, no report written; a worker that dies once is
recomputed and changes nothing."""

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("distributed")

import repalign  # noqa: E402
from repalign.cli import app  # noqa: E402
from repalign.engine import distributed  # noqa: E402
from repalign.errors import UsageError  # noqa: E402
from repalign.options import usable_cpus  # noqa: E402

FAST = ["-m", "mknn,cka", "-B", "0", "-P", "0", "--seed", "5"]


@pytest.fixture(autouse=True)
def no_ambient_cache(monkeypatch):
    monkeypatch.delenv("REPALIGN_CACHE", raising=False)
    monkeypatch.delenv(distributed.KILL_HOOK, raising=False)


@pytest.fixture
def inputs(tmp_path):
    """Two inputs of 120 items × 2 layers."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((120, 4))
    paths = []
    for number in range(2):
        stack = np.stack([z @ rng.standard_normal((4, 12)) + rng.standard_normal((120, 12)) for _ in range(2)], 1)
        path = tmp_path / f"m{number}.npy"
        np.save(path, stack)
        paths.append(str(path))
    return paths


def _fails(args: list[str], output) -> str:
    """The one line of a run that must exit 2 without writing its report."""
    r = CliRunner().invoke(app, [*args, "-o", str(output)])
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert not output.exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize("workers, said", [
    ("0", "--workers must be at least 1 (got 0)"),
    ("-3", "--workers must be at least 1 (got -3)"),
    ("100000", f"--workers 100000: this machine has {usable_cpus()} CPU"),
])
def test_a_bad_worker_count_is_refused(inputs, tmp_path, workers, said):
    assert said in _fails(["matrix", *inputs, *FAST, "--workers", workers], tmp_path / "out.json")


def test_a_worker_count_that_is_no_number_is_refused():
    with pytest.raises(UsageError, match=r"workers= must be a whole number of processes \(got '2'\)"):
        repalign.matrix(["a.npy", "b.npy"], workers="2")


def test_workers_and_scheduler_together_are_refused(inputs, tmp_path):
    line = _fails(["compare", *inputs, *FAST, "--workers", "1", "--scheduler", "tcp://127.0.0.1:8786"],
                  tmp_path / "out.json")
    assert line == "Error: give --workers (a local cluster) or --scheduler (an existing one), not both"


def test_an_unreachable_scheduler_is_named(inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_SECONDS", 1.0)
    line = _fails(["matrix", *inputs, *FAST, "--scheduler", "tcp://127.0.0.1:9"], tmp_path / "out.json")
    assert line.startswith("Error: --scheduler tcp://127.0.0.1:9: no scheduler answered within 1 s")
    assert line.endswith("check the address and that the scheduler runs and is reachable from here")


def test_a_malformed_scheduler_address_is_refused(inputs, tmp_path):
    line = _fails(["matrix", *inputs, *FAST, "--scheduler", "nowhere://x"], tmp_path / "out.json")
    assert line.startswith("Error: --scheduler nowhere://x: not a Dask scheduler address (unknown address scheme")
    line = _fails(["matrix", *inputs, *FAST, "--scheduler", "tcp://"], tmp_path / "out.json")
    assert line == "Error: --scheduler tcp://: the address has no host; expected e.g. tcp://10.0.0.5:8786"


def test_arrays_and_standard_input_are_refused():
    X = np.zeros((10, 3))
    with pytest.raises(UsageError, match="input 2 is an in-memory array, but workers read their inputs from files"):
        repalign.matrix(["a.npy", X], workers=1)
    r = CliRunner().invoke(app, ["compare", "-", "b.npy", "--workers", "1"], input=b"")
    assert r.exit_code == 2 and "'-' (standard input) cannot be read by workers" in r.stderr


def test_an_input_the_workers_cannot_read(inputs, tmp_path):
    """The driver read the headers; the file is gone when the workers open it (as on a node without the
    shared file system)."""
    def vanish(stage: str) -> None:
        if stage.startswith("starting") and os.path.exists(inputs[1]):
            os.remove(inputs[1])

    with pytest.raises(repalign.RepalignError) as info:
        repalign.matrix(inputs, workers=1, metrics="mknn", resamples=0, permutations=0, progress=vanish)
    message = str(info.value)
    assert f"cannot read {inputs[1]}" in message and "every worker must see them at the same path" in message
    assert "\n" not in message


def test_a_worker_that_dies_once_changes_nothing(inputs, tmp_path, monkeypatch):
    """The first layer task kills its worker; Dask restarts it and runs the task again (deterministic)."""
    local = CliRunner().invoke(app, ["matrix", *inputs, *FAST, "-f", "json"])
    monkeypatch.setenv(distributed.KILL_HOOK, str(tmp_path))
    cluster = CliRunner().invoke(app, ["matrix", *inputs, *FAST, "-f", "json", "--workers", "2"])
    assert (tmp_path / "killed").exists()  # a worker did die
    assert cluster.exit_code == 0, cluster.stderr
    a, b = json.loads(local.stdout), json.loads(cluster.stdout)
    a.pop("timing"), b.pop("timing")
    assert a == b


def test_a_worker_that_keeps_dying_is_an_error(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv(distributed.KILL_HOOK, "always")
    line = _fails(["matrix", *inputs, *FAST, "--workers", "1"], tmp_path / "out.json")
    assert line.startswith("Error: the local cluster of 1 worker: a layer task killed its worker 4 times")
