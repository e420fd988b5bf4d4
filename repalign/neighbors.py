"""Exact k-nearest-neighbour lists through FAISS, certified in float64, plus a numpy fallback."""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from repalign.errors import UsageError
from repalign.validation import check_nonzero_rows, row_norms

DISTANCES = ("cosine", "ip", "l2")

_U32 = 2.0**-24  # unit roundoff of float32
_U64 = 2.0**-53
# Rows of X per product in exact_knn (a streamed layer makes each such block in float64 while preprocessing it).
_EXACT_COLUMNS = 1 << 13
# Rows per block when gathering candidate rows in float64 (keeps each block near 32 MB).
_GATHER_BYTES = 1 << 25


def _check_distance(distance: str) -> None:
    if distance not in DISTANCES:
        raise UsageError(f"unknown --distance '{distance}' (choose from {', '.join(DISTANCES)})")


def _pair_scores(X: np.ndarray, norms: np.ndarray, rows: np.ndarray, cand: np.ndarray, distance: str) -> np.ndarray:
    """Similarity of row ``rows[b]`` with each of ``cand[b, :]``, in float64 (larger = closer).

    Every score that decides an order goes through this one function, so two
    pairs are compared with numbers computed the same way.
    """
    q = np.asarray(X[rows], dtype=np.float64)  # (b, d)
    c = np.asarray(X[cand.ravel()], dtype=np.float64).reshape(cand.shape + (X.shape[1],))  # (b, m, d)
    if distance == "l2":
        diff = c - q[:, None, :]
        return -np.einsum("bmd,bmd->bm", diff, diff)
    if distance == "cosine":
        # The definition: inner product after L2-normalising rows (so parallel rows tie exactly
        # whenever their normalised values are equal).
        q /= norms[rows][:, None]
        c /= norms[cand][:, :, None]
    return np.einsum("bd,bmd->bm", q, c)


def _error_bound(norms: np.ndarray, d: int, distance: str, unit: float) -> np.ndarray:
    """Per-row bound on |computed − exact| for any score against that row.

    Standard dot-product error bound, (d+2)·u·‖x‖·‖y‖ for a product in
    precision u including the rounding of the inputs, doubled for safety; for
    l2, FAISS expands ‖x‖² + ‖y‖² − 2x·y, bounded by (d+4)·u·(‖x‖+‖y‖)².
    """
    top = float(norms.max())
    if distance == "cosine":
        return np.full(norms.shape, 2.0 * (d + 2) * unit)
    if distance == "ip":
        return 2.0 * (d + 2) * unit * norms * top
    return 2.0 * (d + 4) * unit * (norms + top) ** 2


def _sort_lists(cand: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by decreasing score, ties by smaller index."""
    order = np.lexsort((cand, -score), axis=-1)
    return np.take_along_axis(cand, order, axis=1), np.take_along_axis(score, order, axis=1)


def _block_rows(m: int, d: int) -> int:
    return max(1, _GATHER_BYTES // (8 * max(1, m) * max(1, d)))


def exact_knn(X: np.ndarray, k: int, distance: str = "cosine", rows: np.ndarray | None = None,
              norms: np.ndarray | None = None) -> np.ndarray:
    """Exact ordered neighbour lists with numpy only, for ``rows`` (default all).

    Scores of all pairs are computed by matrix products in the input's own
    precision (no float64 copy of a float32 input); everything within that
    precision's rounding bound of the k-th best is then rescored with
    :func:`_pair_scores` in float64 and sorted by (score desc, index asc).
    Costs O(|rows|·n·d).
    """
    _check_distance(distance)
    n, d = X.shape
    if norms is None:
        norms = row_norms(X)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.empty((rows.size, k), dtype=np.int64)
    single = np.asarray(X[:1]).dtype == np.float32
    slack = 2 * _error_bound(norms, d, distance, _U32 if single else _U64)
    if single:
        slack += 4.0 * d * np.finfo(np.float32).tiny
    sq = norms**2

    def scores(q: np.ndarray, r: np.ndarray, c0: int, cols: np.ndarray) -> np.ndarray:
        """Scores of rows r (values q) against rows c0.. (values cols), in float64, self at −inf."""
        s = (q @ cols.T).astype(np.float64)
        c = slice(c0, c0 + cols.shape[0])
        if distance == "cosine":
            s /= norms[r][:, None] * norms[None, c]
        elif distance == "l2":
            s = 2 * s - sq[r][:, None] - sq[None, c]
        own = (r >= c0) & (r < c0 + cols.shape[0])
        s[np.flatnonzero(own), r[own] - c0] = -np.inf
        return s

    def finish(start: int, r: np.ndarray, pools: list[np.ndarray]) -> None:
        for b, i in enumerate(r):
            pool = pools[b]
            pool = pool[pool != i]
            sc = _pair_scores(X, norms, np.array([i]), pool[None, :], distance)[0]
            order = np.lexsort((pool, -sc))[:k]
            out[start + b] = pool[order]

    block = max(1, (1 << 24) // max(n, 1))  # b×n float64 scores, about 128 MB
    if rows.size > block:
        # Many rows: two passes over X per block of rows (the k-th best score, then the pool within the
        # rounding bound of it) instead of one pass per ``block`` rows, so a large or streamed X is read a few
        # times rather than |rows|/block times. The same pool criterion, so the same exact lists.
        many = max(1, (1 << 24) // _EXACT_COLUMNS)
        for start in range(0, rows.size, many):
            r = rows[start : start + many]
            q = np.asarray(X[r])
            best = np.full((r.size, k), -np.inf)
            for c0 in range(0, n, _EXACT_COLUMNS):
                s = scores(q, r, c0, np.asarray(X[c0 : c0 + _EXACT_COLUMNS]))
                both = np.concatenate([best, s], axis=1)
                best = -np.partition(-both, k - 1, axis=1)[:, :k]
            floor = best.min(axis=1) - 2 * slack[r]
            found: list[list[np.ndarray]] = [[] for _ in range(r.size)]
            for c0 in range(0, n, _EXACT_COLUMNS):
                s = scores(q, r, c0, np.asarray(X[c0 : c0 + _EXACT_COLUMNS]))
                bs, cs = np.nonzero(s >= floor[:, None])
                for b, cols_b in zip(*_split_by(bs, cs + c0)):
                    found[b].append(cols_b)
            finish(start, r, [np.concatenate(f) if f else np.empty(0, np.int64) for f in found])
        return out
    for start in range(0, rows.size, block):
        r = rows[start : start + block]
        q = np.asarray(X[r])
        s = np.empty((r.size, n))
        for c0 in range(0, n, _EXACT_COLUMNS):
            cols = np.asarray(X[c0 : c0 + _EXACT_COLUMNS])
            s[:, c0 : c0 + cols.shape[0]] = scores(q, r, c0, cols)
        kth = -np.partition(-s, k - 1, axis=1)[:, k - 1]
        finish(start, r, [np.flatnonzero(s[b] >= kth[b] - 2 * slack[i]) for b, i in enumerate(r)])
    return out


def _split_by(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct ``keys`` (sorted) and, for each, its ``values`` (keys come sorted from np.nonzero)."""
    if keys.size == 0:
        return keys, []
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts], np.split(values, starts[1:])


def knn(X: np.ndarray, k: int, distance: str = "cosine", norms: np.ndarray | None = None,
        label: str = "input", ordered: bool = True) -> np.ndarray:
    """Ordered k-nearest-neighbour lists of every row of ``X`` among the other rows.

    Parameters
    ----------
    X : (n, d) float32 or float64 array (may be memory-mapped).
    k : number of neighbours, 1 ≤ k ≤ n−1.
    distance : ``cosine`` (inner product of L2-normalised rows), ``ip`` (raw
        inner product) or ``l2`` (Euclidean).
    norms : optional precomputed float64 row norms.
    label : how error messages name this input.
    ordered : when False, only the *set* of each row's k neighbours is
        certified exact (what mutual k-NN, its null and its permutations
        use); within the set the order is FAISS's float32 order. Rows whose
        k-th and (k+1)-th scores are far apart then skip the float64
        rescoring even when they hold near-ties inside the set.

    Returns
    -------
    (n, k) int64 array; row i lists the k rows j ≠ i most similar to i, best first.

    Notes
    -----
    Self is excluded by index, never by dropping the first result (a
    duplicate row can come first); ties go to the smaller index
    (docs/formulas.md §1). FAISS searches a deeper list in float32; the candidates
    are rescored in float64 and the order is certified: a row whose k-th
    score is not safely above the best score FAISS left out (by the float32
    error bound) is recomputed exactly by :func:`exact_knn`. The result is
    therefore the exact float64 neighbour list, whatever FAISS's rounding.
    """
    norms = checked_norms(X, k, distance, label, norms)
    n = X.shape[0]
    # Candidates past k let the certification see a gap; rows it cannot certify take the exact path.
    depth = min(n, k + 1 + max(8, k // 2))
    cand, s32, worst32, broken = _faiss_candidates(X, norms, depth, distance)
    return _certify(X, norms, distance, k, np.arange(n), cand, s32, worst32, broken, ordered)


def checked_norms(X: np.ndarray, k: int, distance: str, label: str, norms: np.ndarray | None = None
                  ) -> np.ndarray:
    """The row norms of a layer about to be searched for ``k`` neighbours, after the checks every search makes
    (a known distance, 1 ≤ k ≤ n−1, no zero row under cosine), so that all backends refuse the same inputs."""
    _check_distance(distance)
    n = X.shape[0]
    if not 1 <= k <= n - 1:
        raise UsageError(f"k must be between 1 and n−1 = {n - 1} (got {k})")
    if norms is None:
        norms = row_norms(X)
    if distance == "cosine":
        check_nonzero_rows(norms, label, "cosine similarity")
    return norms


def knn_of_rows(X: np.ndarray, Xf: np.ndarray, rows: np.ndarray, k: int, distance: str, norms: np.ndarray,
                ordered: bool = True) -> np.ndarray:
    """The lists of ``rows`` only, certified as :func:`knn` certifies whole layers (``ordered`` as there).

    ``Xf`` is the layer's float32 copy (:func:`_float32_copy`), which the caller already holds: FAISS scores
    the rows against it in float32 (one matrix product of |rows|·n·d), and the float64 rescoring, or
    :func:`exact_knn` for a row it cannot certify, makes the result the exact list whatever the rounding.
    The rows of ``knn(X, k, ordered=ordered)`` are these lists: FAISS scores each (query, row) pair by the
    same product whichever other queries share its call (:func:`faiss_path`), so even the unordered lists'
    float32 order within the set of k is the same (tests compare the two, directly and on a cluster).
    """
    import faiss

    n = X.shape[0]
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return np.empty((0, k), dtype=np.int64)
    depth = min(n, k + 1 + max(8, k // 2))
    metric = faiss.METRIC_L2 if distance == "l2" else faiss.METRIC_INNER_PRODUCT
    with faiss_path(blas=True):  # one call; as the whole layer's (below), whatever the number of rows
        D, cand = faiss.knn(np.ascontiguousarray(Xf[rows]), Xf, depth, metric=metric)
    cand, s32, worst32, broken = _sorted_candidates(D, cand, rows, distance)
    return _certify(X, norms, distance, k, rows, cand, s32, worst32, broken, ordered)


def _certify(X: np.ndarray, norms: np.ndarray, distance: str, k: int, ids: np.ndarray, cand: np.ndarray,
             s32: np.ndarray, worst32: np.ndarray, broken: np.ndarray, ordered: bool) -> np.ndarray:
    """The exact lists of rows ``ids`` from FAISS's float32 candidates (row b of ``cand`` is row ids[b]'s):
    kept where the float32 order is certain, rescored in float64 where not, and searched exactly where even
    that cannot be certified."""
    d = X.shape[1]
    # Plus an absolute term for float32 underflow of tiny products (validation keeps max |x| near 1).
    eps = (_error_bound(norms, d, distance, _U32) + 4.0 * d * np.finfo(np.float32).tiny)[ids]
    out = cand[:, :k].copy()
    settled = _settled(s32, worst32, eps, k, ordered, X.shape[0]) & ~broken
    todo = np.flatnonzero(~settled)
    if ordered and todo.size and cand.shape[1] > k:
        todo = _rescore_ties(X, norms, distance, k, ids, todo, cand, s32, worst32, eps, broken, out)
    uncertain = _rescore(X, norms, distance, k, ids, todo, cand, worst32, eps, broken, out)
    if uncertain.size:
        out[uncertain] = exact_knn(X, k, distance, rows=ids[uncertain], norms=norms)
    return out


# FAISS 1.15 scores a call of q queries in d dimensions pair by pair with its own SIMD loop when q·d is below
# ``faiss.cvar.distance_compute_blas_threshold`` (128,000), else with BLAS products; the two round differently.
_FAISS_BLAS_WORK = 128_000
_SIMD_ONLY = 2**31 - 1


@contextlib.contextmanager
def faiss_path(blas: bool) -> Iterator[None]:
    """FAISS's brute force and flat index on one fixed code path inside: BLAS products when ``blas``, else its
    per-pair SIMD loop, however many queries a call has.

    FAISS picks the path from the number of queries in a call, so a (query, row) score, hence a list's
    float32 order, would depend on which other queries share the call: a shard of the query rows
    (:mod:`repalign.search.sharded`) would not get the whole layer's scores. On one path the score of a pair
    is the same in any call (the SIMD loop scores each pair alone; a BLAS product sums each entry over d in
    an order set by d, not by the number of queries, which the tests check). Certified lists would be the
    same anyway; float32 orders (an unordered set of k, approximate lists) would not.
    """
    import faiss

    before = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 0 if blas else _SIMD_ONLY
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = before


def blas_pays(queries: int, d: int) -> bool:
    """Whether FAISS would use BLAS for this many queries of d dimensions (its own threshold)."""
    return queries * d >= _FAISS_BLAS_WORK


# Rows per float32 block of the copy FAISS searches (each block normalised alone: rows do not interact).
F32_BLOCK = 1 << 14


def _normalised_in_float32(norms: np.ndarray) -> bool:
    """Whether rows are normalised in float32 (every row norm far from float32's limits), or in float64 first.

    Normalised in float32, each entry carries at most ~3 roundings instead of 1, which adds ≤ 6u to a score,
    far inside the 2(d+2)u bound the certification uses. A row near underflow is divided in float64, then
    rounded once. Decided from all rows, so that every block of one layer is made the same way.
    """
    return 2.0**-60 <= float(norms.min()) and float(norms.max()) <= 2.0**60


def float32_rows(block: np.ndarray, norms: np.ndarray | None, single: bool) -> np.ndarray:
    """What FAISS searches for these rows: float32, L2-normalised (by ``norms``, their float64 norms) for cosine."""
    if norms is None:
        return np.ascontiguousarray(block, dtype=np.float32)
    if single:
        return np.multiply(np.asarray(block, dtype=np.float32), (1.0 / norms).astype(np.float32)[:, None])
    return (np.asarray(block, dtype=np.float64) / norms[:, None]).astype(np.float32)


def float32_block(X: np.ndarray, norms: np.ndarray, distance: str, start: int, stop: int) -> np.ndarray:
    """Rows start..stop−1 of :func:`_float32_copy`, made the same way."""
    cosine = distance == "cosine"
    return float32_rows(X[start:stop], norms[start:stop] if cosine else None, cosine and _normalised_in_float32(norms))


def _float32_copy(X: np.ndarray, norms: np.ndarray, distance: str) -> np.ndarray:
    """What FAISS searches: X in float32, rows L2-normalised for cosine, made block by block (so a streamed
    layer is read a block at a time, and both paths make the same numbers)."""
    if distance != "cosine" and isinstance(X, np.ndarray):
        return np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    Xf = np.empty((n, d), dtype=np.float32)
    for s0 in range(0, n, F32_BLOCK):
        Xf[s0 : s0 + F32_BLOCK] = float32_block(X, norms, distance, s0, min(n, s0 + F32_BLOCK))
    return Xf


def _faiss_candidates(X: np.ndarray, norms: np.ndarray, depth: int, distance: str):
    """FAISS's float32 lists of ``depth`` candidates, self removed and sorted by float32 score.

    Returns (candidates, their float32 scores as float64, each row's worst score FAISS returned, rows FAISS
    could not fill). The float64 rescoring after this makes the result independent of float32 rounding, so
    a layer searched in database blocks (a streamed layer whose float32 copy is over its budget) gets the
    same final lists.
    """
    import faiss

    n, d = X.shape
    metric = faiss.METRIC_L2 if distance == "l2" else faiss.METRIC_INNER_PRODUCT
    budget = getattr(X, "budget", None)
    if budget is not None and n * d * 4 > budget:
        D, cand = _blocked_knn(X, norms, depth, distance, max(1024, budget // (2 * d * 4)))
    else:
        Xf = _float32_copy(X, norms, distance)
        with faiss_path(blas=True):
            D, cand = faiss.knn(Xf, Xf, depth, metric=metric)
        del Xf
    return _sorted_candidates(D, cand, np.arange(n), distance)


def _sorted_candidates(D: np.ndarray, cand: np.ndarray, ids: np.ndarray, distance: str):
    """FAISS's result for query rows ``ids`` as (candidates, float64 scores, worst score returned, broken
    rows), self removed by index and each row sorted by float32 score."""
    s32 = (-D if distance == "l2" else D).astype(np.float64)
    del D
    # FAISS marks a slot it could not fill (float32 overflow) with label −1; such rows take the exact path.
    broken = (cand < 0).any(axis=1) | ~np.isfinite(s32).all(axis=1)
    cand[cand < 0] = 0
    s32[~np.isfinite(s32)] = -np.inf
    worst32 = s32[:, -1].copy()  # every row FAISS left out scores at most this (in float32)
    s32[cand == ids[:, None]] = -np.inf  # self, by index
    order = np.argsort(-s32, axis=1, kind="stable")
    return np.take_along_axis(cand, order, axis=1), np.take_along_axis(s32, order, axis=1), worst32, broken


def _blocked_knn(X: np.ndarray, norms: np.ndarray, depth: int, distance: str, rows: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """faiss.knn(Xf, Xf, depth) with Xf held ``rows`` rows at a time: for each database block, every query
    block is searched and the running top lists merged (FAISS's D and labels, −1 where unfilled)."""
    import faiss

    n = X.shape[0]
    l2 = distance == "l2"
    metric = faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT
    worst = np.float32(np.inf if l2 else -np.inf)
    D = np.full((n, depth), worst, dtype=np.float32)
    labels = np.full((n, depth), -1, dtype=np.int64)
    for b0 in range(0, n, rows):
        base = float32_block(X, norms, distance, b0, min(n, b0 + rows))
        for q0 in range(0, n, rows):
            query = base if q0 == b0 else float32_block(X, norms, distance, q0, min(n, q0 + rows))
            got_d, got = faiss.knn(query, base, min(depth, base.shape[0]), metric=metric)
            got = np.where(got < 0, -1, got + b0)
            sl = slice(q0, q0 + query.shape[0])
            both_d = np.concatenate([D[sl], got_d], axis=1)
            both = np.concatenate([labels[sl], got], axis=1)
            key = np.where(both < 0, np.inf, both_d if l2 else -both_d)  # unfilled slots last
            order = np.lexsort((np.where(both < 0, n, both), key), axis=-1)[:, :depth]
            D[sl] = np.take_along_axis(both_d, order, axis=1)
            labels[sl] = np.take_along_axis(both, order, axis=1)
        del base
    return D, labels


def _settled(s32: np.ndarray, worst32: np.ndarray, eps: np.ndarray, k: int, ordered: bool, n: int) -> np.ndarray:
    """Rows whose float32 order (or set of k, when not ``ordered``) is certainly the exact one.

    The float32 order is the exact order when every step down the list to rank k+1, and the gap from rank k
    to anything not returned, exceeds twice the error bound: then no float64 score can swap two of them.
    Only the other rows (near-ties, exact ties, duplicates) are rescored in float64.
    """
    depth = s32.shape[1]
    top = min(k + 1, depth - 1)
    margin = 2 * eps[:, None]
    with np.errstate(invalid="ignore"):  # −inf − (−inf) in a broken row is NaN, which settles nothing
        if ordered:
            settled = np.all(s32[:, : top - 1] - s32[:, 1:top] > margin, axis=1)
        else:  # the set is settled when rank k is safely above rank k+1 (and, below, everything left out)
            settled = s32[:, k - 1] - s32[:, top - 1] > margin[:, 0] if top > k else np.ones(len(s32), dtype=bool)
        if depth < n:
            settled &= s32[:, k - 1] - worst32 > margin[:, 0]
    return settled


# Rows per block in _rescore_ties (its temporaries are about 40 bytes per candidate).
_TIE_ROWS = 1 << 15


def _rescore_ties(X: np.ndarray, norms: np.ndarray, distance: str, k: int, ids: np.ndarray, todo: np.ndarray,
                  cand: np.ndarray, s32: np.ndarray, worst32: np.ndarray, eps: np.ndarray, broken: np.ndarray,
                  out: np.ndarray) -> np.ndarray:
    """Order the ``todo`` positions' top k by rescoring only their near-tied candidates in float64; returns
    the positions this cannot settle (for :func:`_rescore`).

    Two float32 neighbours whose scores differ by more than twice the error bound are in the exact order, so
    a list splits into runs of near-ties separated by safe steps. Only the candidates in a run of two or more
    that reaches into the top k need their float64 scores (about 6 of 62 per row at n = 10,000, d = 768,
    depth 41), and sorting by (run, float64 score descending, index) then gives the order :func:`_rescore`
    gives from every candidate's float64 score. A row whose last needed run reaches the deepest candidate
    FAISS returned, or is not safely above the best score it left out, goes to :func:`_rescore`.
    """
    if todo.size > _TIE_ROWS:  # bounded temporaries (a few (rows, depth) arrays) whatever n is
        return np.concatenate([_rescore_ties(X, norms, distance, k, ids, todo[s0 : s0 + _TIE_ROWS], cand, s32,
                                             worst32, eps, broken, out) for s0 in range(0, todo.size, _TIE_ROWS)])
    n, depth = X.shape[0], cand.shape[1]
    margin = 2 * eps[todo]
    s = s32[todo]
    with np.errstate(invalid="ignore"):  # −inf − (−inf) is NaN: not a tie
        tie = s[:, :-1] - s[:, 1:] <= margin[:, None]
    run = np.concatenate([np.zeros((todo.size, 1), np.int64), np.cumsum(~tie, axis=1)], axis=1)
    # Positions in the runs that reach the top k: up to the end of the run holding position k − 1.
    last = (run <= run[:, k - 1 : k]).sum(axis=1) - 1
    end_score = np.take_along_axis(s, last[:, None], axis=1)[:, 0]
    easy = ~broken[todo] & (last < depth - 1)
    if depth < n:
        easy &= end_score - worst32[todo] > margin
    pos = np.arange(depth)
    tied = np.zeros(s.shape, dtype=bool)
    tied[:, 1:] |= tie
    tied[:, :-1] |= tie
    need = tied & (pos[None, :] <= last[:, None]) & easy[:, None]
    score = np.zeros(s.shape)
    c = cand[todo]
    # Rows grouped by how many positions they need (rounded up to a power of two), so that each row's query
    # vector is read once and the candidates are scored as _rescore scores them; the padding positions get
    # their true scores too, which cannot move them (each is alone in its run).
    count = need.sum(axis=1)
    first = np.argsort(~need, axis=1, kind="stable")  # each row's needed positions first
    width = 1
    while width < depth and (count > width // 2).any():
        rows = np.flatnonzero((count > width // 2) & (count <= width))
        block = _block_rows(width, X.shape[1])
        for s0 in range(0, rows.size, block):
            r = rows[s0 : s0 + block]
            p = first[r, :width]
            score[r[:, None], p] = _pair_scores(X, norms, ids[todo[r]], np.take_along_axis(c[r], p, axis=1),
                                                distance)
        width *= 2
    rows = np.flatnonzero(count > width // 2)
    for s0 in range(0, rows.size, _block_rows(depth, X.shape[1])):
        r = rows[s0 : s0 + _block_rows(depth, X.shape[1])]
        score[r] = _pair_scores(X, norms, ids[todo[r]], c[r], distance)
    order = np.lexsort((c, -score, run), axis=-1)[:, :k]
    done = np.flatnonzero(easy)
    out[todo[done]] = np.take_along_axis(c[done], order[done], axis=1)
    return todo[~easy]


def _rescore(X: np.ndarray, norms: np.ndarray, distance: str, k: int, ids: np.ndarray, todo: np.ndarray,
             cand: np.ndarray, worst32: np.ndarray, eps: np.ndarray, broken: np.ndarray, out: np.ndarray
             ) -> np.ndarray:
    """Rescore the candidates of positions ``todo`` (rows ``ids[todo]``) in float64 into ``out``; returns the
    positions that even then cannot be certified (a better row may hide among those FAISS left out)."""
    n = X.shape[0]
    depth = cand.shape[1]
    uncertain = []
    block = _block_rows(depth, X.shape[1])
    for s0 in range(0, todo.size, block):
        r = todo[s0 : s0 + block]
        c = cand[r]
        sc = _pair_scores(X, norms, ids[r], c, distance)
        sc[c == ids[r][:, None]] = -np.inf  # self, by index
        c_sorted, sc_sorted = _sort_lists(c, sc)
        out[r] = c_sorted[:, :k]
        if depth < n:
            # Any row FAISS left out has exact score ≤ worst32 + eps; the k-th kept must beat that.
            bad = (sc_sorted[:, k - 1] <= worst32[r] + eps[r]) | broken[r]
            if bad.any():
                uncertain.append(r[bad])
    return np.concatenate(uncertain) if uncertain else np.empty(0, dtype=np.int64)
