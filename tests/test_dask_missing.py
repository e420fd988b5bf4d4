"""Without the dask extra, --workers and --scheduler stop at once with the install line (runs without dask)."""

import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from repalign.cli import app


@pytest.fixture
def no_dask(monkeypatch):
    """As if dask.distributed were not installed (a None entry makes find_spec and import say so)."""
    monkeypatch.setitem(sys.modules, "distributed", None)


@pytest.mark.parametrize("option", [["--workers", "1"], ["--scheduler", "tcp://127.0.0.1:8786"]])
@pytest.mark.parametrize("command", ["compare", "matrix"])
def test_the_install_line_without_dask(no_dask, tmp_path, command, option):
    paths = []
    for name in ("a.npy", "b.npy"):
        np.save(tmp_path / name, np.random.default_rng(0).standard_normal((30, 4)))
        paths.append(str(tmp_path / name))
    out = tmp_path / "out.json"
    r = CliRunner().invoke(app, [command, *paths, *option, "-o", str(out)])
    assert r.exit_code == 2
    assert r.stderr.strip() == "Error: --workers and --scheduler need dask.distributed: pip install 'repalign[dask]'"
    assert not out.exists()
