"""The rsa metric: correlation of the two dissimilarity matrices over all item pairs (Kriegeskorte et al. 2008)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from repalign.errors import InputError
from repalign.metrics import condensed as _cd
from repalign.metrics.base import PairData, finish
from repalign.metrics.spec import MetricSpec, Param, Params, Work, one_of
from repalign.results import MetricResult
from repalign.validation import check_nonzero_rows, row_norms

_RANGE = (-1.0, 1.0)
_METHODS = ("spearman", "pearson")
_DISSIMILARITIES = ("cosine", "l2")


def rsa_vectors(a: np.ndarray, b: np.ndarray, method: str, dissimilarity: str,
                block: int | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Both sides' centred condensed vectors: dissimilarities (pearson) or their average ranks (spearman).

    Parameters
    ----------
    a : ndarray, shape (n, d1)
    b : ndarray, shape (n, d2)
    method : {'spearman', 'pearson'}
    dissimilarity : {'cosine', 'l2'}
        1 − cosine similarity of the rows, or their Euclidean distance.
    block : int, optional
        Rows per block when building the dissimilarities.

    Returns
    -------
    (u, v) : ndarrays of shape (n(n−1)/2,), float64, mean 0
        A side is None when all its dissimilarities are equal (no correlation exists).
    """
    # Built one after the other (the products use both cores), ranked side by side: argsort runs on one
    # core and releases the GIL, and it is most of the time at large n.
    sides = [_cd.condensed(x, dissimilarity, block) for x in (a, b)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        u, v = pool.map(lambda c: _centred(c, method), sides)
    return u, v


def _centred(c: np.ndarray, method: str) -> np.ndarray | None:
    if c.size < 2 or c.min() == c.max():
        return None
    if method == "spearman":
        return _cd.centred_average_ranks(c)
    c -= np.sum(c) / c.size
    return c


def rsa(a: np.ndarray, b: np.ndarray, method: str = "spearman", dissimilarity: str = "cosine",
        block: int | None = None) -> float | None:
    """Correlation between the upper triangles of the two dissimilarity matrices, over all n(n−1)/2 pairs.

    Parameters
    ----------
    a : ndarray, shape (n, d1)
    b : ndarray, shape (n, d2)
        Row i of both is the same item.
    method : {'spearman', 'pearson'}
        Spearman: Pearson correlation of average ranks (ties share their mean rank, as scipy's spearmanr).
    dissimilarity : {'cosine', 'l2'}
    block : int, optional
        Rows per block (the value does not depend on it beyond float64 rounding).

    Returns
    -------
    float or None
        None when one side's dissimilarities are all equal.

    Notes
    -----
    Representational similarity analysis (Kriegeskorte, Mur & Bandettini 2008), as platonic-universe's
    ``rsa`` (Spearman on 1 − cosine by default), exact over all pairs: the condensed vectors are built
    in row blocks and their products summed in float64, never an n×n matrix.
    """
    u, v = rsa_vectors(a, b, method, dissimilarity, block)
    if u is None or v is None:
        return None
    n = a.shape[0]
    r = _cd.blockwise_dot(u, v, n, block) / math.sqrt(_cd.blockwise_dot(u, u, n, block)
                                                       * _cd.blockwise_dot(v, v, n, block))
    return min(max(r, -1.0), 1.0)


def _check_rows(p: PairData, params: Params) -> None:
    if params["dissimilarity"] == "cosine":
        for x, label in ((p.a, p.labels[0]), (p.b, p.labels[1])):
            check_nonzero_rows(row_norms(x), label, "rsa with dissimilarity=cosine")


def rsa_result(p: PairData, params: Params) -> MetricResult:
    """RSA of the pair, with its exact chance level 0 (the permutation null runs only with --permutations)."""
    _check_rows(p, params)
    method, dissimilarity = params["method"], params["dissimilarity"]
    shown = {"method": method, "dissimilarity": dissimilarity, "pairs": _cd.pairs(p.n)}
    p.progress(f"rsa: {method} correlation over {_cd.pairs(p.n)} pairs of {dissimilarity} dissimilarities")
    value = rsa(p.a, p.b, method, dissimilarity)
    if value is None:
        return finish(p, SPEC, params, None, shown=shown,
                      reason="a side's dissimilarities are all equal; their correlation is undefined")
    # Under a random pairing, pair (i, j) of B becomes a uniformly random pair, so the expected numerator is
    # Σ u_ij · mean(v) = 0 (v is centred) while the denominator does not change: the mean is exactly 0.
    return finish(p, SPEC, params, value, chance=0.0, shown=shown)


def _permutation_null(p: PairData, params: Params, perms: list[np.ndarray]) -> np.ndarray:
    """Permuting B's rows permutes the pairs of its condensed vector: its ranks are reused, not recomputed."""
    method, dissimilarity = params["method"], params["dissimilarity"]
    u, v = rsa_vectors(p.a, p.b, method, dissimilarity)
    if u is None or v is None:
        return np.full(len(perms), np.nan)
    norm = math.sqrt(_cd.blockwise_dot(u, u, p.n) * _cd.blockwise_dot(v, v, p.n))
    return np.clip(_cd.permuted_dots(u, v, p.n, perms) / norm, -1.0, 1.0)


def _memory(n: int, d1: int, d2: int, params: Params) -> int:
    # Condensed vectors of N = n(n−1)/2 pairs: spearman ranks both sides at once, each at its peak with
    # argsort order and tie groups; pearson keeps the two float64 vectors.
    pairs = _cd.pairs(n)
    vectors = (2 * _cd.RANK_BYTES_PER_ENTRY if params.get("method", "spearman") == "spearman" else 16) * pairs
    # float64 copies of the inputs (normalised or centred) and one block's temporaries.
    return vectors + 8 * n * (d1 + d2) + _cd.block_bytes(n)


def _check(params: Params, n: int, d1: int, d2: int, k: int, labels: tuple[str, str]) -> None:
    if n < 3:
        raise InputError(f"{labels[0]} and {labels[1]} hold {n} items, but rsa needs at least 3 "
                         "(a correlation over at least 3 item pairs)")


SPEC = MetricSpec(
    "rsa", "RSA", _RANGE,
    "correlation of the two dissimilarity matrices over all item pairs (Kriegeskorte et al. 2008); exact "
    "over all n(n−1)/2 pairs, never subsampled", rsa_result,
    params=(Param("method", "spearman", one_of(*_METHODS),
                  "spearman (average ranks, as scipy) or pearson correlation of the dissimilarities"),
            Param("dissimilarity", "cosine", one_of(*_DISSIMILARITIES),
                  "cosine (1 − cosine similarity, platonic-universe's default) or l2 (Euclidean distance)")),
    work=Work(arrays=True),
    chance="exact: 0 (permutation mean); the null SD from the permutation null (with --permutations)",
    permutation_null=_permutation_null, memory=_memory, check=_check)
