"""The notebook user: array-likes as inputs, names for inputs, results that show themselves.

Each coerced input must give exactly the result of the same values as a plain numpy array (the JSON document
minus timing); torch, pandas and polars tests skip when the library is absent.
"""

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import repalign
from repalign.cli import app
from repalign.errors import InputError, RepalignError, UsageError
from repalign.io.coerce import as_array

FAST = {"resamples": 30, "permutations": 20, "seed": 3}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(40, 6))
    y = x @ rng.normal(size=(6, 5)) + 0.5 * rng.normal(size=(40, 5))
    return x.astype(np.float32), y.astype(np.float32)


def doc(result) -> dict:
    d = result.to_dict()
    d.pop("timing")
    return d


def table_text(result) -> str:
    from rich.console import Console

    from repalign import report

    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(report.table(result))
    return out.getvalue()


def same_as_numpy(a, x, y, **kw):
    """compare(a, y) gives exactly compare(x, y)'s document."""
    assert doc(repalign.compare(a, y, **FAST, **kw)) == doc(repalign.compare(x, y, **FAST, **kw))


# ---------------------------------------------------------------- coercion


class ArrayOnly:
    """Only the __array__ protocol."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a


class DLPackOnly:
    """Only the DLPack protocol (as JAX or CuPy arrays offer)."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kw):
        return self.a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def test_array_protocol(data):
    x, y = data
    same_as_numpy(ArrayOnly(x), x, y)


def test_dlpack(data):
    x, y = data
    same_as_numpy(DLPackOnly(x), x, y)


def test_list_of_lists(data):
    x, y = data
    x64 = x.astype(np.float64)  # python floats are float64
    same_as_numpy(x64.tolist(), x64, y)
    same_as_numpy([list(row) for row in x64], x64, y)


def test_ragged_list_names_the_input(data):
    _, y = data
    with pytest.raises(InputError, match=r"^array a: ragged") as e:
        repalign.compare([[1.0, 2.0], [3.0]] + [[1.0, 2.0]] * 20, y[:22])
    assert "\n" not in str(e.value)


def test_not_an_array_names_the_input():
    with pytest.raises(InputError, match=r"^array b: a object is not an array") as e:
        as_array(object(), "array b")
    assert "\n" not in str(e.value)


def test_torch_tensor_requiring_grad(data):
    torch = pytest.importorskip("torch")
    x, y = data
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    same_as_numpy(t, x, y)
    same_as_numpy(t * 1.0, x, y)  # a non-leaf tensor in a graph


def test_torch_bfloat16_widened_with_note(data):
    torch = pytest.importorskip("torch")
    x, y = data
    t = torch.from_numpy(x.copy()).to(torch.bfloat16)
    widened = t.float().numpy()  # the exact float32 values of the bfloat16 ones
    got, want = doc(repalign.compare(t, y, **FAST)), doc(repalign.compare(widened, y, **FAST))
    assert got.pop("notes") == ["array a: bfloat16 values widened to float32"]
    want.pop("notes")
    assert got == want


def test_torch_pandas_not_imported_for_other_inputs():
    code = ("import sys, numpy as np; from repalign.io.coerce import as_array; x = np.ones((3, 2)); "
            "as_array(x, 'a'); as_array(x.tolist(), 'a'); "
            "print(sorted(m for m in ('torch', 'pandas', 'polars') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"


def test_pandas_series_of_vectors(data):
    pd = pytest.importorskip("pandas")
    x, y = data
    same_as_numpy(pd.Series(list(x)), x, y)  # cells are numpy rows
    x64 = x.astype(np.float64)
    same_as_numpy(pd.Series(x64.tolist()), x64, y)  # cells are lists


def test_pandas_ragged_series_names_the_input(data):
    pd = pytest.importorskip("pandas")
    _, y = data
    s = pd.Series([[1.0, 2.0]] * 39 + [[1.0]])
    with pytest.raises(InputError, match=r"^array b: ragged"):
        repalign.compare(y, s)


def test_polars_series_of_vectors(data):
    pl = pytest.importorskip("polars")
    x, y = data
    x64 = x.astype(np.float64)
    same_as_numpy(pl.Series("emb", x64.tolist()), x64, y)
    with pytest.raises(InputError, match=r"^array a: ragged"):
        as_array(pl.Series("emb", [[1.0, 2.0], [1.0]]), "array a")


def test_matrix_coerces_every_input(data):
    x, y = data
    got = doc(repalign.matrix([ArrayOnly(x), y.tolist()], **FAST))
    want = doc(repalign.matrix([x, y.astype(np.float64)], **FAST))
    assert got == want


# ---------------------------------------------------------------- names


def test_compare_labels_in_table_and_json(data):
    x, y = data
    r = repalign.compare(x, y, labels=("text-model", "image-model"), **FAST)
    assert [i.name for i in r.inputs] == ["text-model", "image-model"]
    assert r.to_dict()["inputs"][0]["name"] == "text-model"
    assert type(r).from_dict(r.to_dict()).inputs == r.inputs
    text = table_text(r)
    assert "text-model" in text and "image-model" in text
    plain = repalign.compare(x, y, **FAST)
    assert "name" not in plain.to_dict()["inputs"][0]
    same = r.to_dict()
    for i in same["inputs"]:
        del i["name"]
    same.pop("timing")
    assert same == doc(plain)  # names change nothing else


def test_matrix_dict_names(data):
    x, y = data
    m = repalign.matrix({"llm": x, "lvm": y}, **FAST)
    assert [i.name for i in m.inputs] == ["llm", "lvm"]
    text = table_text(m)
    assert "llm" in text and "lvm" in text and "array 0" not in text
    from repalign import report

    rows = list(csv.DictReader(io.StringIO(report.FORMATTERS["csv"].format(m))))
    assert rows and rows[0]["a"] == "llm" and rows[0]["b"] == "lvm"  # the names, in the long form to_pandas reads


def test_bad_labels():
    x = np.zeros((5, 2))
    with pytest.raises(UsageError, match="expected 2 names"):
        repalign.compare(x, x, labels=("one",))
    with pytest.raises(UsageError, match="same name"):
        repalign.matrix([x, x], labels=["s", "s"])
    with pytest.raises(UsageError, match="not both"):
        repalign.matrix({"a": x, "b": x}, labels=["a", "b"])


def test_cli_names(tmp_path, monkeypatch, data):
    x, y = data
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", x)
    np.save("y.npy", y)
    np.save("v=1.npy", y)  # an existing path with '=' is a path
    runner = CliRunner()
    r = runner.invoke(app, ["matrix", "llm=x.npy", "y.npy", "v=1.npy", "-B", "20", "-P", "20", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert [i.get("name") for i in d["inputs"]] == ["llm", None, None]
    assert [i["path"] for i in d["inputs"]] == ["x.npy", "y.npy", "v=1.npy"]
    r = runner.invoke(app, ["compare", "x.npy", "y.npy", "--label-a", "TXT", "--label-b", "IMG", "-B", "20"])
    assert r.exit_code == 0, r.stderr
    assert "TXT" in r.stdout and "IMG" in r.stdout


# ---------------------------------------------------------------- display


def test_repr_is_short_and_has_each_value(data):
    x, y = data
    r = repalign.compare(x, y, metrics="mknn,cka,cka-unbiased", **FAST)
    text = repr(r)
    lines = text.splitlines()
    assert len(lines) == 1 + len(r.metrics)
    for m, line in zip(r.metrics, lines[1:]):
        assert line.strip().startswith(m.name + ":")
        assert f"{m.value:.4g}" in line and f"{m.ci_low:.4g}" in line
        assert m.chance is None or f"chance {m.chance:.4g}" in line
    m = repalign.matrix({"p": x, "q": y, "r": x}, **FAST)
    assert len(repr(m).splitlines()) == 1 + 3 * 2


def test_repr_html_escapes(data):
    x, y = data
    r = repalign.compare(x, y, labels=("<b>", "a&b"), **FAST)
    h = r._repr_html_()
    assert "<b>" not in h.replace("<table>", "") and "&lt;b&gt;" in h and "a&amp;b" in h
    assert h.startswith("<table>") and h.count("<tr>") == 1 + len(r.metrics)
    m = repalign.matrix({"<i>x</i>": x, "y": y}, **FAST)
    assert "<i>" not in m._repr_html_() and "&lt;i&gt;" in m._repr_html_()


def test_to_pandas_round_trips_csv(data):
    pytest.importorskip("pandas")
    from repalign.report.csv import CsvFormat

    x, y = data
    for result in (repalign.compare(x, y, **FAST), repalign.matrix([x, y, x], **FAST)):
        df = result.to_pandas()
        rows = list(csv.DictReader(io.StringIO(CsvFormat().format(result))))
        assert list(df.columns) == list(rows[0].keys()) and len(df) == len(rows)
        for col in ("value", "ci_low", "ci_high", "chance", "z"):
            want = [float(r[col]) if r[col] else np.nan for r in rows]
            np.testing.assert_array_equal(df[col].to_numpy(dtype=float), want)


def test_to_pandas_without_pandas(data, monkeypatch):
    x, y = data
    r = repalign.compare(x, y, **FAST)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(RepalignError, match=r"pip install pandas$"):
        r.to_pandas()


def test_progress_true_shows_the_stages_and_changes_nothing(monkeypatch):
    """progress=True drives the CLI's spinner (even off a terminal, as in a notebook) with the same stages."""
    from repalign import console

    seen, closed = [], []

    class Recorder:
        def __init__(self, quiet, always=False):
            assert not quiet and always

        def __call__(self, stage):
            seen.append(stage)

        def close(self):
            closed.append(True)

    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((80, 6)), rng.standard_normal((80, 5))
    plain = repalign.compare(X, Y, resamples=0, permutations=20, seed=1)
    monkeypatch.setattr(console, "Progress", Recorder)
    shown = repalign.compare(X, Y, resamples=0, permutations=20, seed=1, progress=True)
    assert [m.to_dict() for m in shown.metrics] == [m.to_dict() for m in plain.metrics]
    assert "reading inputs" in seen and any("permutations" in s for s in seen) and closed == [True]
    seen.clear()
    repalign.matrix([X, Y, X], resamples=0, permutations=0, seed=1, progress=True)
    assert any(s.startswith("pair 1/3") for s in seen) and closed == [True, True]
