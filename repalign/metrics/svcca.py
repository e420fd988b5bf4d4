"""The svcca metric: mean canonical correlation between the two inputs' leading singular subspaces."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from repalign.errors import InputError
from repalign.linalg import matmul
from repalign.metrics import subspace as _sub
from repalign.metrics.base import PairData, finish
from repalign.metrics.spec import MetricSpec, Param, Params, Work, integer, number
from repalign.results import MetricResult

# PRH divides each centred column by its standard deviation (n − 1) plus this.
_STD_EPS = 1e-8


def svcca(Ua: np.ndarray, Ub: np.ndarray) -> float:
    """Mean canonical correlation between two orthonormal, centred bases.

    Parameters
    ----------
    Ua, Ub : (n, r1), (n, r2) float64 with orthonormal columns (r1, r2 ≥ 1).

    Returns
    -------
    The mean of the min(r1, r2) singular values of UaᵀUb, in [0, 1].

    Notes
    -----
    Raghu et al. 2017. For orthonormal centred bases the canonical correlations are exactly the singular
    values of UaᵀUb (computed here by LAPACK's SVD). PRH finds its bases with a randomized SVD and the
    correlations with sklearn's iterative CCA plus 1e-10 noise; PU adds 1e-8 to the covariances' diagonals.
    """
    rho = np.linalg.svd(matmul(Ua.T, Ub), compute_uv=False)
    return float(np.mean(np.clip(rho, 0.0, 1.0)))


def leading_basis(X: np.ndarray, dims: int, var: float | None) -> _sub.Basis:
    """The basis SVCCA keeps of one input (n×d).

    dims (var None): standardise the columns (centre, divide by std + 1e-8, as PRH), keep the top ``dims``
    left singular vectors. var: centre only (as PU), keep the fewest directions whose variance reaches
    ``var`` of the total. Either way never more than the directions above :data:`subspace.RANK_TOL`.
    """
    Xc = _sub.centred(X)
    if var is None:
        Xc /= Xc.std(axis=0, ddof=1) + _STD_EPS
    w, V = _sub.eigen(_sub.gram(Xc))
    r = _sub.rank(w)
    if var is None:
        r = min(r, dims)
    elif r:
        share = np.cumsum(w) / np.sum(w)
        r = min(r, int(np.searchsorted(share, var)) + 1)
    return _sub.basis(Xc, w, V, r)


def _bases(p: PairData, params: Params) -> tuple[_sub.Basis, _sub.Basis]:
    p.progress("svcca: leading singular subspaces")
    return (leading_basis(p.a, params["dims"], params["var"]),
            leading_basis(p.b, params["dims"], params["var"]))


def svcca_result(p: PairData, params: Params) -> MetricResult:
    """SVCCA of the pair (PRH's convention by default, PU's with var)."""
    Ba, Bb = _bases(p, params)
    pu = params["var"] is not None
    shown = {"dims": None if pu else params["dims"], "var": params["var"], "standardize": not pu,
             "kept_a": Ba.r, "kept_b": Bb.r}
    if Ba.r == 0 or Bb.r == 0:
        side = p.labels[0] if Ba.r == 0 else p.labels[1]
        return finish(p, SPEC, params, None, reason=f"{side} has all rows identical (zero variance); "
                      "SVCCA is undefined", shown=shown)
    # The null reuses this pair's bases rather than computing them again.
    spec = replace(SPEC, permutation_null=lambda q, prm, perms: _null(Ba, Bb, perms))
    return finish(p, spec, params, svcca(Ba.u, Bb.u), shown=shown)


def _null(Ba: _sub.Basis, Bb: _sub.Basis, perms: list[np.ndarray]) -> np.ndarray:
    """Permuting B's rows permutes the rows of its basis: one r1×r2 product per permutation, O(n·r1·r2)."""
    return np.array([svcca(Ba.u, Bb.u[perm]) for perm in perms])


def _permutation_null(p: PairData, params: Params, perms: list[np.ndarray]) -> np.ndarray:
    return _null(*_bases(p, params), perms)


def _validate(params: Params, given: tuple[str, ...]) -> None:
    if "dims" in given and "var" in given:
        raise ValueError("give dims (PRH: top dims directions of standardised columns) or var (PU: the "
                         "directions explaining that share of the variance), not both")


def _check(params: Params, n: int, d1: int, d2: int, k: int, labels: tuple[str, str]) -> None:
    if params["var"] is not None:
        return
    dims = params["dims"]
    top = min(n - 1, d1, d2)
    if dims > top:
        raise InputError(f"d too small for svcca:dims: {labels[0]} (d={d1}) and {labels[1]} (d={d2}) with "
                         f"n={n} items allow dims ≤ min(n−1, d1, d2) = {top}, not dims={dims}")


def _memory(n: int, d1: int, d2: int, params: Params) -> int:
    # One side's centred float64 copy at a time, both bases and a permuted copy of B's, the d×d Gram and its
    # eigenvectors (LAPACK's workspace is of the same order).
    ra, rb = (d1, d2) if params["var"] is not None else (params["dims"],) * 2
    return 8 * (n * max(d1, d2) + n * (ra + 2 * rb) + 3 * max(d1, d2) ** 2)


def _parse_var(text: str) -> float:
    return number(0.0, 1.0, lo_open=True)(text)


SPEC = MetricSpec(
    "svcca", "SVCCA", (0.0, 1.0),
    "mean canonical correlation between the top singular subspaces (Raghu et al. 2017); default PRH's "
    "(standardised columns, top 10), var=0.99 PU's; computed exactly, where PRH uses a randomized SVD and "
    "sklearn's iterative CCA with noise and PU a 1e-8 ridge",
    svcca_result,
    params=(Param("dims", 10, integer(1), "directions kept per side after standardising the columns (PRH's "
                  "convention); not with var"),
            Param("var", None, _parse_var, "keep the fewest centred directions explaining this share of the "
                  "variance, without standardising (PU's convention, 0.99); replaces dims")),
    work=Work(arrays=True), permutation_null=_permutation_null, memory=_memory, check=_check,
    validate=_validate)
