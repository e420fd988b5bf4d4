"""CSV/TSV, FAISS index and AnnData .h5ad inputs, each written by its own ecosystem's library, give exactly the
result of the same array saved as .npy; ids, inspect and the memory plan work; malformed files exit 2."""

import csv
import hashlib
import json

import numpy as np
import pytest
from test_cli import expect_input_error, run

import repalign.io as rio

FAST = ["--resamples", "0", "--permutations", "0", "-f", "json", "-m", "mknn,cka,cka-unbiased", "--k", "5"]


def report(*args):
    """The JSON report minus what may differ between two files holding the same array: wall times and each
    input's path, format and key."""
    r = run("compare", *args, *FAST, "--seed", "7")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    doc.pop("timing")
    for i in doc["inputs"]:
        del i["path"], i["format"], i["key"]
    return doc


def same_as_npy(write, X, Y, a, b):
    """a and b (selectors of X and Y in another format) give the report of X and Y saved as .npy."""
    assert report(a, b) == report(write.npy(X, "ref_x.npy"), write.npy(Y, "ref_y.npy"))


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def refused(path, *needles, args=None):
    """exit 2 with one line naming the file, and the file unchanged."""
    before = digest(path)
    expect_input_error(args or ["compare", path, path], str(path), *needles)
    assert digest(path) == before


@pytest.fixture
def XY(rng):
    from conftest import make_pair

    return make_pair(rng, n=120, d1=7, d2=5)


# --- CSV / TSV ---------------------------------------------------------------------------------------------------


def test_tsv_without_header_like_the_projector(write, XY, tmp_path):
    X, Y = XY
    a, b = tmp_path / "vectors.tsv", tmp_path / "other.tsv"
    np.savetxt(a, X, delimiter="\t", fmt="%.17g")  # 17 significant digits: the float64 comes back exactly
    np.savetxt(b, Y, delimiter="\t", fmt="%.17g")
    assert np.array_equal(rio.load(str(a)).array, X)
    same_as_npy(write, X, Y, a, b)


def test_csv_with_header_written_by_the_csv_module(write, XY, tmp_path):
    X, Y = XY
    paths = []
    for name, arr in (("x.csv", X), ("y.csv", Y)):
        p = tmp_path / name
        with open(p, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([f"dim{j}" for j in range(arr.shape[1])])
            w.writerows(arr.tolist())  # repr of a float round-trips
        paths.append(p)
    same_as_npy(write, X, Y, *paths)


def test_float32_text_equals_the_values_as_parsed(write, XY, tmp_path):
    X, Y = (a.astype(np.float32) for a in XY)
    a, b = tmp_path / "x.csv", tmp_path / "y.csv"
    np.savetxt(a, X, delimiter=",", fmt="%.9g", header="a,b,c,d,e,f,g", comments="")
    np.savetxt(b, Y, delimiter=",", fmt="%.6g")  # fewer digits: compare with what numpy parses
    ref_a, ref_b = np.loadtxt(a, delimiter=",", skiprows=1), np.loadtxt(b, delimiter=",")
    assert np.array_equal(rio.load(str(a)).array, ref_a) and np.array_equal(rio.load(str(b)).array, ref_b)
    same_as_npy(write, ref_a, ref_b, a, b)


def test_pandas_headers_and_index_column(write, XY, tmp_path):
    pd = pytest.importorskip("pandas")
    X, Y = XY
    a, b = tmp_path / "x.csv", tmp_path / "y.csv"
    pd.DataFrame(X).to_csv(a, index=False, float_format="%.17g")  # header 0,1,...,d-1: still a header
    pd.DataFrame(Y).to_csv(b, float_format="%.17g")  # an unnamed index column first: not a dimension
    assert [i.shape for i in rio.inspect(str(a))] == [(120, 7)]
    assert [(i.name, i.shape) for i in rio.inspect(str(b))] == [("", (120, 5)), ("column1", (120,))]
    same_as_npy(write, X, Y, a, b)


def test_csv_ids_pair_shuffled_rows(write, XY, tmp_path, rng):
    X, Y = XY
    ids = np.array([f"item{i:03d}" for i in range(120)])
    perm = rng.permutation(120)
    a = tmp_path / "a.csv"
    with open(a, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name"] + [f"v{j}" for j in range(7)] + ["label"])
        for i in perm:
            w.writerow([ids[i], *X[i].tolist(), "cat" if i % 2 else "dog"])
    infos = {i.name: i for i in rio.inspect(str(a))}
    assert infos[""].shape == (120, 7) and infos["name"].shape == (120,) and not infos["label"].embedding_like
    b = write.npz("b.npz", emb=Y, id=ids)
    for how in (["--ids", "auto"], ["--ids-a", "name", "--ids-b", "id"]):
        got = report(a, b, *how)
        assert got["pairing"]["paired"] == 120
        expected = report(write.npz("ra.npz", emb=X[perm], id=ids[perm]), b, "--ids", "id")  # A's row order
        assert got["metrics"] == expected["metrics"] and got["pairing"] == expected["pairing"] | {
            "ids": ["name", "id"]}


def test_csv_integer_ids_are_integers(tmp_path):
    p = tmp_path / "x.tsv"
    p.write_text("id\ta\tb\n10\t1\t2\n-3\t3\t4\n7\t5\t6\n")
    ids = rio.reader_for(str(p)).read_ids("id")
    assert ids.dtype == np.int64 and ids.tolist() == [10, -3, 7]
    q = tmp_path / "y.tsv"
    q.write_text("id\ta\tb\n007\t1\t2\nx\t3\t4\n")
    assert rio.reader_for(str(q)).read_ids("id").tolist() == ["007", "x"]  # not canonical integers: kept as text


def test_csv_inspect_and_plan_without_reading(tmp_path, XY):
    X, _ = XY
    p = tmp_path / "x.csv"
    with open(p, "w") as f:
        f.write("id,a,b,c,d,e,f,g\n\n")  # empty lines are not rows
        for i, row in enumerate(X):
            f.write(f"{i}," + ",".join(repr(v) for v in row.tolist()) + "\r\n")
        f.write("\n")
    r = run("inspect", p, "-f", "json")
    assert r.exit_code == 0, r.stderr
    arrays = {a["key"]: a for a in json.loads(r.stdout)["arrays"]}
    assert arrays[""]["shape"] == [120, 7] and arrays[""]["embedding"] and arrays["id"]["shape"] == [120]
    assert rio.describe(str(p))[:2] == ((120, 7), 8)
    assert np.array_equal(rio.load(str(p)).array, X)
    assert "(whole file)" in run("inspect", p).stdout


@pytest.mark.parametrize("chunk", [1, 2, 3, 1 << 24])
def test_row_count_and_line_numbers_across_chunks(tmp_path, monkeypatch, chunk):
    """The listing's count of non-empty lines and the error path's line numbers, against str.split, whatever
    the chunk boundaries (an empty line is '' or '\\r' before '\\n')."""
    import random

    import repalign.io.text as text_io

    monkeypatch.setattr(text_io, "_CHUNK", chunk)
    pick = random.Random(chunk)
    p = tmp_path / "t.csv"
    for _ in range(300):
        parts = [pick.choice(["1,2", "", "\r", "x", "3"]) + pick.choice(["\n", "\r\n"])
                 for _ in range(pick.randint(0, 8))]
        text = "".join(parts)
        if pick.random() < 0.5:
            text = text.rstrip("\n")
        p.write_bytes(text.encode())
        lines = text.split("\n")
        lines = lines[:-1] if lines[-1] == "" else lines
        full = [i + 1 for i, line in enumerate(lines) if line not in ("", "\r")]
        assert text_io.count_rows(str(p)) == len(full), repr(text)
        assert [text_io.line_of_row(str(p), r) for r in range(len(full) + 1)] == full + [-1], repr(text)


@pytest.mark.parametrize("text, needles", [
    ("1,2,3\n4,5,6\n\n7,8\n", ["ragged", "line 4 has 2 fields, expected 3"]),
    ("1,2,3\n4,5,6,7\n", ["ragged", "line 2 has 4 fields"]),
    ("a,b\n1,2\n\n3,x\n", ["line 4, column 2 (b)", "'x' is not a number"]),
    ("1,2\n3,\n", ["line 2, column 2", "empty cell"]),
    ("1,2\n3,NA\n", ["line 2, column 2", "'NA' is not a number"]),
    ("", ["empty file"]),
    ("\n\n", ["empty file"]),
    ("a,b,c\n", ["only a header row"]),
    ("id,label\n1,cat\n", ["no numeric column"]),
])
def test_malformed_csv(tmp_path, text, needles):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    refused(p, *needles)


def test_malformed_csv_inspect_and_keys(tmp_path):
    p = tmp_path / "hdr.tsv"
    p.write_text("a\tb\n")
    refused(p, "only a header row", args=["inspect", str(p)])
    q = tmp_path / "x.csv"
    q.write_text("id,a,b\nr1,1,2\nr2,3,4\n")
    refused(q, "remove the ':emb' key", args=["compare", f"{q}:emb", str(q)])
    refused(q, "usable as ids", args=["compare", f"{q}:id", str(q)])


def test_late_bad_cell_is_located(tmp_path, rng):
    """A bad cell far down (past pyarrow's first blocks) is still named by its line."""
    X = rng.standard_normal((30_000, 4))
    p = tmp_path / "big.csv"
    np.savetxt(p, X, delimiter=",", fmt="%.17g")
    lines = p.read_text().splitlines()
    lines[25_000] = lines[25_000].replace(",", ",oops", 1)
    p.write_text("\n".join(lines) + "\n")
    refused(p, "line 25001, column 2", "'oops")


# --- FAISS ---------------------------------------------------------------------------------------------------------


def _faiss_files(tmp_path, X, Y, kind):
    faiss = pytest.importorskip("faiss")
    out = []
    for name, arr in (("x", X), ("y", Y)):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        d = arr.shape[1]
        if kind == "ip":
            index = faiss.IndexFlatIP(d)
        elif kind == "l2":
            index = faiss.IndexFlatL2(d)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, 8)
        else:
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, 4)
            index.train(arr)
        index.add(arr)
        p = tmp_path / f"{name}.{'index' if kind == 'l2' else 'faiss'}"
        faiss.write_index(index, str(p))
        out.append(p)
    return out


@pytest.mark.parametrize("kind", ["ip", "l2", "ivf", "hnsw"])
def test_faiss_exact_indexes_give_the_npy_result(write, XY, tmp_path, kind, one_faiss_thread):
    X, Y = (a.astype(np.float32) for a in XY)
    a, b = _faiss_files(tmp_path, X, Y, kind)
    got = rio.load(str(a)).array
    assert got.dtype == np.float32 and np.array_equal(got, X)  # in id order, bit for bit
    same_as_npy(write, X, Y, a, b)
    r = run("inspect", a, "-f", "json")
    assert json.loads(r.stdout)["arrays"] == [{"key": "", "shape": [120, 7], "dtype": "float32", "embedding": True,
                                               "layers": None}]
    assert rio.describe(str(a))[:2] == ((120, 7), 4)


def test_faiss_lossy_and_other_indexes_refused(tmp_path, rng):
    faiss = pytest.importorskip("faiss")
    x = rng.standard_normal((600, 8)).astype(np.float32)
    pq = faiss.IndexPQ(8, 2, 4)
    ivfpq = faiss.IndexIVFPQ(faiss.IndexFlatL2(8), 8, 2, 2, 4)
    sq = faiss.IndexScalarQuantizer(8, faiss.ScalarQuantizer.QT_8bit)
    for name, index in (("pq", pq), ("ivfpq", ivfpq), ("sq", sq)):
        index.train(x)
        index.add(x)
        p = tmp_path / f"{name}.faiss"
        faiss.write_index(index, str(p))
        refused(p, type(index).__name__, "lossy", "approximations")
        doc = json.loads(run("inspect", p, "-f", "json").stdout)
        assert doc["arrays"][0]["shape"] == [600, 8] and not doc["arrays"][0]["embedding"]
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(8), 8, 2)
    ivf.train(x)
    ivf.add_with_ids(x, np.arange(600) + 10)
    p = tmp_path / "ids.faiss"
    faiss.write_index(ivf, str(p))
    refused(p, "id 6", "outside 0..599")
    idmap = faiss.IndexIDMap(faiss.IndexFlatL2(8))
    idmap.add_with_ids(x, np.arange(600))
    faiss.write_index(idmap, str(tmp_path / "idmap.faiss"))
    refused(tmp_path / "idmap.faiss", "IndexIDMap is not read")
    binary = faiss.IndexBinaryFlat(16)
    binary.add(np.zeros((3, 2), np.uint8))
    faiss.write_index_binary(binary, str(tmp_path / "bin.faiss"))
    refused(tmp_path / "bin.faiss", "binary FAISS index", args=["inspect", str(tmp_path / "bin.faiss")])


def test_faiss_truncated_and_foreign(tmp_path, XY):
    a, _ = _faiss_files(tmp_path, XY[0], XY[1], "ip")
    data = a.read_bytes()
    cut = tmp_path / "cut.faiss"
    cut.write_bytes(data[: len(data) // 2])
    refused(cut, "cannot be read as faiss")
    junk = tmp_path / "junk.index"
    junk.write_bytes(b"not an index at all, just text")
    refused(junk, "not a FAISS index")
    refused(a, "no id array", args=["compare", str(a), str(a), "--ids", "id"])


# --- AnnData .h5ad -------------------------------------------------------------------------------------------------


def _h5ad_by_hand(path, X, pca, names, index_column="_index", sparse=False):
    """AnnData's on-disk layout (anndata 0.8+ 'dataframe' and 'csr_matrix' encodings) written with h5py."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        if sparse:
            g = f.create_group("X")
            g.attrs["encoding-type"], g.attrs["shape"] = "csr_matrix", X.shape
            g["data"], g["indices"] = X.ravel(), np.tile(np.arange(X.shape[1]), X.shape[0])
            g["indptr"] = np.arange(0, X.size + 1, X.shape[1])
        else:
            f["X"] = X
        obs = f.create_group("obs")
        obs.attrs["encoding-type"], obs.attrs["_index"] = "dataframe", index_column
        obs.attrs["column-order"] = np.array([], dtype=h5py.string_dtype())
        obs.create_dataset(index_column, data=np.array(names, dtype=object), dtype=h5py.string_dtype())
        f.create_group("obsm").create_dataset("X_pca", data=pca)


def test_h5ad_by_hand(write, XY, tmp_path, rng):
    X, Y = XY
    names = [f"cell{i}" for i in range(120)]
    a, b = tmp_path / "a.h5ad", tmp_path / "b.h5ad"
    _h5ad_by_hand(a, X.astype(np.float32), X, names)
    _h5ad_by_hand(b, Y.astype(np.float32), Y, names, index_column="barcode")
    same_as_npy(write, X, Y, f"{a}:obsm/X_pca", f"{b}:obsm/X_pca")
    same_as_npy(write, X.astype(np.float32), Y.astype(np.float32), f"{a}:X", f"{b}:X")
    keys = {i["key"] for i in json.loads(run("inspect", b, "-f", "json").stdout)["arrays"]}
    assert {"X", "obsm/X_pca", "obs/barcode", "obs/_index"} <= keys
    perm = rng.permutation(120)
    c = write.npz("c.npz", emb=Y[perm], id=np.array(names)[perm])
    got = report(f"{a}:obsm/X_pca", c, "--ids-a", "obs/_index", "--ids-b", "id")
    assert got["pairing"]["paired"] == 120
    assert got["metrics"] == report(f"{a}:obsm/X_pca", f"{b}:obsm/X_pca")["metrics"]
    got = report(f"{b}:obsm/X_pca", c, "--ids-a", "obs/_index", "--ids-b", "id")  # the index named by _index
    assert got["pairing"]["paired"] == 120
    got = report(f"{b}:obsm/X_pca", c, "--ids", "auto")  # auto finds the obs index of an .h5ad file
    assert got["pairing"]["paired"] == 120 and got["pairing"]["ids"] == ["obs/_index", "id"]


def test_h5ad_sparse_x_refused(tmp_path, XY):
    X, _ = XY
    p = tmp_path / "s.h5ad"
    _h5ad_by_hand(p, X, X, [str(i) for i in range(120)], sparse=True)
    refused(p, ":X", "csr_matrix", "sparse", args=["compare", f"{p}:X", f"{p}:obsm/X_pca"])
    arrays = {a["key"]: a for a in json.loads(run("inspect", p, "-f", "json").stdout)["arrays"]}
    assert arrays["X"]["shape"] == [120, 7] and not arrays["X"]["embedding"] and "X/data" not in arrays


def test_h5ad_written_by_anndata(write, XY, tmp_path, rng):
    anndata = pytest.importorskip("anndata")
    pd = pytest.importorskip("pandas")
    sparse = pytest.importorskip("scipy.sparse")
    X, Y = XY
    names = [f"c{i}" for i in range(120)]
    perm = rng.permutation(120)
    a, b = tmp_path / "a.h5ad", tmp_path / "b.h5ad"
    anndata.AnnData(X=X.astype(np.float32), obs=pd.DataFrame(index=names), obsm={"X_pca": X}).write_h5ad(a)
    obs = pd.DataFrame({"group": pd.Categorical(["u", "v"] * 60)}, index=pd.Index(np.array(names)[perm], name="bc"))
    anndata.AnnData(X=sparse.csr_matrix(Y[perm]), obs=obs, obsm={"X_pca": Y[perm]}).write_h5ad(b)
    for x, first in ((X, f"{a}:obsm/X_pca"), (X.astype(np.float32), f"{a}:X")):
        got, ref = report(first, f"{b}:obsm/X_pca"), report(write.npy(x, "rx.npy"), write.npy(Y[perm], "ry.npy"))
        notes = got.pop("notes")  # the obs indexes are found as ids, and they differ row by row: said
        assert ref.pop("notes") == [] and len(notes) == 1 and "(obs/_index, obs/_index) that differ" in notes[0]
        assert got == ref
    aligned = report(f"{a}:obsm/X_pca", f"{b}:obsm/X_pca", "--ids", "obs/_index")
    assert aligned["pairing"]["paired"] == 120
    assert aligned["metrics"] == report(write.npy(X, "x.npy"), write.npy(Y, "y.npy"))["metrics"]
    refused(b, "csr_matrix", args=["compare", f"{b}:X", f"{a}:X"])
    assert run("inspect", b).exit_code == 0


def test_faiss_on_disk_lists_need_allow_external(tmp_path, rng, one_faiss_thread):
    faiss = pytest.importorskip("faiss")
    ondisk = pytest.importorskip("faiss.contrib.ondisk")
    x = rng.standard_normal((300, 8)).astype(np.float32)
    trained = faiss.IndexIVFFlat(faiss.IndexFlatL2(8), 8, 4)
    trained.train(x)
    faiss.write_index(trained, str(tmp_path / "trained.index"))
    block = faiss.read_index(str(tmp_path / "trained.index"))
    block.add(x)
    faiss.write_index(block, str(tmp_path / "block.index"))
    index = faiss.read_index(str(tmp_path / "trained.index"))
    ondisk.merge_ondisk(index, [str(tmp_path / "block.index")], str(tmp_path / "lists.ivfdata"))
    p = tmp_path / "ondisk.index"
    faiss.write_index(index, str(p))
    refused(p, "another file", "lists.ivfdata", "--allow-external")
    array, _ = rio.reader_for(str(p)).read(None, allow_external=True)
    assert np.array_equal(array, x)
