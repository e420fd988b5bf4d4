"""pwcca against a dense CCA by the generalized eigenproblem (Morcos et al. 2018), invariances and null."""

import numpy as np
import pytest
from conftest import make_pair

from repalign import stats
from repalign.errors import UsageError
from repalign.metrics import PairData, parse_metrics
from repalign.metrics.pwcca import SPEC
from repalign.results import UncertaintySettings

# Gram-based whitening vs explicit covariance inverses and a non-symmetric eigensolver: on these
# well-conditioned shapes both agree to ~1e-14.
TOL = 1e-9


def pair(X, Y, permutations=0):
    u = UncertaintySettings(resamples=0, permutations=permutations, permutations_explicit=permutations > 0)
    return PairData(X, Y, k=5, distance="cosine", labels=("a", "b"), uncertainty=u, ordered=True)


def run(X, Y, sel="pwcca", **kw):
    (choice,) = parse_metrics(sel)
    return choice.spec.compute(pair(X, Y, **kw), choice.values)


def oracle(X, Y):
    """PWCCA weighting X: canonical directions a_j from Σxx⁻¹ΣxyΣyy⁻¹Σyx a = ρ²a, variates h_j = Xc a_j
    (unit norm), α_j ∝ Σ_i |⟨h_j, x_i⟩| over X's centred columns, value Σ α_j ρ_j over min(d1, d2) pairs."""
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Sxx, Syy, Sxy = Xc.T @ Xc, Yc.T @ Yc, Xc.T @ Yc
    ev, A = np.linalg.eig(np.linalg.solve(Sxx, Sxy) @ np.linalg.solve(Syy, Sxy.T))
    order = np.argsort(-ev.real)[: min(X.shape[1], Y.shape[1])]
    rho = np.sqrt(np.clip(ev.real[order], 0, 1))
    H = Xc @ A.real[:, order]
    H /= np.linalg.norm(H, axis=0)
    alpha = np.abs(H.T @ Xc).sum(axis=1)
    return float(np.sum(alpha / alpha.sum() * rho))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", [(200, 5, 8), (300, 12, 7), (100, 10, 10)])
def test_against_dense_oracle(seed, shape):
    X, Y = make_pair(np.random.default_rng(seed), *shape)
    a, b = oracle(X, Y), oracle(Y, X)
    assert run(X, Y, "pwcca:direction=a").value == pytest.approx(a, abs=TOL)
    assert run(X, Y, "pwcca:direction=b").value == pytest.approx(b, abs=TOL)
    res = run(X, Y)
    assert res.value == pytest.approx((a + b) / 2, abs=TOL)
    assert res.params["pwcca_a"] == pytest.approx(a, abs=TOL) and res.params["direction"] == "both"


def test_weights_differ_from_plain_mean(rng):
    """Unlike PU's pwcca (which returns its SVCCA value), the weighting moves the value off the mean ρ."""
    X, Y = make_pair(rng, 300, 8, 8, rank=2)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Ux, Uy = np.linalg.svd(Xc, full_matrices=False)[0], np.linalg.svd(Yc, full_matrices=False)[0]
    mean_rho = np.linalg.svd(Ux.T @ Uy, compute_uv=False).mean()
    assert abs(run(X, Y).value - mean_rho) > 0.05


def test_identical_inputs_give_one(rng):
    X, _ = make_pair(rng, 200, 12, 12)
    for direction in ("a", "b", "both"):
        assert run(X, X, f"pwcca:direction={direction}").value == pytest.approx(1.0, abs=1e-12)


def test_invariances(rng):
    X, Y = make_pair(rng, 200, 9, 11)
    a = run(X, Y, "pwcca:direction=a").value
    # The weighted side's canonical variates and ρ do not change under any invertible map of the other side.
    M = rng.standard_normal((11, 11))
    assert run(X, Y @ M + 4, "pwcca:direction=a").value == pytest.approx(a, abs=TOL)
    # The weights are L1 norms over the weighted side's columns: invariant to their order, signs, a common
    # scale and a shift...
    signs = rng.choice([-1.0, 1.0], 9)
    cols = rng.permutation(9)
    assert run(2.5 * (X * signs)[:, cols] - 1, Y, "pwcca:direction=a").value == pytest.approx(a, abs=TOL)
    # ...but not to a rotation of that side (Morcos et al. weight by the neurons' activity).
    Q = np.linalg.qr(rng.standard_normal((9, 9)))[0]
    assert abs(run(X @ Q, Y, "pwcca:direction=a").value - a) > 1e-6
    # direction=both is symmetric; a on (X, Y) is b on (Y, X).
    assert run(Y, X, "pwcca:direction=b").value == pytest.approx(a, abs=TOL)
    assert run(Y, X).value == pytest.approx(run(X, Y).value, abs=TOL)


def test_ill_conditioned_side_is_exact(rng):
    """Variances spanning 1e-9.8 in rotated directions, off centre (past subspace.REORTH): ρ and b's weights
    are invariant to any invertible map of a, so the value must equal that of a well-conditioned copy.
    Without the second orthonormalisation the error here is ~2e-10; with it ~1e-12."""
    Z = rng.standard_normal((3000, 40))
    Y = Z[:, :20] @ rng.standard_normal((20, 30)) + rng.standard_normal((3000, 30))
    Q = np.linalg.qr(rng.standard_normal((40, 40)))[0]
    skewed = (Z * np.logspace(0, -4.9, 40)) @ Q + 100
    assert run(skewed, Y, "pwcca:direction=b").value == pytest.approx(run(Z, Y, "pwcca:direction=b").value,
                                                                      abs=2e-11)


def test_rank_deficient_side(rng):
    X, Y = make_pair(rng, 100, 5, 6)
    wide = np.hstack([X, X[:, :2] + X[:, 2:4]])
    res = run(wide, Y)
    assert res.params["kept_a"] == 5 and res.params["kept_b"] == 6
    assert 0 < res.value < 1
    # The duplicated directions add no canonical pair: weighting by b is unchanged.
    assert run(wide, Y, "pwcca:direction=b").value == pytest.approx(run(X, Y, "pwcca:direction=b").value,
                                                                    abs=TOL)


def test_permuted_rows_near_zero(rng):
    X, Y = make_pair(rng, 3000, 5, 5, signal=3.0)
    assert run(X, Y).value > 0.5
    # Five independent directions in 3000 items correlate at about sqrt(5/3000) ≈ 0.04.
    assert run(X, Y[rng.permutation(3000)]).value < 0.1


@pytest.mark.parametrize("direction", ["a", "b", "both"])
def test_null_equals_recomputation(rng, direction):
    X, Y = make_pair(rng, 80, 7, 9)
    sel = f"pwcca:direction={direction}"
    (choice,) = parse_metrics(sel)
    perms = [rng.permutation(80) for _ in range(4)]
    null = SPEC.permutation_null(pair(X, Y), choice.values, perms)
    assert null == pytest.approx([run(X, Y[p], sel).value for p in perms], abs=1e-12)
    res = run(X, Y, sel, permutations=30)
    scratch = SPEC.permutation_null(pair(X, Y), choice.values,
                                    list(stats.permutations(pair(X, Y).perm_seed, 80, 30)))
    assert res.p_value == stats.p_value(res.value, scratch)


def test_symmetry_follows_direction():
    assert parse_metrics("pwcca")[0].symmetric
    assert not parse_metrics("pwcca:direction=a")[0].symmetric


def test_zero_variance_side_has_no_value(rng):
    X, _ = make_pair(rng, 50, 4, 4)
    res = run(np.zeros((50, 3)), X)
    assert res.value is None and "a has all rows identical" in res.reason


def test_bad_direction():
    with pytest.raises(UsageError, match="not one of a, b, both"):
        parse_metrics("pwcca:direction=ab")
