"""The procrustes metric: orthogonal Procrustes distance between the centred, unit-norm inputs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from repalign.linalg import dot, matmul
from repalign.metrics import subspace as _sub
from repalign.metrics.base import PairData, finish
from repalign.metrics.spec import MetricSpec, Params, Work
from repalign.results import MetricResult

# Below this squared distance 2 − 2‖X̃ᵀỸ‖_* has cancelled to fewer than ~5 good digits, so the distance is
# measured directly as ‖X̃R − Ỹ‖_F with the optimal R (an n-space product, paid only by near-equal inputs).
_DIRECT_BELOW = 1e-8


def unit(X: np.ndarray) -> np.ndarray | None:
    """X (n×d) centred and scaled to unit Frobenius norm, float64; None when every row is the same."""
    Xc = _sub.centred(X)
    norm = math.sqrt(dot(Xc, Xc))
    if not norm > 0:
        return None
    Xc /= norm
    return Xc


def distance(Xt: np.ndarray, Yt: np.ndarray) -> float:
    """Orthogonal Procrustes distance between centred, unit-Frobenius-norm inputs.

    Parameters
    ----------
    Xt, Yt : (n, d1), (n, d2) float64, column-centred, ‖·‖_F = 1 (from :func:`unit`); d1 ≠ d2 allowed.

    Returns
    -------
    min over orthogonal R of ‖X̃R − Ỹ‖_F = sqrt(max(0, 2 − 2‖X̃ᵀỸ‖_*)), in [0, sqrt(2)].

    Notes
    -----
    Williams et al. 2021 (shape metrics); PU's ``procrustes``. The nuclear-norm form holds for d1 ≠ d2
    (the narrower input zero-padded), where PU refuses. Nearly equal inputs are measured directly (see
    :data:`_DIRECT_BELOW`), so identical or rotated copies give ~1e-15 rather than ~1e-8.
    """
    C = matmul(Xt.T, Yt)
    sq = 2.0 - 2.0 * float(np.sum(np.linalg.svd(C, compute_uv=False)))
    if sq < _DIRECT_BELOW:
        return _direct(Xt, Yt, C)
    return math.sqrt(sq)


def _direct(Xt: np.ndarray, Yt: np.ndarray, C: np.ndarray) -> float:
    """‖X̃R − Ỹ‖_F with R = UVᵀ from C = X̃ᵀỸ = USVᵀ, rotating the narrower input into the wider space."""
    U, _, Vt = np.linalg.svd(C, full_matrices=False)
    if Xt.shape[1] <= Yt.shape[1]:
        diff = matmul(Xt, matmul(U, Vt)) - Yt
    else:
        diff = Xt - matmul(Yt, matmul(U, Vt).T)
    return math.sqrt(dot(diff, diff))


def procrustes_result(p: PairData, params: Params) -> MetricResult:
    """Procrustes distance of the pair (lower is more aligned)."""
    p.progress("procrustes: cross-product and its singular values")
    Xt, Yt = unit(p.a), unit(p.b)
    shown = {"centre": True, "scale": "unit Frobenius norm", "form": "sqrt(2 - 2 nuclear norm)"}
    if Xt is None or Yt is None:
        label = p.labels[0] if Xt is None else p.labels[1]
        return finish(p, SPEC, params, None, reason=f"{label} has all rows identical (zero variance); "
                      "the Procrustes distance is undefined", shown=shown)
    # The null reuses the centred, scaled inputs.
    spec = replace(SPEC, permutation_null=lambda q, prm, perms: _null(Xt, Yt, perms))
    return finish(p, spec, params, distance(Xt, Yt), shown=shown)


def _null(Xt: np.ndarray, Yt: np.ndarray, perms: list[np.ndarray]) -> np.ndarray:
    """One d1×d2 cross-product and its singular values per permutation."""
    return np.array([distance(Xt, Yt[perm]) for perm in perms])


def _permutation_null(p: PairData, params: Params, perms: list[np.ndarray]) -> np.ndarray:
    Xt, Yt = unit(p.a), unit(p.b)
    assert Xt is not None and Yt is not None, "the null is asked only for a defined value"
    return _null(Xt, Yt, perms)


def _memory(n: int, d1: int, d2: int, params: Params) -> int:
    # Both centred float64 copies, a permuted copy of B's, and the d1×d2 product with its SVD.
    return 8 * (n * (d1 + 2 * d2) + 4 * d1 * d2)


SPEC = MetricSpec(
    "procrustes", "orthogonal Procrustes distance", (0.0, math.sqrt(2.0)),
    "distance left after the best rotation of the centred, unit-norm inputs, sqrt(2 − 2‖X̃ᵀỸ‖_*) (Williams "
    "et al. 2021; PU's procrustes), also for different widths, where PU refuses",
    procrustes_result, higher_is_better=False, work=Work(arrays=True), permutation_null=_permutation_null,
    memory=_memory)
