"""Shared fixtures: a seeded generator, paired data, and writers for every format."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)


def make_pair(rng, n=200, d1=16, d2=24, signal=1.0, rank=4, dtype=np.float64):
    """Two views of the same n items: a shared rank-`rank` latent plus independent noise."""
    z = rng.standard_normal((n, rank))
    X = z @ rng.standard_normal((rank, d1)) * signal + rng.standard_normal((n, d1))
    Y = z @ rng.standard_normal((rank, d2)) * signal + rng.standard_normal((n, d2))
    return X.astype(dtype), Y.astype(dtype)


@pytest.fixture
def pair(rng):
    return make_pair(rng)


def golden_pair():
    """docs/formulas.md §5: legacy RandomState, seed 1337, 100×10 float64."""
    state = np.random.RandomState(1337)
    X = state.randn(100, 10)
    Y = state.randn(100, 10) + X
    return X, Y


@pytest.fixture
def golden():
    return golden_pair()


@pytest.fixture(scope="module")
def one_faiss_thread():
    """FAISS's OpenMP threads spin on a busy 2-core machine; one thread keeps many tiny runs fast."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


class Writers:
    """Write an array into tmp_path in each supported format; returns the selector string."""

    def __init__(self, root: Path):
        self.root = root

    def npy(self, arr, name="x.npy"):
        p = self.root / name
        np.save(p, arr)
        return str(p)

    def npz(self, name="x.npz", **arrays):
        p = self.root / name
        np.savez(p, **arrays)
        return str(p)

    def h5(self, name="x.h5", **datasets):
        import h5py

        p = self.root / name
        with h5py.File(p, "w") as f:
            for key, arr in datasets.items():
                f.create_dataset(key.replace("__", "/"), data=arr)
        return str(p)

    def parquet(self, name="x.parquet", fixed=True, ids=None, **columns):
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {}
        for key, arr in columns.items():
            arr = np.asarray(arr)
            flat = pa.array(arr.reshape(-1))
            if fixed:
                cols[key] = pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])
            else:
                offsets = pa.array(np.arange(0, arr.size + 1, arr.shape[1], dtype=np.int32))
                cols[key] = pa.ListArray.from_arrays(offsets, flat)
        if ids is not None:
            cols["id"] = pa.array(ids)
        p = self.root / name
        pq.write_table(pa.table(cols), p)
        return str(p)


@pytest.fixture
def write(tmp_path):
    return Writers(tmp_path)


def report_json(result) -> dict:
    """A CLI run's JSON report without its wall-clock timings (the run must have succeeded)."""
    import json

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    report.pop("timing")
    return report


def bare_json(result) -> str:
    """A library result as its JSON report without the timings, serialised (byte comparison)."""
    import json

    d = result.to_dict()
    d.pop("timing")
    return json.dumps(d, sort_keys=True)

