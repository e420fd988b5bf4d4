"""The memory guard: a run that cannot fit is refused before anything is loaded."""

import pytest
from test_cli import expect_input_error, run

from repalign import memory


@pytest.fixture
def files(write, golden):
    return write.npy(golden[0], "x.npy"), write.h5("y.h5", emb=golden[1])


def test_refused_with_estimate_and_advice(files, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 50 * 2**20)
    msg = expect_input_error(["compare", *files], "comparing 100 items", "needs about", "0.0 GB is available",
                             "fewer items")
    assert "GB of memory" in msg


def test_env_limit(files):
    r = run("compare", *files, env={"REPALIGN_MEMORY_LIMIT": "10M"})
    assert r.exit_code == 2 and "needs about" in r.stderr
    assert run("compare", *files, "--resamples", "0", env={"REPALIGN_MEMORY_LIMIT": "8G"}).exit_code == 0
    bad = run("compare", *files, env={"REPALIGN_MEMORY_LIMIT": "lots"})
    assert bad.exit_code == 2 and "REPALIGN_MEMORY_LIMIT" in bad.stderr


def test_estimate_grows_with_the_work():
    base = dict(resident=(0, 0), work_itemsize=(4, 4), preprocess=False, depth=30, k=10, resamples=1000)
    small = memory.estimate(10_000, (768, 768), neighbors=True, cka=True, cka_permutations=False, **base)
    big = memory.estimate(1_000_000, (768, 768), neighbors=True, cka=True, cka_permutations=False, **base)
    perms = memory.estimate(10_000, (768, 768), neighbors=True, cka=True, cka_permutations=True, **base)
    # The float32 copy FAISS searches is the largest part: n·d·4 bytes.
    assert big["working"] > 1_000_000 * 768 * 4 > small["working"]
    assert perms["working"] > small["working"]
    assert small["total"] == small["base"] + small["inputs"] + small["working"]


def test_in_memory_arrays_are_planned_too(monkeypatch, rng):
    import repalign

    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)
    with pytest.raises(repalign.InputError, match="needs about"):
        repalign.compare(rng.standard_normal((50, 4)), rng.standard_normal((50, 4)))
