"""Pairwise dissimilarities of all n(n−1)/2 item pairs (condensed, row-major i < j), built in row blocks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from repalign.linalg import dot, matmul

# Entries of one row block (rows × columns to their right): 2^22 float64 = 32 MB per temporary, few enough
# blocks that Python overhead is nil at n = 10,000 and small enough that the temporaries stay a fraction of
# the condensed vectors.
BLOCK_ENTRIES = 1 << 22
# 8-byte temporaries of one block alive at once at most, with a margin (the null's pair indices ii, jj, three
# permuted index arrays and the gathered values; the Gram block and its extracted values when building).
BLOCK_TEMPS = 8


def pairs(n: int) -> int:
    """n(n−1)/2, the length of a condensed vector."""
    return n * (n - 1) // 2


def block_rows(n: int, block: int | None = None) -> int:
    """Rows per block: the given number, or as many as keep a block near :data:`BLOCK_ENTRIES` entries."""
    if block is not None:
        return max(1, int(block))
    return max(1, min(n, BLOCK_ENTRIES // max(n, 1)))


def block_bytes(n: int, block: int | None = None) -> int:
    """Bytes of one block's temporaries, for the metrics' memory estimates."""
    return BLOCK_TEMPS * 8 * block_rows(n, block) * n


def _blocks(n: int, block: int | None) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """(s, e, offset, mask): rows s..e−1, their first condensed position, and which entries of the
    (e−s)×(n−s) block lie strictly right of the diagonal (row-major, so ``rect[mask]`` is in condensed order)."""
    b = block_rows(n, block)
    for s in range(0, n, b):
        e = min(n, s + b)
        mask = np.arange(n - s)[None, :] > np.arange(e - s)[:, None]
        yield s, e, s * (2 * n - s - 1) // 2, mask


def condensed(x: np.ndarray, kind: str, block: int | None = None) -> np.ndarray:
    """Dissimilarities of all pairs i < j of the rows of x, in row-major condensed order (as scipy's pdist).

    Parameters
    ----------
    x : ndarray, shape (n, d)
        Rows are items; any float dtype (products are formed in float64).
    kind : {'cosine', 'l2', 'sqeuclidean'}
        1 − cosine similarity, Euclidean distance, or squared Euclidean distance.
    block : int, optional
        Rows per block (default: about :data:`BLOCK_ENTRIES` entries per block).

    Returns
    -------
    ndarray, shape (n(n−1)/2,)
        float64. Entry for (i, j), i < j, at i(2n−i−1)/2 + j−i−1.

    Notes
    -----
    Each block is the Gram product of rows s..e−1 with rows s..n−1, so only the upper triangle (plus the
    small diagonal blocks) is ever multiplied. Euclidean distances come from ‖x_i‖² + ‖x_j‖² − 2x_i·x_j on
    column-centred rows (distances are translation invariant; centring shrinks the cancellation), clamped at
    0. Rows of zeros have no cosine: the caller refuses them.
    """
    z = np.asarray(x, dtype=np.float64)
    n = z.shape[0]
    if kind == "cosine":
        z = z / np.sqrt(np.einsum("ij,ij->i", z, z))[:, None]
    else:
        z = z - z.mean(axis=0)
        sq = np.einsum("ij,ij->i", z, z)
    out = np.empty(pairs(n), dtype=np.float64)
    for s, e, off, mask in _blocks(n, block):
        g = matmul(z[s:e], z[s:].T)
        if kind == "cosine":
            np.subtract(1.0, g, out=g)
        else:
            g *= -2.0
            g += sq[s:e, None]
            g += sq[None, s:]
            np.maximum(g, 0.0, out=g)
            if kind == "l2":
                np.sqrt(g, out=g)
        vals = g[mask]
        out[off : off + vals.size] = vals
    return out


def off_diagonal_row_sums(c: np.ndarray, n: int, block: int | None = None) -> np.ndarray:
    """Σ_{j≠i} M_ij for each row i of the symmetric matrix M whose condensed upper triangle is c."""
    r = np.zeros(n, dtype=np.float64)
    for s, e, off, mask in _blocks(n, block):
        rect = np.zeros(mask.shape, dtype=np.float64)
        rect[mask] = c[off : off + int(mask.sum())]
        r[s:e] += rect.sum(axis=1)  # pairs (i, j > i)
        r[s:] += rect.sum(axis=0)   # the same pairs seen from j
    return r


# Entries per bucket aimed at by sort_order (a bucket's argsort then runs in cache) and the largest share of
# all entries one bucket may hold before a plain argsort is used instead (a skewed distribution).
_BUCKET = 1 << 12
_MAX_SHARE = 0.25
_CHUNK = 1 << 20


def sort_order(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, c[order]) with c[order] ascending; the order within ties is arbitrary.

    Notes
    -----
    numpy's argsort of a float64 vector compares through the index array, which misses the cache at every
    step once the vector is large (about 6 s for 5·10⁷ entries here). Buckets of equal value width are
    monotone in the value, so a stable counting sort on the bucket number (numpy's radix sort for int16),
    then an argsort inside each cache-sized bucket, gives a sorted order in about two thirds of the time.
    """
    size = c.size
    nb = int(min(size // _BUCKET, np.iinfo(np.int16).max))
    lo, hi = (float(c.min()), float(c.max())) if size else (0.0, 0.0)
    if nb < 8 or not hi > lo:
        order = np.argsort(c)
        return order, c[order]
    ids = np.empty(size, dtype=np.int16)
    scale = nb / (hi - lo)
    for a in range(0, size, _CHUNK):  # in chunks, so that the float temporaries stay in cache
        t = c[a : a + _CHUNK] - lo
        t *= scale
        np.minimum(t, nb - 1, out=t)
        ids[a : a + _CHUNK] = t  # truncation of values ≥ 0: a floor, monotone in c
    counts = np.bincount(ids, minlength=nb)
    if counts.max() > _MAX_SHARE * size:
        del ids
        order = np.argsort(c)
        return order, c[order]
    order = np.argsort(ids, kind="stable")
    del ids
    vals = c[order]
    stop = np.cumsum(counts)
    for a, b in zip((stop - counts)[counts > 1].tolist(), stop[counts > 1].tolist()):
        o = np.argsort(vals[a:b])
        order[a:b] = order[a:b][o]
        vals[a:b] = vals[a:b][o]
    return order, vals


def centred_average_ranks(c: np.ndarray) -> np.ndarray:
    """Average ranks of c minus their mean (N+1)/2, written over c (returned); ties share their mean rank.

    Parameters
    ----------
    c : ndarray, shape (N,), float64
        Overwritten with the result, so that ranking needs no second vector of this size kept.

    Notes
    -----
    Ranks as ``scipy.stats.rankdata(method='average')``; the centred ranks are exact multiples of 1/2.
    """
    size = c.size
    order, s = sort_order(c)
    new = np.empty(size, dtype=bool)  # new[p]: sorted position p starts a new value
    new[:1] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    del s
    ties = size - int(np.count_nonzero(new))
    if ties > size // 8:  # many ties: rank group by group
        starts = np.flatnonzero(new)
        del new
        counts = np.diff(starts, append=size)
        # centred mean rank of a group at sorted positions start..start+count−1: start + (count+1)/2 − (N+1)/2
        avg = starts + 0.5 * (counts - size)
        del starts
        c[order] = np.repeat(avg, counts)
        return c
    rank = np.arange(size, dtype=np.float64)
    rank -= (size - 1) / 2
    if ties:
        _average_ties(rank, new)
    del new
    c[order] = rank
    return c


def _average_ties(rank: np.ndarray, new: np.ndarray) -> None:
    """Give each run of equal sorted values (new[p] False inside it) the mean of its positions' ranks."""
    size = new.size
    first = np.flatnonzero(new[:-1] & ~new[1:])
    last = ~new[1:]  # last[q]: position q+1 continues a run …
    last[:-1] &= new[2:]  # … and ends it
    stop = np.flatnonzero(last) + 2  # exclusive end of each run
    lens = stop - first
    means = (first + stop - 1) / 2 - (size - 1) / 2
    pos = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens - first, lens)
    rank[pos] = np.repeat(means, lens)


RANK_BYTES_PER_ENTRY = 40
"""Peak bytes per entry while ranking: the vector and its sort order, with (sort_order) the bucket numbers,
the radix sort's buffer or the sorted values, then at worst, with many ties, the tie groups' counts, mean
ranks and their repetition."""


def permuted_dots(u: np.ndarray, v: np.ndarray, n: int, perms: list[np.ndarray],
                  block: int | None = None) -> np.ndarray:
    """Σ_{i<j} u_(i,j) · v_(π(i),π(j)) for each permutation π, with u, v condensed over the same n items.

    Row i of the permuted second side is row π(i), so its pair (i, j) is the original pair (π(i), π(j)),
    read from v at its condensed position (smaller index first). O(n²) per permutation; each block's pair
    indices are built once for all permutations.
    """
    perms = [np.asarray(p, dtype=np.int64) for p in perms]  # i(2n−i) overflows int32 beyond n ≈ 33,000
    out = np.zeros(len(perms), dtype=np.float64)
    for s, e, off, mask in _blocks(n, block):
        ii, jj = np.nonzero(mask)
        ii += s
        jj += s
        seg = u[off : off + ii.size]
        for t, perm in enumerate(perms):
            # in place, so that a block holds ii, jj, three index arrays and the gathered values at most
            pi, pj = perm[ii], perm[jj]
            lo = np.minimum(pi, pj)
            hi = np.maximum(pi, pj, out=pj)
            hi -= lo
            hi -= 1
            idx = np.subtract(2 * n - 1, lo, out=pi)
            idx *= lo
            idx //= 2
            idx += hi  # lo(2n−lo−1)/2 + hi−lo−1
            out[t] += dot(seg, v[idx])
    return out


def blockwise_dot(u: np.ndarray, v: np.ndarray, n: int, block: int | None = None) -> float:
    """Σ u·v over the condensed vectors, summed block by block in a fixed order (float64)."""
    total = 0.0
    for _, _, off, mask in _blocks(n, block):
        m = int(mask.sum())
        total += dot(u[off : off + m], v[off : off + m])
    return total
