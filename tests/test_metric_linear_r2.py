"""linear-r2 against a dense per-fold ridge fit, PU's golden values, conventions, invariances and null."""

import numpy as np
import pytest
from conftest import golden_pair, make_pair

from repalign import stats
from repalign.errors import InputError, UsageError
from repalign.metrics import PairData, parse_metrics
from repalign.metrics.linear_r2 import SPEC
from repalign.results import UncertaintySettings
from repalign.seeds import Streams

# Normal equations from summed fold Grams vs a refit on each training set: ~1e-13 apart in float64.
TOL = 1e-9


def pair(X, Y, permutations=0, seed=0):
    u = UncertaintySettings(resamples=0, permutations=permutations, permutations_explicit=permutations > 0,
                            seed=seed)
    return PairData(X, Y, k=5, distance="cosine", labels=("a", "b"), uncertainty=u, ordered=True)


def run(X, Y, sel="linear-r2", **kw):
    (choice,) = parse_metrics(sel)
    return choice.spec.compute(pair(X, Y, **kw), choice.values)


def split(n, folds, seed):
    """The documented split: child 0 of the pair stream shuffles the rows, cut into nearly equal folds."""
    s = Streams.from_seed(seed).pair
    order = np.random.default_rng(np.random.SeedSequence(s.entropy, spawn_key=tuple(s.spawn_key) + (0,)))
    return np.array_split(order.permutation(n), folds)


def ridge_r2(X, Y, alpha, folds, seed=0):
    """Ridge with an unpenalised intercept fitted on each training set, scored (pooled) on the held-out rows;
    in-sample (folds=0) fitted and scored on all rows. R² per target column, averaged uniformly."""
    n = len(X)
    tests = [np.arange(n)] if folds == 0 else split(n, folds, seed)
    pred = np.zeros_like(Y)
    for test in tests:
        train = test if folds == 0 else np.setdiff1d(np.arange(n), test)
        mx, my = X[train].mean(0), Y[train].mean(0)
        Xt, Yt = X[train] - mx, Y[train] - my
        beta = np.linalg.solve(Xt.T @ Xt + alpha * np.eye(X.shape[1]), Xt.T @ Yt)
        pred[test] = (X[test] - mx) @ beta + my
    ss_res = ((Y - pred) ** 2).sum(0)
    ss_tot = ((Y - Y.mean(0)) ** 2).sum(0)
    return float(np.mean(1 - ss_res / ss_tot))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", [(60, 5, 7), (120, 30, 8), (40, 50, 70)])
@pytest.mark.parametrize("folds,alpha", [(0, 1.0), (5, 1.0), (3, 0.01), (7, 20.0)])
def test_against_dense_oracle(seed, shape, folds, alpha):
    X, Y = make_pair(np.random.default_rng(seed), *shape)
    ab, ba = ridge_r2(X, Y, alpha, folds, seed), ridge_r2(Y, X, alpha, folds, seed)
    base = f"linear-r2:folds={folds},alpha={alpha}"
    assert run(X, Y, base + ",direction=ab", seed=seed).value == pytest.approx(ab, abs=TOL)
    assert run(X, Y, base + ",direction=ba", seed=seed).value == pytest.approx(ba, abs=TOL)
    res = run(X, Y, base, seed=seed)
    assert res.value == pytest.approx((ab + ba) / 2, abs=TOL)
    assert res.params["r2_ab"] == pytest.approx(ab, abs=TOL) and res.params["folds"] == folds


def test_golden_values():
    X, Y = golden_pair()
    # PU: sklearn Ridge(alpha=1) fitted and scored on the same rows.
    assert round(run(X, Y, "linear-r2:folds=0,direction=ab").value, 6) == 0.562859
    assert round(run(X, Y, "linear-r2:folds=0").value, 6) == 0.561799


def test_seeded_folds_are_reproducible(rng):
    X, Y = make_pair(rng, 100, 6, 6)
    assert run(X, Y, seed=3).value == run(X, Y, seed=3).value
    assert run(X, Y, seed=3).value != run(X, Y, seed=4).value
    assert run(X, Y, "linear-r2:folds=0", seed=3).value == run(X, Y, "linear-r2:folds=0", seed=4).value


def test_constant_target_column_scores_one(rng):
    """sklearn's r2_score: a column with zero variance and zero residual scores 1 (the intercept fits it)."""
    X, Y = make_pair(rng, 90, 5, 4)
    Yc = np.hstack([Y, np.full((90, 1), 3.25)])
    for folds in (0, 5):
        plain = run(X, Y, f"linear-r2:folds={folds},direction=ab").value
        got = run(X, Yc, f"linear-r2:folds={folds},direction=ab").value
        assert got == pytest.approx((4 * plain + 1) / 5, abs=1e-12)


def test_constant_side_has_no_value(rng):
    X, _ = make_pair(rng, 50, 4, 4)
    res = run(X, np.ones((50, 3)), "linear-r2:direction=ab")
    assert res.value is None and "b has all rows identical" in res.reason


def test_invariances_and_known_answers(rng):
    X, Y = make_pair(rng, 200, 8, 6)
    ab = run(X, Y, "linear-r2:direction=ab").value
    # Ridge's penalty ‖B‖² is unchanged by rotating the predictors, and the intercept absorbs shifts.
    Q = np.linalg.qr(rng.standard_normal((8, 8)))[0]
    assert run(X @ Q + 3, Y - 1, "linear-r2:direction=ab").value == pytest.approx(ab, abs=TOL)
    # direction=both is symmetric; ab on (X, Y) is ba on (Y, X).
    assert run(Y, X, "linear-r2:direction=ba").value == pytest.approx(ab, abs=TOL)
    assert run(Y, X).value == pytest.approx(run(X, Y).value, abs=TOL)
    # Identical inputs with a negligible penalty predict themselves.
    assert run(X, X, "linear-r2:alpha=1e-9").value == pytest.approx(1.0, abs=1e-9)
    # Out of sample, a shuffled pairing predicts nothing (R² slightly below 0); in-sample it looks positive.
    shuffled = Y[rng.permutation(200)]
    assert -0.15 < run(X, shuffled).value < 0.0 < run(X, shuffled, "linear-r2:folds=0").value


@pytest.mark.parametrize("sel", ["linear-r2", "linear-r2:direction=ab", "linear-r2:direction=ba",
                                 "linear-r2:folds=0", "linear-r2:folds=0,direction=ab"])
def test_null_equals_recomputation(rng, sel):
    X, Y = make_pair(rng, 80, 7, 9)
    (choice,) = parse_metrics(sel)
    perms = [rng.permutation(80) for _ in range(4)]
    null = SPEC.permutation_null(pair(X, Y), choice.values, perms)
    assert null == pytest.approx([run(X, Y[p], sel).value for p in perms], abs=1e-12)
    res = run(X, Y, sel, permutations=30)
    scratch = SPEC.permutation_null(pair(X, Y), choice.values,
                                    list(stats.permutations(pair(X, Y).perm_seed, 80, 30)))
    assert res.p_value == stats.p_value(res.value, scratch)


def test_symmetry_follows_direction():
    assert parse_metrics("linear-r2")[0].symmetric
    assert not parse_metrics("linear-r2:direction=ab")[0].symmetric


@pytest.mark.parametrize("sel,msg", [("linear-r2:folds=1", "nothing to fit"), ("linear-r2:folds=-2", "out of range"),
                                     ("linear-r2:alpha=0", "above 0"), ("linear-r2:alpha=-1", "above 0"),
                                     ("linear-r2:direction=a", "not one of both, ab, ba")])
def test_bad_parameters(sel, msg):
    with pytest.raises(UsageError, match=msg):
        parse_metrics(sel)


def test_check_folds_against_items():
    (choice,) = parse_metrics("linear-r2:folds=10")
    with pytest.raises(InputError, match=r"left and right hold 8 items.*folds=10"):
        SPEC.check(choice.values, 8, 3, 3, 2, ("left", "right"))
    SPEC.check(choice.values, 10, 3, 3, 2, ("left", "right"))
