"""Exact permutation-null mean and standard deviation of mutual k-NN and linear CKA.

The null is the one of docs/formulas.md §6: the rows of Y are paired with the rows
of X by a uniformly random permutation π (all n! equally likely). Every
statistic here is, up to constants that π leaves unchanged, a quadratic
assignment (QAP / Mantel) statistic

    T(π) = Σ_{i,j} A_ij B_{π(i)π(j)},

so its first two moments follow from counts on A and B alone: no permutation
is enumerated and, for large n, no n×n matrix is formed (neighbour lists for
k-NN, feature-space sums from :class:`~repalign.metrics.cka.CrossStats` for CKA).

Derivation used throughout (Mantel 1967; Hubert & Schultz 1976; Hubert 1987,
*Assignment Methods in Combinatorial Data Analysis*): expand

    E[T²] = Σ_{i,j,l,m} A_ij A_lm E[B_{π(i)π(j)} B_{π(l)π(m)}]

and group the index quadruples (i, j, l, m) by their coincidence pattern P,
a set partition of the four positions into r(P) blocks. For a fixed P the
image (π(i), π(j), π(l), π(m)) is uniform over the tuples with the same
pattern, of which there are n(n−1)…(n−r+1) = (n)_r, so

    E[T²] = Σ_P α_P(A) α_P(B) / (n)_{r(P)},
    α_P(M) = Σ over quadruples with pattern exactly P of M_ij M_lm.

There are 15 patterns; zero diagonals and zero row sums make most α_P vanish
or collapse into a few scalar sums, worked out per statistic below.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Protocol

import numpy as np

from repalign.linalg import dot


class CkaSums(Protocol):
    """The feature-space sums linear CKA is built from; :class:`repalign.metrics.cka.CrossStats` is one.

    A protocol, so that these statistics need no import of the metric that defines the sums.
    """

    n: int
    sxx: float
    syy: float
    a: np.ndarray
    b: np.ndarray

    def unbiased_terms(self) -> tuple[float, float, float]:
        """(S_XY, S_XX, S_YY) of unbiased linear CKA."""
        ...


def _falling(n: int, r: int) -> int:
    """(n)_r = n(n−1)…(n−r+1), the number of r-tuples of distinct items."""
    out = 1
    for s in range(r):
        out *= n - s
    return out


def _check_knn(knn: np.ndarray, name: str) -> tuple[int, int]:
    """Validate one neighbour list as a directed graph with out-degree k and no self-loops."""
    knn = np.asarray(knn)
    if knn.ndim != 2 or not np.issubdtype(knn.dtype, np.integer):
        raise ValueError(f"{name} must be a 2-D integer array of neighbour indices")
    n, k = knn.shape
    if n < 2 or not 1 <= k <= n - 1:
        raise ValueError(f"{name} has shape {knn.shape}; need n ≥ 2 and 1 ≤ k ≤ n−1")
    if knn.min() < 0 or knn.max() >= n:
        raise ValueError(f"{name} has indices outside [0, {n})")
    # The coincidence-pattern counts assume a 0/1 matrix with a zero diagonal:
    # a self-loop or a repeated neighbour would silently break them.
    if np.any(knn == np.arange(n)[:, None]):
        raise ValueError(f"{name} lists an item as its own neighbour")
    srt = np.sort(knn, axis=1)
    if np.any(srt[:, 1:] == srt[:, :-1]):
        raise ValueError(f"{name} lists the same neighbour twice in a row")
    return n, k


def _graph_counts(knn: np.ndarray) -> dict[str, int]:
    """α_P of the adjacency matrix a (a_ij = 1 iff j ∈ N(i)) for every pattern that can be non-zero.

    Parameters
    ----------
    knn : (n, k) int array, already validated.

    Returns
    -------
    dict of exact Python ints, keyed by pattern (ordered pairs (i,j), (l,m)):
    ``same`` (i=l, j=m), ``reversed`` (i=m, j=l), ``out_out`` (only i=l),
    ``in_in`` (only j=m), ``out_in`` (only i=m; equal to only j=l) and
    ``distinct`` (all four different). Patterns with i=j or l=m are zero
    because a has a zero diagonal.

    Notes
    -----
    O(n·k log(n·k)) time and O(n·k) memory. Python ints keep the counts exact
    (n²k² overflows int64 near n·k ≈ 3·10⁹).
    """
    n, k = knn.shape
    total = n * k  # S = Σ a_ij; a is 0/1 so Σ a_ij² = S too
    indeg = np.bincount(knn.ravel(), minlength=n).astype(np.int64)
    outdeg = np.full(n, k, dtype=np.int64)
    # Ordered mutual pairs Σ a_ij a_ji: edge (i, j) is mutual iff the code of
    # its reverse, j·n + i, is itself an edge code. Intersecting the two code
    # sets (each duplicate-free, as rows hold distinct neighbours) is one
    # sort of 2·n·k integers and needs no n×n structure.
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = knn.ravel().astype(np.int64)
    mutual = int(np.intersect1d(rows * n + cols, cols * n + rows, assume_unique=True).size)
    out_in = int(outdeg @ indeg) - mutual  # i=m: a_ij a_li with j ≠ l; j = l would be a mutual pair
    c = {
        "same": total,
        "reversed": mutual,
        "out_out": int(outdeg @ (outdeg - 1)),  # i=l: two different out-edges of i
        "in_in": int(indeg @ (indeg - 1)),      # j=m: two different in-edges of j
        "out_in": out_in,
    }
    # Σ over all ordered pairs of edges is S²; what is left after the patterns
    # with a coincidence is the all-distinct pattern (i=m and j=l counted once each).
    c["distinct"] = total * total - (c["same"] + c["reversed"] + c["out_out"] + c["in_in"] + 2 * out_in)
    return c


def mknn_null(knn_a: np.ndarray, knn_b: np.ndarray) -> tuple[float, float]:
    """Exact mean and standard deviation of mutual k-NN when Y's rows are randomly permuted.

    Parameters
    ----------
    knn_a, knn_b : (n, k) int arrays
        Neighbour lists of the two spaces (row i = the k nearest j ≠ i,
        self excluded, distinct entries), same n and k. Minimum n is 2
        (with 1 ≤ k ≤ n−1).

    Returns
    -------
    (mean, sd) : tuple of float
        ``mean`` equals k/(n−1) exactly; ``sd`` ≥ 0 (0 when every pairing
        gives the same score, e.g. k = n−1).

    Raises
    ------
    ValueError
        If the lists differ in shape, n < 2, k is outside [1, n−1], or a list
        has an out-of-range index, a self-loop or a repeated neighbour.

    Notes
    -----
    mknn·n·k = T = Σ_{i≠j} a_ij b_{π(i)π(j)}, a QAP statistic for two 0/1
    matrices with zero diagonals (module docstring). With S = n·k edges,
    M = Σ a_ij a_ji (ordered mutual pairs) and in-degrees d_j:

    - E[T] = S_A S_B / (n)_2, hence E[mknn] = k/(n−1);
    - E[T²] = [S_A S_B + M_A M_B]/(n)_2
      + [O_A O_B + I_A I_B + 2 C_A C_B]/(n)_3 + D_A D_B/(n)_4, with
      O = Σ_i k(k−1) (two out-edges of one node), I = Σ_j d_j(d_j−1) (two
      in-edges of one node), C = k·Σ_j d_j − M (a path l→i→j with l ≠ j),
      D = S² − S − M − O − I − 2C (two edges on four distinct nodes).

    Terms with (n)_r = 0 have α = 0 and are skipped. The variance is
    evaluated in exact rational arithmetic: E[T²] and E[T]² are close when
    k is large, and the counts are integers. Cost O(n·k log(n·k)).
    Checked against all n! permutations for n ≤ 8 in tests/test_nulls.py.
    """
    knn_a, knn_b = np.asarray(knn_a), np.asarray(knn_b)
    n, k = _check_knn(knn_a, "knn_a")
    if knn_b.shape != knn_a.shape:
        raise ValueError(f"knn_a has shape {knn_a.shape} but knn_b has shape {knn_b.shape}")
    _check_knn(knn_b, "knn_b")
    return mknn_null_from_counts(_graph_counts(knn_a), _graph_counts(knn_b), n, k)


def graph_counts(knn: np.ndarray) -> dict[str, int]:
    """The pattern counts of one k-NN graph (validated), so that a sweep computes them once per layer."""
    knn = np.asarray(knn)
    _check_knn(knn, "knn")
    return _graph_counts(knn)


def mknn_null_from_counts(ca: dict[str, int], cb: dict[str, int], n: int, k: int) -> tuple[float, float]:
    """:func:`mknn_null` from the :func:`graph_counts` of both sides (same n and k)."""
    by_blocks = {
        2: ("same", "reversed"),
        3: ("out_out", "in_in", "out_in", "out_in"),  # out_in twice: patterns i=m and j=l
        4: ("distinct",),
    }
    second = Fraction(0)
    for r, keys in by_blocks.items():
        if _falling(n, r) == 0:  # fewer than r items: no such quadruple exists, α = 0
            continue
        second += Fraction(sum(ca[key] * cb[key] for key in keys), _falling(n, r))
    first = Fraction(ca["same"] * cb["same"], n * (n - 1))
    scale = n * k
    mean = first / scale
    var = (second - first * first) / (scale * scale)
    return float(mean), math.sqrt(float(var))


def z_score(value: float | None, mean: float | None, sd: float | None) -> float | None:
    """(value − mean)/sd, or None when any input is None or sd is 0 (no spread, z undefined)."""
    if value is None or mean is None or sd is None or not sd > 0:
        return None
    return float((value - mean) / sd)


# The z-score is the same for every metric; the brief's name for the k-NN use.
mknn_z = z_score


def _check_cka_n(st: CkaSums) -> None:
    if st.n < 4:
        raise ValueError(f"the permutation null of linear CKA needs n ≥ 4 items, got {st.n}")


def biased_cka_null(st: CkaSums) -> tuple[float | None, float | None]:
    """Exact mean and sd of biased linear CKA (the RV coefficient) under random row pairing.

    Parameters
    ----------
    st : CkaSums
        From :func:`repalign.metrics.cka.cross_stats` (n items; ``a``, ``b``
        of shape (n,)). Minimum n is 4.

    Returns
    -------
    (mean, sd) : tuple of float, or (None, None)
        None when a side has zero variance (sxx or syy not > 0), where CKA
        itself is undefined.

    Raises
    ------
    ValueError
        If n < 4 (the closed form divides by n−3).

    Notes
    -----
    Only the numerator T = tr(Kc Lc^π) = Σ_ij (Kc)_ij (Lc)_{π(i)π(j)} varies;
    Kc = XcXcᵀ is symmetric with zero row sums but a non-zero diagonal. With
    t = tr Kc = Σ a_i, s = tr Kc² = sxx and d = Σ (Kc)_ii² = Σ a_i², the 15
    coincidence patterns give (module docstring) α = d (all equal); t² − d
    (i=j ≠ l=m); s − d twice (i=l, j=m and i=m, j=l); −d four times (three
    equal); 2d − t² twice (only i=j or only l=m); 2d − s four times (one
    cross coincidence); t² + 2s − 6d (all distinct; from Σ over all = (1ᵀKc1)² = 0).
    Summing α_X α_Y/(n)_r and subtracting E[T]² = (t_X t_Y/(n−1))² gives,
    with β = t²/s,

        E[RV]   = √(β_X β_Y)/(n−1),
        Var[RV] = 2(n−1−β_X)(n−1−β_Y) / ((n+1)(n−1)²(n−2))
                  + Q_X Q_Y / (n(n+1)(n−1)(n−2)(n−3)),
        Q       = n(n+1)·d/s − (n−1)(β+2).

    This agrees symbolically with Kazi-Aoual, Hitier, Sabatier & Lebreton
    (1995) as quoted by Josse, Pagès & Husson (2008), written so that no
    factor (n−1−β) appears in a denominator (it is 0 for Kc ∝ H). n−1−β ≥ 0
    by Cauchy–Schwarz on the ≤ n−1 non-zero eigenvalues of Kc. Verified
    against all n! permutations for n ≤ 8 in tests/test_nulls.py.
    """
    _check_cka_n(st)
    if not (st.sxx > 0 and st.syy > 0):
        return None, None
    n = st.n
    a, b = np.asarray(st.a, dtype=np.float64), np.asarray(st.b, dtype=np.float64)
    beta_x = float(a.sum()) ** 2 / st.sxx
    beta_y = float(b.sum()) ** 2 / st.syy
    mean = math.sqrt(beta_x * beta_y) / (n - 1)
    # Rounding can push n−1−β a hair below its true bound 0 (isotropic, d ≫ n).
    p_x, p_y = max(n - 1 - beta_x, 0.0), max(n - 1 - beta_y, 0.0)
    q_x = n * (n + 1) * dot(a, a) / st.sxx - (n - 1) * (beta_x + 2)
    q_y = n * (n + 1) * dot(b, b) / st.syy - (n - 1) * (beta_y + 2)
    var = (2 * p_x * p_y / ((n + 1) * (n - 1) ** 2 * (n - 2))
           + q_x * q_y / (n * (n + 1) * (n - 1) * (n - 2) * (n - 3)))
    return float(mean), math.sqrt(max(var, 0.0))


def unbiased_cka_null(st: CkaSums) -> tuple[float | None, float | None]:
    """Exact mean (0) and sd of unbiased linear CKA under random row pairing.

    Parameters
    ----------
    st : CkaSums
        From :func:`repalign.metrics.cka.cross_stats`. Minimum n is 4 (the
        unbiased HSIC estimator itself needs n ≥ 4).

    Returns
    -------
    (mean, sd) : tuple of float, or (None, None)
        mean = 0 and sd = √(2/(n(n−3))); None when a side has no estimated
        variance (unbiased S_XX or S_YY not > 0), where the score is undefined.

    Raises
    ------
    ValueError
        If n < 4.

    Notes
    -----
    With the U-centred kernels of Székely & Rizzo (2014), Â (symmetric, zero
    diagonal, zero row sums), n(n−3)·HSIC₁(K, L) = Σ_{i≠j} Â_ij B̂_ij, so the
    unbiased S_XX of :func:`~repalign.metrics.cka.unbiased_terms` is
    s_A = Σ_{i≠j} Â_ij² and the numerator under π is T = Σ_{i≠j} Â_ij B̂_{π(i)π(j)}.
    Coincidence patterns (module docstring): only i≠j, l≠m survive;
    α = s for (i=l, j=m) and for (i=m, j=l); α = Σ_i[(Σ_j Â_ij)² − Σ_j Â_ij²]
    = −s for each of the four single cross coincidences; α = 2s for all
    distinct (Σ over all is (1ᵀÂ1)² = 0). E[T] = 0 and

        E[T²] = s_A s_B [2/(n)_2 + 4/(n)_3 + 4/(n)_4] = 2 s_A s_B / (n(n−3)),

    so Var[CKA_u] = 2/(n(n−3)) whatever the data: the denominators s_A, s_B
    cancel exactly. 1/Var = n(n−3)/2 is the degrees-of-freedom scale of
    Székely & Rizzo's (2013) t-test for bias-corrected distance correlation,
    which is the same U-centred statistic with other kernels. Verified against all n! permutations for
    n ≤ 8 in tests/test_nulls.py.
    """
    _check_cka_n(st)
    _, s_xx, s_yy = st.unbiased_terms()
    if not (s_xx > 0 and s_yy > 0):
        return None, None
    n = st.n
    return 0.0, math.sqrt(2.0 / (n * (n - 3)))
