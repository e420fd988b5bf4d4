"""svcca against a dense CCA written from docs/formulas.md §2b, the peers' golden values, invariances, null."""

import numpy as np
import pytest
from conftest import golden_pair, make_pair

from repalign import stats
from repalign.errors import InputError, UsageError
from repalign.metrics import PairData, parse_metrics
from repalign.metrics.svcca import SPEC
from repalign.results import UncertaintySettings

# The module whitens through d×d Grams and the oracle through n×d SVDs and explicit covariance inverses;
# on these well-conditioned shapes both are exact to ~1e-13.
TOL = 1e-9


def pair(X, Y, permutations=0, seed=0):
    u = UncertaintySettings(resamples=0, permutations=permutations, permutations_explicit=permutations > 0,
                            seed=seed)
    return PairData(X, Y, k=5, distance="cosine", labels=("a", "b"), uncertainty=u, ordered=True)


def run(X, Y, sel="svcca", **kw):
    (choice,) = parse_metrics(sel)
    return choice.spec.compute(pair(X, Y, **kw), choice.values)


def mean_canonical_correlation(Z1, Z2):
    """Canonical correlations as the square roots of the eigenvalues of Σ11⁻¹Σ12Σ22⁻¹Σ21 (Hotelling)."""
    Z1, Z2 = Z1 - Z1.mean(0), Z2 - Z2.mean(0)
    S11, S22, S12 = Z1.T @ Z1, Z2.T @ Z2, Z1.T @ Z2
    M = np.linalg.solve(S11, S12) @ np.linalg.solve(S22, S12.T)
    ev = np.sort(np.linalg.eigvals(M).real)[::-1][: min(Z1.shape[1], Z2.shape[1])]
    return float(np.mean(np.sqrt(np.clip(ev, 0, 1))))


def prh_oracle(X, Y, dims):
    def top(Z):
        Z = Z - Z.mean(0)
        Z = Z / (Z.std(0, ddof=1) + 1e-8)
        return np.linalg.svd(Z, full_matrices=False)[0][:, :dims]
    return mean_canonical_correlation(top(X), top(Y))


def pu_oracle(X, Y, var):
    def reduce(Z):
        U, s, _ = np.linalg.svd(Z - Z.mean(0), full_matrices=False)
        share = np.cumsum(s**2) / np.sum(s**2)
        k = next(i + 1 for i in range(len(s)) if share[i] >= var)
        return U[:, :k] * s[:k]
    return mean_canonical_correlation(reduce(X), reduce(Y))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape,dims", [((60, 5, 7), 3), ((120, 30, 8), 8), ((40, 50, 70), 10)])
def test_prh_convention_against_dense_oracle(seed, shape, dims):
    X, Y = make_pair(np.random.default_rng(seed), *shape)
    res = run(X, Y, f"svcca:dims={dims}")
    assert res.value == pytest.approx(prh_oracle(X, Y, dims), abs=TOL)
    assert res.params == {"dims": dims, "var": None, "standardize": True, "kept_a": dims, "kept_b": dims}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", [(60, 5, 7), (120, 30, 8), (300, 20, 25)])
@pytest.mark.parametrize("var", [0.5, 0.9, 0.99])
def test_pu_convention_against_dense_oracle(seed, shape, var):
    X, Y = make_pair(np.random.default_rng(seed), *shape)
    res = run(X, Y, f"svcca:var={var}")
    assert res.value == pytest.approx(pu_oracle(X, Y, var), abs=TOL)
    assert res.params["standardize"] is False and res.params["dims"] is None


def test_golden_values():
    X, Y = golden_pair()
    unit = lambda Z: Z / np.linalg.norm(Z, axis=1, keepdims=True)  # noqa: E731
    # PRH on L2-normalised rows, r = 10 = d, so PRH's randomized value is exact here (6 digits given).
    assert round(run(unit(X), unit(Y)).value, 6) == 0.718702
    # PU on raw rows, 99% of the variance; its 1e-8 ridge is far below the 6 digits given.
    assert round(run(X, Y, "svcca:var=0.99").value, 6) == 0.731014


def test_identical_inputs_give_one(rng):
    X, _ = make_pair(rng, 200, 12, 12)
    assert run(X, X).value == pytest.approx(1.0, abs=1e-12)
    assert run(X, X, "svcca:var=0.95").value == pytest.approx(1.0, abs=1e-12)


def test_invariances(rng):
    X, Y = make_pair(rng, 150, 10, 12)
    Q = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    # PU's convention (centre only): rotation, isotropic scale and shift of one side.
    pu = run(X, Y, "svcca:var=0.9").value
    assert run(X, 3 * Y @ Q + 5, "svcca:var=0.9").value == pytest.approx(pu, abs=TOL)
    # PRH's convention standardises columns: per-column scale, column order and shift.
    prh = run(X, Y, "svcca:dims=6").value
    cols = rng.permutation(12)
    scale = rng.uniform(0.1, 10, 12)
    assert run(X, (Y * scale + 2)[:, cols], "svcca:dims=6").value == pytest.approx(prh, abs=TOL)


def test_permuted_rows_near_chance(rng):
    X, Y = make_pair(rng, 2000, 20, 20, signal=3.0)
    # make_pair shares a rank-4 latent: its 4 directions lead both spectra.
    aligned = run(X, Y, "svcca:dims=4").value
    shuffled = run(X, Y[rng.permutation(2000)], "svcca:dims=4").value
    assert aligned > 0.9
    # Four random directions in 2000 items correlate at about sqrt(4/2000) ≈ 0.045.
    assert shuffled < 0.1


@pytest.mark.parametrize("sel", ["svcca", "svcca:dims=4", "svcca:var=0.9"])
def test_null_equals_recomputation(rng, sel):
    X, Y = make_pair(rng, 80, 9, 7)
    (choice,) = parse_metrics(sel)
    perms = [rng.permutation(80) for _ in range(4)]
    null = SPEC.permutation_null(pair(X, Y), choice.values, perms)
    assert null == pytest.approx([run(X, Y[p], sel).value for p in perms], abs=1e-12)
    # The null finish runs (this pair's bases, reused) gives the p-value of the from-scratch null.
    res = run(X, Y, sel, permutations=30)
    scratch = SPEC.permutation_null(pair(X, Y), choice.values, list(stats.permutations(pair(X, Y).perm_seed, 80, 30)))
    assert res.permutations == 30
    assert res.p_value == stats.p_value(res.value, scratch)


def test_zero_variance_side_has_no_value(rng):
    X, _ = make_pair(rng, 50, 4, 4)
    res = run(X, np.ones((50, 4)))
    assert res.value is None and "b has all rows identical" in res.reason


@pytest.mark.parametrize("sel,msg", [("svcca:dims=0", "out of range"), ("svcca:dims=2.5", "whole number"),
                                     ("svcca:var=0", "above 0"), ("svcca:var=1.5", "at most 1"),
                                     ("svcca:dims=5,var=0.9", "not both"), ("svcca:k=3", "no parameter")])
def test_bad_parameters(sel, msg):
    with pytest.raises(UsageError, match=msg):
        parse_metrics(sel)


def test_var_alone_and_one_are_allowed():
    (choice,) = parse_metrics("svcca:var=1")
    assert choice.values["var"] == 1.0 and choice.id == "svcca:var=1"


def test_check_names_inputs_and_dims():
    (choice,) = parse_metrics("svcca:dims=20")
    with pytest.raises(InputError, match=r"d too small for svcca:dims.*left \(d=12\).*right \(d=30\).*dims=20"):
        SPEC.check(choice.values, 500, 12, 30, 10, ("left", "right"))
    with pytest.raises(InputError, match="n=15"):
        SPEC.check(choice.values, 15, 40, 40, 10, ("a", "b"))
    SPEC.check(choice.values, 500, 20, 30, 10, ("a", "b"))
    (pu,) = parse_metrics("svcca:var=0.9")
    SPEC.check(pu.values, 5, 2, 2, 1, ("a", "b"))
