"""Products of float64 arrays whose rounding does not depend on how many threads BLAS runs."""

from __future__ import annotations

import numpy as np

# OpenBLAS sums a product's inner dimension in blocks of GEMM_Q (256 for the Haswell kernels, which also
# serve Zen) but splits a remainder between Q and 2Q differently with one thread and with several, so CKA
# changed in its last digit with OMP_NUM_THREADS. A call whose inner dimension is at most Q is one block
# either way, and the blocks are added here in a fixed order; threads then split only the rows and columns
# of the output, which leaves each entry's sum alone (tests/test_safety_options.py compares reports byte for
# byte). Cost: CKA at n = 10,000, d = 768 took about a quarter longer than with one call per product; 128
# would be safe for any Q ≥ 128 but more than doubled the time.
K_BLOCK = 256
# Rows of the output formed at a time, so that the partial products stay small.
_ROWS = 2048


def matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A @ B (2-D) with the inner dimension summed in fixed blocks of :data:`K_BLOCK`."""
    if A.shape[0] > _ROWS:
        out = np.empty((A.shape[0], B.shape[1]), dtype=np.result_type(A, B))
        for r in range(0, A.shape[0], _ROWS):
            out[r : r + _ROWS] = matmul(A[r : r + _ROWS], B)
        return out
    out = A[:, :K_BLOCK] @ B[:K_BLOCK]
    part = np.empty_like(out) if A.shape[1] > K_BLOCK else None
    for s in range(K_BLOCK, A.shape[1], K_BLOCK):
        np.matmul(A[:, s : s + K_BLOCK], B[s : s + K_BLOCK], out=part)
        out += part
    return out


def matvec(A: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A @ v in numpy's own loop: BLAS GEMV rounds the entries at its threads' boundaries differently."""
    return np.einsum("ij,j->i", A, v)


def vecmat(v: np.ndarray, A: np.ndarray) -> np.ndarray:
    """v @ A (= Aᵀv) in numpy's own loop, as :func:`matvec`."""
    return np.einsum("i,ij->j", v, A)


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Σ a·b over all entries in numpy's own loop (BLAS DOT splits long vectors between threads)."""
    return float(np.einsum("i,i->", np.ravel(a), np.ravel(b)))
