"""procrustes against a dense residual with the optimal rotation, PU's golden value, invariances and null."""

import math

import numpy as np
import pytest
from conftest import golden_pair, make_pair

from repalign import stats
from repalign.metrics import PairData, parse_metrics
from repalign.metrics.procrustes import SPEC
from repalign.results import UncertaintySettings

# The module's nuclear norm vs the oracle's explicit residual ‖X̃R − Ỹ‖_F: both exact to ~1e-14 here.
TOL = 1e-10


def pair(X, Y, permutations=0):
    u = UncertaintySettings(resamples=0, permutations=permutations, permutations_explicit=permutations > 0)
    return PairData(X, Y, k=5, distance="cosine", labels=("a", "b"), uncertainty=u, ordered=True)


def run(X, Y, **kw):
    return SPEC.compute(pair(X, Y, **kw), {})


def oracle(X, Y):
    """Zero-pad the narrower input, solve min_R ‖X̃R − Ỹ‖_F over square orthogonal R (R = UVᵀ from the SVD
    of X̃ᵀỸ, Schönemann 1966), and measure the residual itself."""
    X, Y = X - X.mean(0), Y - Y.mean(0)
    X, Y = X / np.linalg.norm(X), Y / np.linalg.norm(Y)
    d = max(X.shape[1], Y.shape[1])
    X = np.hstack([X, np.zeros((len(X), d - X.shape[1]))])
    Y = np.hstack([Y, np.zeros((len(Y), d - Y.shape[1]))])
    U, _, Vt = np.linalg.svd(X.T @ Y)
    return float(np.linalg.norm(X @ U @ Vt - Y))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", [(60, 5, 7), (120, 30, 3), (40, 50, 70), (30, 8, 8)])
def test_against_dense_oracle(seed, shape):
    X, Y = make_pair(np.random.default_rng(seed), *shape)
    assert run(X, Y).value == pytest.approx(oracle(X, Y), abs=TOL)


def test_against_scipy(rng):
    linalg = pytest.importorskip("scipy.linalg")
    X, Y = make_pair(rng, 90, 12, 12)
    Xt, Yt = X - X.mean(0), Y - Y.mean(0)
    Xt, Yt = Xt / np.linalg.norm(Xt), Yt / np.linalg.norm(Yt)
    R, _ = linalg.orthogonal_procrustes(Xt, Yt)
    assert run(X, Y).value == pytest.approx(np.linalg.norm(Xt @ R - Yt), abs=TOL)


def test_golden_value():
    X, Y = golden_pair()
    assert round(run(X, Y).value, 6) == 0.726285  # PU's procrustes on raw rows


def test_identical_and_rotated_inputs_give_zero(rng):
    X, _ = make_pair(rng, 200, 12, 12)
    Q = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    assert run(X, X).value < 1e-12
    assert run(X, 4 * X @ Q - 7).value < 1e-12
    # Wider: the rotation maps into more columns (zero-padding), either way round.
    Q20 = np.linalg.qr(rng.standard_normal((20, 20)))[0][:12]
    assert run(X, X @ Q20).value < 1e-12 and run(X @ Q20, X).value < 1e-12


def test_rotation_invariance_and_symmetry(rng):
    X, Y = make_pair(rng, 150, 10, 14)
    value = run(X, Y).value
    Q = np.linalg.qr(rng.standard_normal((14, 14)))[0]
    assert run(X, 0.3 * Y @ Q + 2).value == pytest.approx(value, abs=TOL)
    assert run(Y, X).value == pytest.approx(value, abs=TOL)
    assert 0 <= value <= math.sqrt(2)


def test_permuted_rows_and_direction(rng):
    X, Y = make_pair(rng, 400, 6, 6, signal=3.0)
    res = run(X, Y, permutations=40)
    shuffled = run(X, Y[rng.permutation(400)]).value
    # Lower is better: the aligned pair sits far below its shuffled copy and gets the smallest p-value.
    assert res.value < 0.7 < shuffled
    assert res.p_value == pytest.approx(1 / 41) and res.calibrated > 0


def test_null_equals_recomputation(rng):
    X, Y = make_pair(rng, 80, 7, 9)
    perms = [rng.permutation(80) for _ in range(4)]
    null = SPEC.permutation_null(pair(X, Y), {}, perms)
    assert null == pytest.approx([run(X, Y[p]).value for p in perms], abs=1e-12)
    res = run(X, Y, permutations=30)
    scratch = SPEC.permutation_null(pair(X, Y), {}, list(stats.permutations(pair(X, Y).perm_seed, 80, 30)))
    assert res.p_value == stats.p_value(-res.value, -scratch)


def test_zero_variance_side_has_no_value(rng):
    X, _ = make_pair(rng, 50, 4, 4)
    res = run(X, np.full((50, 3), 2.0))
    assert res.value is None and "b has all rows identical" in res.reason


def test_spec_declares_a_distance():
    assert SPEC.higher_is_better is False and SPEC.best == 0.0
    assert parse_metrics("procrustes")[0].symmetric
