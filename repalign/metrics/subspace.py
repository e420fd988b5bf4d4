"""Centred copies, d×d Grams, orthonormal bases and singular pairs: the linear algebra of the feature-space metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from repalign.linalg import matmul

# Directions whose variance is below RANK_TOL × the largest count as absent. Float32 rounding noise sits
# near 1e-14 of the top variance, so it is cut; a float64 Gram resolves a direction at the cut to about
# eps/RANK_TOL ≈ 2e-6 of its variance, and the second pass below restores the basis's orthogonality.
RANK_TOL = 1e-10
# A kept spectrum spanning more than 1/REORTH leaves the basis orthogonal only to ~eps·λmax/λmin (up to
# 2e-6): such a basis is orthonormalised once more from its own n-space Gram (CholeskyQR2), to ~1e-15.
REORTH = 1e-6


def centred(X: np.ndarray) -> np.ndarray:
    """A float64 copy of X (n×d) minus its column means."""
    Xc = np.array(X, dtype=np.float64)
    Xc -= Xc.mean(axis=0)
    return Xc


def gram(Xc: np.ndarray) -> np.ndarray:
    """XcᵀXc (d×d) in float64, summed in the thread-order-stable blocks of :func:`repalign.linalg.matmul`."""
    return matmul(Xc.T, Xc)


def eigen(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, rounding's negatives set to 0) and eigenvectors (columns) of a PSD matrix."""
    w, V = np.linalg.eigh(G)
    return np.maximum(w[::-1], 0.0), V[:, ::-1]


def rank(w: np.ndarray) -> int:
    """How many of the descending eigenvalues ``w`` exceed :data:`RANK_TOL` × the largest."""
    if w.size == 0 or not w[0] > 0:
        return 0
    return int(np.count_nonzero(w > RANK_TOL * w[0]))


@dataclass(frozen=True)
class Basis:
    """An orthonormal basis ``u = xc @ w`` (n×r) of the leading r directions of a centred input xc (n×d)."""

    u: np.ndarray
    w: np.ndarray
    """d×r: the basis's coefficients on the input's columns."""

    @property
    def r(self) -> int:
        return int(self.u.shape[1])


def basis(Xc: np.ndarray, w: np.ndarray, V: np.ndarray, r: int) -> Basis:
    """The leading r principal directions of Xc as an orthonormal n×r basis.

    Parameters
    ----------
    Xc : (n, d) float64, column-centred.
    w, V : eigenvalues (descending) and eigenvectors of XcᵀXc, from :func:`eigen`.
    r : directions to keep, at most :func:`rank` (w).

    Notes
    -----
    u_j = Xc v_j / sqrt(w_j) are the left singular vectors of Xc. When the kept eigenvalues span more than
    1/:data:`REORTH` the basis is orthonormalised once more: Cholesky LLᵀ of uᵀu, u ← u L⁻ᵀ (its span is
    unchanged).
    """
    W = V[:, :r] / np.sqrt(w[:r])
    U = matmul(Xc, W)
    if r and w[r - 1] < REORTH * w[0]:
        T = np.linalg.inv(np.linalg.cholesky(matmul(U.T, U))).T
        U, W = matmul(U, T), W @ T
    return Basis(U, W)


def singular(M: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """The min(p, q) largest singular values of M (p×q) and their singular vectors on one side.

    Parameters
    ----------
    M : (p, q) float64.
    side : 'left' (the p×m left vectors) or 'right' (the q×m right vectors), m = min(p, q).

    Returns
    -------
    s : (m,) singular values, in the order of the vectors (descending up to rounding).
    vectors : (p, m) or (q, m) orthonormal columns.

    Notes
    -----
    The vectors are eigenvectors of MMᵀ (or MᵀM), a symmetric eigenproblem two to three times faster than
    LAPACK's full SVD at 768×768; each value is then ‖Mᵀp_j‖ (or ‖Mq_j‖), whose error is second order in the
    vector's. A value above ~1e-4·‖M‖ is exact to ~eps·‖M‖; a smaller one to ~sqrt(eps)·‖M‖ ≈ 1.5e-8·‖M‖
    (absolute), since the eigenvectors of MMᵀ cannot resolve values closer than that. For values alone use
    ``np.linalg.svd(M, compute_uv=False)``.
    """
    A = M if side == "left" else M.T
    _, V = eigen(matmul(A, A.T))
    V = V[:, : min(M.shape)]
    P = matmul(A.T, V)
    return np.sqrt(np.einsum("ij,ij->j", P, P)), V
