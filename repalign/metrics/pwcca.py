"""The pwcca metric: canonical correlations weighted by how much of one input's activity each accounts for."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from repalign.linalg import dot, matmul
from repalign.metrics import subspace as _sub
from repalign.metrics.base import PairData, finish
from repalign.metrics.spec import MetricSpec, Param, Params, Work, one_of
from repalign.results import MetricResult


@dataclass(frozen=True)
class Side:
    """One input's CCA ingredients: an orthonormal basis of its centred column space and its columns on it."""

    basis: _sub.Basis
    loads: np.ndarray
    """d×r: XcᵀU, the inner products of the input's centred columns (neurons) with the basis vectors."""


def side(X: np.ndarray) -> Side:
    """Centre X (n×d), keep the directions above :data:`subspace.RANK_TOL`, and note XcᵀU = G·W."""
    Xc = _sub.centred(X)
    G = _sub.gram(Xc)
    w, V = _sub.eigen(G)
    B = _sub.basis(Xc, w, V, _sub.rank(w))
    return Side(B, matmul(G, B.w))


def pwcca(a: Side, b: Side, Ub: np.ndarray, weighted: str) -> float:
    """Projection-weighted CCA of two inputs, weighting by side a ('a') or side b ('b').

    Parameters
    ----------
    a, b : the two inputs' :class:`Side` (ranks r1, r2 ≥ 1).
    Ub : (n, r2) the basis of b to use (``b.basis.u``, or its rows permuted).
    weighted : 'a' or 'b', whose activity weights the canonical correlations.

    Returns
    -------
    Σ_j α_j ρ_j over the m = min(r1, r2) canonical pairs, in [0, 1].

    Notes
    -----
    Morcos, Raghu & Bengio 2018: ρ_j are the singular values of UaᵀUb, h_j = Ua p_j the canonical variates
    of the weighted side (p_j its singular vectors), α_j ∝ Σ_i |⟨h_j, x_i⟩| over that side's centred
    columns x_i (neurons), Σα = 1. Only the m variates that have a partner are weighted: the others have
    ρ = 0 and no well-defined basis. google/svcca's pwcca.py builds its directions without Σxx^(-1/2) and
    from uncentred activity (see moskomule/anatome#27), and its branch for the second input indexes the
    first (google/svcca#9); this follows the paper's definition. PU's pwcca returns its SVCCA value.
    """
    T = matmul(a.basis.u.T, Ub)
    rho, vecs = _sub.singular(T, "left" if weighted == "a" else "right")
    loads = a.loads if weighted == "a" else b.loads
    weights = np.abs(matmul(loads, vecs)).sum(axis=0)
    return dot(weights, np.clip(rho, 0.0, 1.0)) / float(weights.sum())


def _values(a: Side, b: Side, Ub: np.ndarray, direction: str) -> dict[str, float]:
    sides = ("a", "b") if direction == "both" else (direction,)
    return {s: pwcca(a, b, Ub, s) for s in sides}


def _value(values: dict[str, float]) -> float:
    return float(np.mean(list(values.values())))


def _sides(p: PairData) -> tuple[Side, Side]:
    p.progress("pwcca: canonical correlation analysis")
    return side(p.a), side(p.b)


def pwcca_result(p: PairData, params: Params) -> MetricResult:
    """PWCCA of the pair in the chosen direction (both: the mean of weighting by a and by b)."""
    a, b = _sides(p)
    direction = params["direction"]
    shown: dict = {"direction": direction, "kept_a": a.basis.r, "kept_b": b.basis.r, "rank_tol": _sub.RANK_TOL}
    if a.basis.r == 0 or b.basis.r == 0:
        label = p.labels[0] if a.basis.r == 0 else p.labels[1]
        return finish(p, SPEC, params, None, reason=f"{label} has all rows identical (zero variance); "
                      "PWCCA is undefined", shown=shown)
    values = _values(a, b, b.basis.u, direction)
    if direction == "both":
        shown.update({"pwcca_a": values["a"], "pwcca_b": values["b"]})
    # The null reuses this pair's CCA ingredients rather than computing them again.
    spec = replace(SPEC, permutation_null=lambda q, prm, perms: _null(a, b, direction, perms))
    return finish(p, spec, params, _value(values), shown=shown)


def _null(a: Side, b: Side, direction: str, perms: list[np.ndarray]) -> np.ndarray:
    """B's rows permuted permute the rows of its basis; its columns' loads on the basis do not change."""
    return np.array([_value(_values(a, b, b.basis.u[perm], direction)) for perm in perms])


def _permutation_null(p: PairData, params: Params, perms: list[np.ndarray]) -> np.ndarray:
    return _null(*_sides(p), params["direction"], perms)


def _memory(n: int, d1: int, d2: int, params: Params) -> int:
    # One centred float64 copy at a time, both bases and a permuted copy of B's, and a few d×d matrices
    # (Gram, eigenvectors, loads, the r1×r2 product and its Gram).
    d = max(d1, d2)
    return 8 * (n * d + n * (d1 + 2 * d2) + 8 * d * d)


def _symmetric(params: Params) -> bool:
    return params["direction"] == "both"


SPEC = MetricSpec(
    "pwcca", "projection-weighted CCA", (0.0, 1.0),
    "canonical correlations weighted by how much of one input's centred activity each canonical variate "
    "accounts for (Morcos et al. 2018), from the exact CCA; PU's pwcca returns its SVCCA value and "
    "google/svcca's weights omit the whitening",
    pwcca_result,
    params=(Param("direction", "both", one_of("a", "b", "both"),
                  "whose activity weights the correlations: a, b, or both (the mean of the two)"),),
    work=Work(arrays=True), permutation_null=_permutation_null, memory=_memory, symmetric=_symmetric,
    asymmetry="direction=a weights by a's activity, direction=b by b's")
