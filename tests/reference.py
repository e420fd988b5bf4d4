"""Slow dense references written straight from ../shared/formulas.md, independent of the package."""

import numpy as np


def similarity(X, distance):
    """Full n×n similarity in float64 (larger = closer)."""
    X = np.asarray(X, dtype=np.float64)
    if distance == "cosine":
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        return Xn @ Xn.T
    if distance == "ip":
        return X @ X.T
    diff = X[:, None, :] - X[None, :, :]
    return -np.einsum("ijd,ijd->ij", diff, diff)


def dense_knn(X, k, distance="cosine"):
    """k most similar j ≠ i, ties by smaller index: a full sort per row."""
    S = similarity(X, distance)
    n = S.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    idx = np.arange(n)
    for i in range(n):
        others = idx[idx != i]
        order = np.lexsort((others, -S[i, others]))
        out[i] = others[order[:k]]
    return out


def mutual_knn(X, Y, k, distance="cosine"):
    A, B = dense_knn(X, k, distance), dense_knn(Y, k, distance)
    return float(np.mean([len(set(A[i]) & set(B[i])) / k for i in range(len(A))]))


def hsic_biased(K, L):
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def hsic_unbiased(K, L):
    """Song et al. 2012, eq. 5, with zero diagonals."""
    n = K.shape[0]
    Kt = K - np.diag(np.diag(K))
    Lt = L - np.diag(np.diag(L))
    one = np.ones(n)
    term = np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2)) \
        - 2 * (one @ Kt @ Lt @ one) / (n - 2)
    return term / (n * (n - 3))


def cka(X, Y, unbiased=False):
    """CKA from the n×n linear kernels K = XXᵀ, L = YYᵀ."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    K, L = X @ X.T, Y @ Y.T
    h = hsic_unbiased if unbiased else hsic_biased
    return h(K, L) / np.sqrt(h(K, K) * h(L, L))
