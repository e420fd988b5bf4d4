"""The shipped sample data: every format holds the same arrays, and repalign reads them all."""

import json
from pathlib import Path

import numpy as np
import pytest
import reference as ref

import repalign
from repalign import io

DATA = Path(__file__).parent.parent / "sample_data"


@pytest.fixture(scope="module")
def minilm():
    return np.load(DATA / "minilm.npy")


def test_formats_agree(minilm):
    tfidf = np.load(DATA / "tfidf.npy")
    assert np.array_equal(io.load(f"{DATA}/docstrings.parquet:minilm").array, minilm)
    assert np.array_equal(io.load(f"{DATA}/docstrings.parquet:tfidf").array, tfidf)
    assert np.array_equal(io.load(f"{DATA}/embeddings.h5").array, tfidf)  # the only 2-D float dataset
    layers = {i.name: i for i in io.inspect(DATA / "embeddings.h5")}["minilm/layers"]
    assert layers.shape == (1024, 7, 384) and layers.dtype == "float16"


def test_real_data_matches_dense_reference(minilm):
    tfidf = np.load(DATA / "tfidf.npy")
    r = repalign.compare(f"{DATA}/minilm.npy", f"{DATA}/docstrings.parquet:tfidf", metrics="mknn,cka,cka-unbiased")
    assert r.metric("mknn").value == pytest.approx(ref.mutual_knn(minilm, tfidf, 10), abs=1e-12)
    assert r.metric("cka").value == pytest.approx(ref.cka(minilm, tfidf), abs=1e-9)
    assert r.metric("cka-unbiased").value == pytest.approx(ref.cka(minilm, tfidf, unbiased=True), abs=1e-9)
    # Far above chance on real, related representations.
    assert r.metric("mknn").value > 10 * r.metric("mknn").chance


def test_inspect_marks_the_layer_stack():
    from typer.testing import CliRunner

    from repalign.cli import app

    r = CliRunner().invoke(app, ["inspect", str(DATA / "embeddings.h5"), "-f", "json"])
    arrays = {a["key"]: a for a in json.loads(r.stdout)["arrays"]}
    assert arrays["minilm/layers"]["layers"] == 7 and not arrays["minilm/layers"]["embedding"]
    assert arrays["tfidf/final"]["embedding"] and arrays["tfidf/final"]["layers"] is None
