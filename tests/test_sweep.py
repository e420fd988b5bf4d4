"""Layer sweeps and matrices: equal to the pair-by-pair computation and to dense references; layer selection."""

import json

import numpy as np
import pytest
import reference as ref
from test_checks import validate
from test_cli import expect_input_error, run

import repalign
from repalign import io, stats
from repalign.engine import inputs as engine_inputs
from repalign.errors import InputError, UsageError
from repalign.stats import permutation

FAST = dict(resamples=0, permutations=0, seed=3)
METRICS = "mknn,cka,cka-unbiased"


def layered(rng, n=60, layers=3, d=6, shared=None, drift=0.6):
    """n×L×d with a latent shared by every layer, drifting across layers (so scores differ by layer)."""
    z = rng.standard_normal((n, 3)) if shared is None else shared
    out = np.empty((n, layers, d))
    x = z @ rng.standard_normal((3, d))
    for layer in range(layers):
        x = x + drift * rng.standard_normal((n, d))
        out[:, layer] = x
    return out


@pytest.fixture
def stacks(rng):
    z = rng.standard_normal((60, 3))
    return layered(rng, layers=3, shared=z), layered(rng, layers=4, d=5, shared=z)


# ---------------------------------------------------------------- layer selection


@pytest.mark.parametrize("spec,expect", [
    ("all", list(range(13))), ("3", [3]), ("-1", [12]), ("0:12:2", [0, 2, 4, 6, 8, 10]), ("1,3,-1", [1, 3, 12]),
    ("::-4", [12, 8, 4, 0]), ("2, 2, 5", [2, 5]),
])
def test_parse_layers(spec, expect):
    assert io.parse_layers(spec, 13, "f.h5:x") == expect


def test_parse_layers_errors():
    with pytest.raises(InputError, match=r"f.h5:x: layer 13 is out of range; it has 13 layers \(0..12"):
        io.parse_layers("13", 13, "f.h5:x")
    with pytest.raises(InputError, match="layer -14 is out of range"):
        io.parse_layers("-14", 13, "f.h5:x")
    with pytest.raises(InputError, match="selects no layer"):
        io.parse_layers("5:2", 13, "f.h5:x")
    for bad in ("first", "1:2:3:4", "0:5:0", "1.5", ""):
        with pytest.raises(UsageError, match="expected all, an index"):
            io.parse_layers(bad, 13, "f.h5:x")


def test_natural_order():
    keys = ["layer_10", "layer_2", "layer_1", "Layer_0", "layer_11b", "layer_11a"]
    assert sorted(keys, key=io.natural_key) == ["Layer_0", "layer_1", "layer_2", "layer_10", "layer_11a",
                                                "layer_11b"]


def test_glob_layers_in_every_format(write, rng):
    X = rng.standard_normal((30, 12, 4))
    members = {f"layer_{i}": X[:, i] for i in range(12)}
    h5 = write.h5(name="l.h5", **{f"layers__layer_{i}": X[:, i] for i in range(12)}, other=X[:, 0, :2])
    npz = write.npz(name="l.npz", **members)
    pq = write.parquet(name="l.parquet", **members)
    for sel in (f"{h5}:layers/*", f"{npz}:layer_*", f"{pq}:layer_*"):
        ls = io.open_layers(sel)
        assert ls.layered and len(ls) == 12
        assert [lab.rsplit("_", 1)[-1] for lab in ls.labels] == [str(i) for i in range(12)]  # 2 before 10
        for i in (0, 2, 10):
            assert np.array_equal(ls.read(i), X[:, i])
        sub = ls.select("1:12:5")
        assert [lab.rsplit("_", 1)[-1] for lab in sub.labels] == ["1", "6", "11"]
        assert np.array_equal(sub.read(2), X[:, 11])


def test_three_d_layers_read_one_at_a_time(write, rng):
    X = rng.standard_normal((30, 5, 4)).astype(np.float32)
    for sel in (write.npy(X, "s.npy"), write.h5(name="s.h5", emb=X) + ":emb", write.npz(name="s.npz", emb=X)):
        ls = io.open_layers(sel)
        assert ls.labels == ("0", "1", "2", "3", "4") and ls.shape == (30, 5, 4)
        assert np.array_equal(ls.select("-2").read(0), X[:, 3])


def test_glob_errors(write, rng):
    X = rng.standard_normal((30, 4))
    h5 = write.h5(name="g.h5", layers__a=X, layers__b=X[:, :3], ids=np.arange(30))
    with pytest.raises(InputError, match=r"no array matches 'nothing/\*' \(available: .*layers/a"):
        io.open_layers(f"{h5}:nothing/*")
    with pytest.raises(InputError, match="differ in shape: layers/a .* but layers/b"):
        io.open_layers(f"{h5}:layers/*")
    with pytest.raises(InputError, match="ids matches 'i\\*' but is not a 2-D floating-point array"):
        io.open_layers(f"{h5}:i*")


# ---------------------------------------------------------------- sweeps


def test_sweep_equals_pair_by_pair(stacks):
    A, B = stacks
    r = repalign.compare(A, B, metrics=METRICS, **FAST)
    assert r.sweep.layers_a == ("0", "1", "2") and r.sweep.layers_b == ("0", "1", "2", "3")
    for i in range(3):
        for j in range(4):
            single = repalign.compare(A[:, i], B[:, j], metrics=METRICS, **FAST)
            for m in single.metrics:
                cell = r.sweep.cells[m.name][i][j]
                assert cell.value == m.value and cell.chance == m.chance and cell.null_sd == m.null_sd
    # and both equal the dense definitions
    assert r.sweep.cells["mknn"][1][2].value == pytest.approx(ref.mutual_knn(A[:, 1], B[:, 2], 10), abs=1e-12)
    assert r.sweep.cells["cka"][2][0].value == pytest.approx(ref.cka(A[:, 2], B[:, 0]), abs=1e-12)
    assert r.sweep.cells["cka-unbiased"][0][3].value == pytest.approx(ref.cka(A[:, 0], B[:, 3], unbiased=True),
                                                                       abs=1e-12)


def test_best_pair_is_the_argmax(stacks):
    A, B = stacks
    r = repalign.compare(A, B, metrics=METRICS, **FAST)
    for m in r.metrics:
        grid = np.array(r.sweep.values(m.name))
        i, j = np.unravel_index(np.argmax(grid), grid.shape)
        assert r.sweep.best[m.name] == (i, j) and m.value == grid.max()
        assert m.params["layer_a"] == str(i) and m.params["layer_b"] == str(j)
        assert r.sweep.row_best(m.name) == list(np.argmax(grid, axis=1))
        assert r.sweep.col_best(m.name) == list(np.argmax(grid, axis=0))


def test_best_pair_interval_is_bonferroni_and_p_value_uses_the_max(stacks):
    A, B = stacks
    r = repalign.compare(A, B, metrics="mknn,cka", resamples=300, permutations=200, seed=11, confidence=0.9)
    for m in r.metrics:
        i, j = r.sweep.best[m.name]
        # the chosen pair alone, at the level that holds simultaneously for all 12 pairs
        alone = repalign.compare(A[:, i], B[:, j], metrics=m.name, resamples=300, permutations=0, seed=11,
                                 confidence=1 - 0.1 / 12).metrics[0]
        assert (m.ci_low, m.ci_high) == (alone.ci_low, alone.ci_high)
        assert "Bonferroni over 12 layer pairs" in m.ci_method
    # the p-value compares the best score with the max over all pairs under each permutation
    mk = r.metric("mknn")
    perms = list(stats.permutations(np.random.SeedSequence(11).spawn(2)[1], 60, 200))
    lists = [[repalign.neighbors.knn(X[:, layer], 10, "cosine") for layer in range(X.shape[1])] for X in (A, B)]
    null = np.max([[stats.knn_permutation_null(la, lb, perms) for lb in lists[1]] for la in lists[0]], axis=(0, 1))
    assert mk.p_value == (1 + np.count_nonzero(null >= mk.value)) / 201
    # permutations given explicitly: CKA gets the same max-over-pairs treatment
    ck = r.metric("cka")
    from repalign.metrics.cka import cross_stats

    null = np.max([[stats.cka_permutation_null(A[:, i], B[:, j], cross_stats(A[:, i], B[:, j]), perms,
                                               unbiased=False) for j in range(4)] for i in range(3)], axis=(0, 1))
    assert ck.p_value == (1 + np.count_nonzero(null >= ck.value)) / 201
    default = repalign.compare(A, B, metrics="mknn,cka", resamples=0, seed=11)
    assert default.metric("cka").p_value is None and default.metric("mknn").permutations == 200
    assert default.uncertainty.permutations == 200  # the sweep default, reported as such


def test_single_layer_selection_is_a_plain_compare(stacks):
    A, B = stacks
    r = repalign.compare(A, B, layer_a="-1", layer_b="1", metrics=METRICS, resamples=200, permutations=50, seed=2)
    plain = repalign.compare(A[:, 2], B[:, 1], metrics=METRICS, resamples=200, permutations=50, seed=2)
    assert r.sweep is None and r.inputs[0].layers == ("2",) and r.inputs[1].layers == ("1",)
    for got, want in zip(r.metrics, plain.metrics):
        assert {**got.params, "layer_a": None, "layer_b": None} == {**want.params, "layer_a": None, "layer_b": None}
        assert (got.params["layer_a"], got.params["layer_b"]) == ("2", "1")
        assert {**got.to_dict(), "params": None} == {**want.to_dict(), "params": None}


def test_sweep_from_files_streaming_equals_cached(write, stacks, monkeypatch):
    A, B = stacks
    a = write.h5(name="a.h5", emb=A.astype(np.float32)) + ":emb"
    b = write.npy(B.astype(np.float32), "b.npy")
    cached = repalign.compare(a, b, metrics=METRICS, layer_b="0:4:2", **FAST)
    monkeypatch.setattr(engine_inputs, "LAYER_CACHE_BYTES", 0)
    reads = []
    original = io.LayerSet.read
    monkeypatch.setattr(io.LayerSet, "read", lambda self, i: reads.append(i) or original(self, i))
    streamed = repalign.compare(a, b, metrics=METRICS, layer_b="0:4:2", **FAST)
    assert streamed.sweep.to_dict() == cached.sweep.to_dict()
    assert any("read again" in note for note in streamed.notes)
    assert len(reads) > 3 + 2  # layers were read again per pair instead of being kept


def test_prh_preset_applies_per_layer(stacks):
    A, B = stacks
    r = repalign.compare(A, B, preset="prh", metrics="mknn,cka", **FAST)
    from repalign.preprocess import Preprocessing, apply

    pre = Preprocessing(clip=0.95, normalize=True)
    x, y = apply(A[:, 1], pre, "a"), apply(B[:, 3], pre, "b")
    assert r.sweep.cells["cka"][1][3].value == pytest.approx(ref.cka(x, y), abs=1e-12)
    assert r.sweep.cells["mknn"][1][3].value == pytest.approx(ref.mutual_knn(x, y, 10), abs=1e-12)


def test_max_permutation_null_tables_agree(rng):
    n, k = 80, 4
    lists = [[repalign.neighbors.knn(rng.standard_normal((n, 3)), k, "cosine") for _ in range(m)] for m in (2, 19)]
    perms = list(stats.permutations(np.random.SeedSequence(5), n, 40))
    brute = np.max([[stats.knn_permutation_null(a, b, perms) for b in lists[1]] for a in lists[0]], axis=(0, 1))
    dense = stats.knn_max_permutation_null(lists[0], lists[1], perms)
    old = permutation._DENSE_TABLE_BYTES
    try:
        permutation._DENSE_TABLE_BYTES = 0  # the sorted-table path used for large n
        sparse = stats.knn_max_permutation_null(lists[0], lists[1], perms)
    finally:
        permutation._DENSE_TABLE_BYTES = old
    assert np.array_equal(dense, brute) and np.array_equal(sparse, brute)


# ---------------------------------------------------------------- matrices


@pytest.fixture
def trio(rng):
    z = rng.standard_normal((70, 3))
    return [z @ rng.standard_normal((3, d)) + 0.7 * rng.standard_normal((70, d)) for d in (5, 8, 6)]


def test_matrix_cells_equal_compare(trio):
    m = repalign.matrix(trio, metrics=METRICS, resamples=200, permutations=50, seed=4)
    assert [(c.a, c.b) for c in m.cells] == [(0, 1), (0, 2), (1, 2)]
    for c in m.cells:
        one = repalign.compare(trio[c.a], trio[c.b], metrics=METRICS, resamples=200, permutations=50, seed=4)
        assert [x.to_dict() for x in c.metrics] == [x.to_dict() for x in one.metrics]
    for name in ("mknn", "cka", "cka-unbiased"):
        grid = np.array(m.grid(name), dtype=float)
        assert np.array_equal(grid, grid.T) and np.all(np.diag(grid) == 1.0)


def test_matrix_of_identical_inputs_is_all_ones(trio):
    m = repalign.matrix([trio[0], trio[0].copy()], metrics=METRICS, **FAST)
    assert all(v == 1.0 for name in ("mknn", "cka", "cka-unbiased") for row in m.grid(name) for v in row)


def test_matrix_with_layers_uses_best_pair(trio, stacks):
    A, B = stacks
    m = repalign.matrix([A, B, A[:, 0]], metrics="mknn,cka", **FAST)
    direct = repalign.compare(A, B, metrics="mknn,cka", **FAST)
    assert [x.to_dict() for x in m.cell(0, 1).metrics] == [x.to_dict() for x in direct.metrics]
    # layer 0 of A against the stack A: the best pair is layer 0 with itself
    assert m.cell(0, 2).metric("mknn").value == 1.0 and m.cell(0, 2).metric("mknn").params["layer_a"] == "0"


def test_reference_mode_sorted(trio):
    m = repalign.matrix(trio[1:], reference=trio[0], metrics="cka,mknn", **FAST)
    assert m.reference == 0 and all(c.a == 0 for c in m.cells) and not m.diagonal
    values = [c.metric("cka").value for c in m.cells]
    assert values == sorted(values, reverse=True)
    for c in m.cells:
        assert c.metric("cka").value == pytest.approx(ref.cka(trio[0], trio[c.b]), abs=1e-12)


def test_matrix_ids_join_every_input(write, trio, rng):
    ids = np.array([f"item{i}" for i in range(70)])
    files = []
    for t, arr in enumerate(trio):
        order = rng.permutation(70)[: 70 - 5 * t]  # each file shuffled, and missing some items
        files.append(write.parquet(name=f"f{t}.parquet", ids=list(ids[order]), emb=arr[order]))
    common = sorted(set.intersection(*[set(io_ids(f)) for f in files]))
    m = repalign.matrix([f + ":emb" for f in files], ids="auto", metrics="cka", **FAST)
    assert m.n == len(common) and m.pairing.dropped == tuple(70 - 5 * t - len(common) for t in range(3))
    keep = np.isin(ids, common)
    aligned = repalign.matrix([t[keep] for t in trio], metrics="cka", **FAST)
    np.testing.assert_allclose(np.array(m.grid("cka"), dtype=float), np.array(aligned.grid("cka"), dtype=float),
                               rtol=0, atol=1e-12)


def io_ids(path):
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["id"]).column(0).to_pylist()


# ---------------------------------------------------------------- command line


@pytest.fixture
def stack_files(write, stacks):
    A, B = stacks
    return write.h5(name="a.h5", emb=A) + ":emb", write.npy(B, "b.npy")


def test_cli_sweep_outputs(stack_files):
    r = run("compare", *stack_files, "-B", "0", "-P", "0", "--seed", "1", "-f", "json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    validate(doc)
    sw = doc["sweep"]
    assert sw["layers_a"] == ["0", "1", "2"] and len(sw["metrics"]["mknn"]["value"]) == 3
    best = sw["metrics"]["cka"]["best"]
    assert best["value"] == max(max(row) for row in sw["metrics"]["cka"]["value"])
    csv = run("compare", *stack_files, "-B", "0", "-P", "0", "--seed", "1", "-f", "csv").stdout.splitlines()
    assert csv[0].startswith("layer_a,layer_b,metric,value") and len(csv) == 1 + 3 * 4 * 2
    assert sum(line.split(",")[7] == "true" for line in csv[1:]) == 2  # one best pair per metric
    table = run("compare", *stack_files, "-B", "0", "-P", "0", "--seed", "1", env={"NO_COLOR": "1"}).stdout
    assert "\x1b[" not in table and "mknn by layer pair" in table and "*" in table
    md = run("compare", *stack_files, "-B", "0", "-P", "0", "--seed", "1", "-f", "markdown").stdout
    assert "**cka** by layer pair" in md


def test_cli_sweep_thresholds_apply_to_the_best_pair(stack_files):
    r = run("compare", *stack_files, "-B", "0", "-P", "0", "--seed", "1", "--fail-under", "cka=1.01", "-f", "json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["checks"][0]["observed"] == doc["sweep"]["metrics"]["cka"]["best"]["value"]


def test_cli_matrix(write, trio):
    files = [write.npy(t, f"m{i}.npy") for i, t in enumerate(trio)]
    r = run("matrix", *files, "-B", "0", "-P", "0", "--seed", "1", "-f", "json", "--fail-under", "cka=0")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    validate(doc)
    assert doc["kind"] == "matrix" and len(doc["cells"]) == 3 and len(doc["checks"]) == 3
    bound = sorted(c["metrics"][1]["value"] for c in doc["cells"])[1]  # the middle pair's cka
    r = run("matrix", *files, "-B", "0", "-P", "0", "--seed", "1", "--fail-under", f"cka={bound + 1e-9}")
    assert r.exit_code == 1 and r.stderr.count("FAIL: cka") == 2
    r = run("matrix", *files[1:], "--reference", files[0], "-B", "0", "-P", "0", "-f", "csv")
    lines = r.stdout.splitlines()
    assert r.exit_code == 0 and lines[0].startswith("a,b,metric") and len(lines) == 1 + 2 * 2
    expect_input_error(["matrix", files[0]], "at least two inputs")


def test_cli_plot(stack_files, tmp_path, write, trio):
    pytest.importorskip("matplotlib")
    out = tmp_path / "s.png"
    r = run("compare", *stack_files, "-B", "0", "-P", "0", "--plot", out)
    assert r.exit_code == 0, r.stderr
    head = out.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(head[16:20], "big") > 300
    svg = tmp_path / "m.svg"
    files = [write.npy(t, f"p{i}.npy") for i, t in enumerate(trio)]
    assert run("matrix", *files, "-B", "0", "-P", "0", "--plot", svg).exit_code == 0
    assert svg.read_text().lstrip().startswith("<?xml")
    expect_input_error(["compare", *files[:2], "--plot", tmp_path / "x.png"], "--plot draws a layer sweep")
    expect_input_error(["compare", *stack_files, "--plot", tmp_path / "x.gif"], "x.gif", ".png, .svg or .pdf")


def test_cli_layer_errors(stack_files, write, rng):
    expect_input_error(["compare", *stack_files, "--layer-a", "7"], "a.h5:emb", "layer 7 is out of range",
                       "3 layers")
    expect_input_error(["compare", *stack_files, "--layer-b", "x"], "--layer")
    flat = write.npy(rng.standard_normal((60, 4)), "flat.npy")
    expect_input_error(["compare", flat, stack_files[1], "--layer-a", "0"], "flat.npy", "no layers to select")
    expect_input_error(["compare", stack_files[0].replace(":emb", ":lay*"), flat], "a.h5", "no array matches")


def test_gram_route_equals_cross_products(rng, monkeypatch):
    """Many wide layers and few items: all-pairs CKA through blocked Grams, equal to the pair-by-pair values."""
    from repalign.engine import representation, scoring

    z = rng.standard_normal((70, 3))
    A, B = layered(rng, n=70, layers=5, d=40, shared=z), layered(rng, n=70, layers=6, d=30, shared=z)
    B[:, 2] = 1.0  # a constant layer: CKA undefined there, through either route
    used = []
    monkeypatch.setattr(representation, "_GRAM_BLOCK", 16)  # several blocks, off-diagonal ones counted twice
    original = representation.gram_numerators
    monkeypatch.setattr(scoring, "gram_numerators", lambda *a: used.append(1) or original(*a))
    r = repalign.compare(A, B, metrics="cka,cka-unbiased", **FAST)
    assert used
    for i in range(5):
        for j in range(6):
            for name in ("cka", "cka-unbiased"):
                got = r.sweep.cells[name][i][j].value
                if j == 2:
                    assert got is None
                else:
                    assert got == pytest.approx(ref.cka(A[:, i], B[:, j], unbiased=name == "cka-unbiased"),
                                                rel=1e-12, abs=1e-13)


def test_same_seed_same_json(stack_files, write, trio):
    files = [write.npy(t[:60], f"d{i}.npy") for i, t in enumerate(trio)]
    for args in (["compare", *stack_files], ["matrix", *files, stack_files[0]]):
        docs = []
        for _ in range(2):
            r = run(*args, "-B", "100", "-P", "30", "--seed", "9", "-f", "json")
            assert r.exit_code == 0, r.stderr
            doc = json.loads(r.stdout)
            doc.pop("timing")
            docs.append(doc)
        assert docs[0] == docs[1]


def test_layers_with_id_pairing(write, stacks, rng):
    """Layers stored as parquet columns, rows shuffled and keyed by id: the sweep of the aligned arrays."""
    A, B = stacks
    ids = [f"item{i}" for i in range(60)]
    order = rng.permutation(60)
    cols = {f"layer_{i}": A[order, i] for i in range(3)}
    a = write.parquet(name="a.parquet", ids=[ids[i] for i in order], **cols)
    b = write.parquet(name="b.parquet", ids=ids, emb=B[:, 1])
    r = repalign.compare(f"{a}:layer_*", f"{b}:emb", ids="auto", metrics="mknn,cka", **FAST)
    aligned = repalign.compare(A, B[:, 1], metrics="mknn,cka", **FAST)
    assert r.pairing.by == "id" and r.sweep.layers_a == ("layer_0", "layer_1", "layer_2")
    for name in ("mknn", "cka"):
        np.testing.assert_allclose(np.array(r.sweep.values(name), dtype=float),
                                   np.array(aligned.sweep.values(name), dtype=float), rtol=0, atol=1e-12)


def test_cka_max_null_skips_undefined_pairs(stacks):
    """A constant layer has no CKA: the max-over-pairs null must leave it out (not turn into NaN)."""
    A, B = stacks
    A = A.copy()
    A[:, 1] = 2.0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NaN division would raise here
        r = repalign.compare(A, B, metrics="cka", resamples=0, permutations=60, seed=4)
    m = r.metric("cka")
    assert all(c.value is None for c in r.sweep.cells["cka"][1])
    perms = list(stats.permutations(np.random.SeedSequence(4).spawn(2)[1], 60, 60))
    from repalign.metrics.cka import cross_stats

    null = np.max([[stats.cka_permutation_null(A[:, i], B[:, j], cross_stats(A[:, i], B[:, j]), perms,
                                               unbiased=False) for j in range(4)] for i in (0, 2)], axis=(0, 1))
    assert np.isfinite(null).all() and m.p_value == (1 + np.count_nonzero(null >= m.value)) / 61


def test_matrix_report_is_not_a_baseline(write, trio, tmp_path):
    files = [write.npy(t, f"b{i}.npy") for i, t in enumerate(trio)]
    out = tmp_path / "m.json"
    assert run("matrix", *files, "-B", "0", "-P", "0", "-o", out, "-q").exit_code == 0
    expect_input_error(["compare", *files[:2], "-B", "0", "--baseline", out], "m.json", "matrix report")
