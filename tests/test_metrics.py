"""Metric values against docs/formulas.md: golden values, dense references, invariances, null means."""

import itertools

import numpy as np
import pytest
import reference as ref
from conftest import make_pair

import repalign
from repalign.metrics import cka as cka_mod

# Feature-space CKA and the dense n×n formulas sum in different orders; in
# float64 they agree to ~1e-13, far inside the 1e-6 requirement.
CKA_TOL = 1e-9


def values(X, Y, **kw):
    r = repalign.compare(X, Y, metrics="mknn,cka,cka-unbiased", **kw)
    return {m.name: m.value for m in r.metrics}, r


def test_golden_values(golden):
    X, Y = golden
    v, _ = values(X, Y)
    # docs/formulas.md §5 gives five decimals for CKA and exact k-NN values.
    assert round(v["cka"], 5) == 0.55761
    assert round(v["cka-unbiased"], 5) == 0.51346
    assert v["mknn"] == pytest.approx(0.2790, abs=1e-12)
    assert repalign.compare(X, Y, metrics="mknn", k=5).metrics[0].value == pytest.approx(0.2160, abs=1e-12)
    ip = repalign.compare(X, Y, metrics="mknn", k=10, distance="ip").metrics[0].value
    assert ip == pytest.approx(0.3070, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(60, 5, 7), (120, 30, 3), (40, 50, 70), (30, 45, 8)])
def test_against_dense_reference(seed, shape):
    n, d1, d2 = shape
    X, Y = make_pair(np.random.default_rng(seed), n=n, d1=d1, d2=d2)
    v, _ = values(X, Y, k=5)
    assert v["mknn"] == pytest.approx(ref.mutual_knn(X, Y, 5), abs=1e-12)
    assert v["cka"] == pytest.approx(ref.cka(X, Y), abs=CKA_TOL)
    assert v["cka-unbiased"] == pytest.approx(ref.cka(X, Y, unbiased=True), abs=CKA_TOL)


@pytest.mark.parametrize("distance", ["cosine", "ip", "l2"])
def test_mknn_all_distances_against_reference(rng, distance):
    X, Y = make_pair(rng, n=150, d1=8, d2=12)
    for k in (1, 3, 10):
        got = repalign.compare(X, Y, metrics="mknn", k=k, distance=distance).metrics[0].value
        assert got == pytest.approx(ref.mutual_knn(X, Y, k, distance), abs=1e-12)


def test_float32_input_matches_reference_on_same_values(rng):
    X, Y = make_pair(rng, n=300, d1=32, d2=32, dtype=np.float32)
    v, _ = values(X, Y)
    assert v["mknn"] == pytest.approx(ref.mutual_knn(X, Y, 10), abs=1e-12)
    assert v["cka"] == pytest.approx(ref.cka(X, Y), abs=CKA_TOL)


@pytest.mark.parametrize("seed", [3, 4])
def test_invariance_rotation_scaling_translation(seed):
    rng = np.random.default_rng(seed)
    X, _ = make_pair(rng, n=200, d1=12, d2=12)
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    rotated = 3.7 * X @ Q
    v, _ = values(X, rotated)
    assert v == pytest.approx({"mknn": 1.0, "cka": 1.0, "cka-unbiased": 1.0}, abs=1e-12)
    shifted = rotated + rng.standard_normal(12) * 5
    assert repalign.compare(X, shifted, metrics="cka,cka-unbiased").metric("cka").value == pytest.approx(1, abs=1e-12)
    assert repalign.compare(X, shifted, metrics="mknn", distance="l2").metrics[0].value == 1.0


def test_symmetric(pair):
    X, Y = pair
    v1, _ = values(X, Y)
    v2, _ = values(Y, X)
    assert v1 == pytest.approx(v2, abs=1e-12)


def test_independent_data_is_near_chance(rng):
    n, k = 2000, 10
    X = rng.standard_normal((n, 16))
    Y = rng.standard_normal((n, 16))
    v, r = values(X, Y, k=k)
    chance = k / (n - 1)
    assert r.metric("mknn").chance == pytest.approx(chance)
    # sd of mknn under independence ≈ sqrt(chance/(n·k)) ≈ 5e-4; 6 sd.
    assert abs(v["mknn"] - chance) < 0.003
    # Unbiased CKA has null mean 0 and sd of order d/n here.
    assert abs(v["cka-unbiased"]) < 0.02
    # Biased CKA sits at its permutation mean, not at 0.
    assert v["cka"] == pytest.approx(r.metric("cka").chance, abs=0.02)


def test_ranges_hold(rng):
    for _ in range(5):
        X, Y = make_pair(rng, n=50, d1=4, d2=60, signal=rng.uniform(0, 2))
        v, _ = values(X, Y, k=3)
        assert 0 <= v["mknn"] <= 1 and 0 <= v["cka"] <= 1 and -1 <= v["cka-unbiased"] <= 1


def test_null_means_by_exhaustive_permutation(rng):
    """All 720 pairings at n=6: mean mknn = k/(n−1), mean unbiased CKA = 0, mean biased CKA = √(βxβy)/(n−1)."""
    n, k = 6, 2
    X = rng.standard_normal((n, 3))
    Y = rng.standard_normal((n, 4))
    perms = list(itertools.permutations(range(n)))
    mk = np.mean([ref.mutual_knn(X, Y[list(p)], k) for p in perms])
    cb = np.mean([ref.cka(X, Y[list(p)]) for p in perms])
    cu = np.mean([ref.cka(X, Y[list(p)], unbiased=True) for p in perms])
    r = repalign.compare(X, Y, metrics="mknn,cka,cka-unbiased", k=k)
    assert mk == pytest.approx(r.metric("mknn").chance, abs=1e-12)
    assert cb == pytest.approx(r.metric("cka").chance, abs=1e-12)
    assert cu == pytest.approx(0.0, abs=1e-12)
    assert r.metric("cka-unbiased").chance == 0.0


def test_cka_undefined_for_constant_input(rng):
    X = rng.standard_normal((20, 3))
    Y = np.ones((20, 4))
    r = repalign.compare(X, Y, metrics="cka,cka-unbiased")
    for m in r.metrics:
        assert m.value is None and "b" in m.reason and "undefined" in m.reason


def _dot_shapes(monkeypatch):
    """Spy on the dot products of cka.py: the Gram branch takes ⟨K, L⟩ of n×n Grams, the other ‖XcᵀYc‖² of d×d sums."""
    shapes = []
    real = cka_mod.dot

    def spy(x, y):
        shapes.append((np.shape(x), np.shape(y)))
        return real(x, y)

    monkeypatch.setattr(cka_mod, "dot", spy)
    return shapes


@pytest.mark.parametrize("shape", [(20, 40, 50), (20, 21, 200)])
def test_sample_space_branch_matches_dense_reference(rng, monkeypatch, shape):
    """d1, d2 > n uses the n×n Grams; its sums and both CKAs must equal the dense formulas of reference.py."""
    n, d1, d2 = shape
    X, Y = make_pair(rng, n=n, d1=d1, d2=d2)
    X += 3.0  # an offset that centring must remove
    shapes = _dot_shapes(monkeypatch)
    st = cka_mod.cross_stats(X, Y, per_row=True)
    assert shapes == [((n, n), (n, n))] * 3  # the Gram branch ran, and only it
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    assert np.allclose(st.per_row["K"], K, rtol=1e-12, atol=1e-9)
    assert st.sxy == pytest.approx(np.sum(K * L), rel=1e-10)
    assert st.sxx == pytest.approx(np.sum(K * K), rel=1e-10)
    assert st.syy == pytest.approx(np.sum(L * L), rel=1e-10)
    assert np.allclose(st.a, np.diag(K), rtol=1e-12) and np.allclose(st.b, np.diag(L), rtol=1e-12)
    assert cka_mod.ratio(cka_mod.biased_terms(st)) == pytest.approx(ref.cka(X, Y), abs=CKA_TOL)
    assert cka_mod.ratio(cka_mod.unbiased_terms(st)) == pytest.approx(ref.cka(X, Y, unbiased=True), abs=CKA_TOL)


def test_feature_space_branch_when_one_side_is_narrow(rng, monkeypatch):
    """The counterpart: d1 ≤ n keeps the d×d sums (so the spy above can tell the branches apart)."""
    X, Y = make_pair(rng, n=20, d1=20, d2=50)
    shapes = _dot_shapes(monkeypatch)
    st = cka_mod.cross_stats(X, Y)
    assert shapes == [((20, 50), (20, 50)), ((20, 20), (20, 20)), ((50, 50), (50, 50))]
    assert cka_mod.ratio(cka_mod.biased_terms(st)) == pytest.approx(ref.cka(X, Y), abs=CKA_TOL)
