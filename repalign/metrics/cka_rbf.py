"""The cka-rbf metric: CKA with Gaussian (RBF) kernels and biased HSIC, built in row blocks, with its exact null."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from repalign import stats
from repalign.errors import InputError, UsageError
from repalign.linalg import dot
from repalign.metrics import condensed as _cd
from repalign.metrics.base import PairData, finish
from repalign.metrics.spec import MetricSpec, Param, Params, Work, number
from repalign.results import MetricResult

_RANGE = (0.0, 1.0)
_positive = number(0.0, lo_open=True)
# Largest off-diagonal kernel entry below which a kernel counts as the identity (a note says so).
_IDENTITY = 1e-12


def _sigma(text: str) -> float | str:
    """'median' or a positive number."""
    if text.strip().lower() == "median":
        return "median"
    try:
        return _positive(text)
    except ValueError as exc:
        raise ValueError(f"{exc}; give a positive number or 'median'") from None


def median_with_diagonal(c: np.ndarray, n: int) -> float:
    """Median of the n² entries of the symmetric matrix with zero diagonal whose condensed triangle is c ≥ 0.

    Notes
    -----
    Kornblith et al. (2019)'s ``gram_rbf`` takes ``np.median`` of the whole n×n squared-distance matrix, its
    n zeros included. Sorted, those n² entries are the n zeros followed by each condensed value twice, so the
    entry at sorted position q ≥ n is the ((q − n)//2)-th smallest condensed value: one ``np.partition`` of
    a copy of c, no n×n array.
    """
    m = n * n
    qs = [(m - 1) // 2] if m % 2 else [m // 2 - 1, m // 2]
    ks = sorted({(q - n) // 2 for q in qs if q >= n})
    part = np.partition(c, ks) if ks else c
    vals = [0.0 if q < n else float(part[(q - n) // 2]) for q in qs]
    return sum(vals) / len(vals)


def rbf_condensed(x: np.ndarray, sigma: float | str, factor: float = 1.0,
                  block: int | None = None) -> tuple[np.ndarray | None, float]:
    """Condensed RBF kernel exp(−‖x_i − x_j‖²/(2σ²)) over pairs i < j, and the σ used.

    Parameters
    ----------
    x : ndarray, shape (n, d)
    sigma : float or 'median'
        A fixed bandwidth, or σ = factor·sqrt(median of the n×n squared distances, zero diagonal included).
    factor : float
        θ, used with 'median' (Kornblith et al.'s ``threshold``).
    block : int, optional
        Rows per block.

    Returns
    -------
    (kernel, sigma) : ndarray of shape (n(n−1)/2,) or None, float
        None when the median rule gives σ = 0 (more than half the entries are duplicates' zero distances).
        The diagonal of the kernel is 1 and is not stored.
    """
    c = _cd.condensed(x, "sqeuclidean", block)
    s = factor * math.sqrt(median_with_diagonal(c, x.shape[0])) if sigma == "median" else float(sigma)
    if not s > 0:
        return None, s
    c *= -1.0 / (2.0 * s * s)
    np.exp(c, out=c)
    return c, s


@dataclass(frozen=True)
class KernelSums:
    """What biased HSIC needs of one kernel: condensed entries, row sums r = K1 and total S = 1ᵀK1."""

    n: int
    k: np.ndarray
    r: np.ndarray
    total: float

    @classmethod
    def of(cls, k: np.ndarray, n: int, block: int | None = None) -> KernelSums:
        r = 1.0 + _cd.off_diagonal_row_sums(k, n, block)  # the diagonal is exp(0) = 1
        return cls(n, k, r, float(np.sum(r)))

    def diag_centred(self) -> np.ndarray:
        """Diagonal of HKH: K_ii − 2r_i/n + S/n²."""
        return 1.0 - 2.0 * self.r / self.n + self.total / self.n**2


def hsic_trace(kx: KernelSums, ky: KernelSums, cross: float, rows: float) -> float:
    """tr(KHLH) = Σ_ij K_ij L_ij − (2/n) Σ_i (K1)_i (L1)_i + (1ᵀK1)(1ᵀL1)/n².

    ``cross`` is Σ_{i<j} K_ij L_ij over the condensed entries and ``rows`` is Σ_i (K1)_i (L1)_i.
    """
    n = kx.n
    return n + 2.0 * cross - 2.0 * rows / n + kx.total * ky.total / n**2


@dataclass
class _CentredSums:
    """The sums of two centred kernels that stats.biased_cka_null reads (see its Notes: its derivation uses
    only that Kc is symmetric with zero row sums, so it holds for RBF kernels as for linear ones)."""

    n: int
    sxx: float
    syy: float
    a: np.ndarray
    b: np.ndarray

    def unbiased_terms(self) -> tuple[float, float, float]:
        raise NotImplementedError("only the biased null is defined for RBF kernels here")


def cka_rbf_parts(kx: KernelSums, ky: KernelSums, block: int | None = None) -> tuple[float, float, float]:
    """(tr(KHLH), tr(KHKH), tr(LHLH)) from the two kernels' condensed entries, summed block by block."""
    n = kx.n
    kl = hsic_trace(kx, ky, _cd.blockwise_dot(kx.k, ky.k, n, block), dot(kx.r, ky.r))
    kk = hsic_trace(kx, kx, _cd.blockwise_dot(kx.k, kx.k, n, block), dot(kx.r, kx.r))
    ll = hsic_trace(ky, ky, _cd.blockwise_dot(ky.k, ky.k, n, block), dot(ky.r, ky.r))
    return kl, kk, ll


def cka_rbf(a: np.ndarray, b: np.ndarray, sigma: float | str = "median", factor: float = 1.0,
            block: int | None = None) -> float | None:
    """Biased-HSIC CKA with RBF kernels, each side with its own σ.

    Parameters
    ----------
    a : ndarray, shape (n, d1)
    b : ndarray, shape (n, d2)
    sigma, factor
        As :func:`rbf_condensed`.
    block : int, optional
        Rows per block (the value does not depend on it beyond float64 rounding).

    Returns
    -------
    float or None
        HSIC(K, L)/sqrt(HSIC(K, K)·HSIC(L, L)); None when a centred kernel is zero or σ is 0.

    Notes
    -----
    Kornblith et al. (2019), biased HSIC (Gretton et al. 2005); the (n−1)² normalisation cancels. Unlike
    platonic-rep's ``cka(kernel_metric='rbf')`` no 1e-6 is added to the denominator.
    """
    kx, ky, _, _ = _kernels(a, b, sigma, factor, block)
    if kx is None or ky is None:
        return None
    kl, kk, ll = cka_rbf_parts(kx, ky, block)
    return _ratio(kl, kk, ll)


def _kernels(a: np.ndarray, b: np.ndarray, sigma: float | str, factor: float,
             block: int | None) -> tuple[KernelSums | None, KernelSums | None, float, float]:
    n = a.shape[0]
    k1, s1 = rbf_condensed(a, sigma, factor, block)
    k2, s2 = rbf_condensed(b, sigma, factor, block)
    return (None if k1 is None else KernelSums.of(k1, n, block),
            None if k2 is None else KernelSums.of(k2, n, block), s1, s2)


def _ratio(kl: float, kk: float, ll: float) -> float | None:
    if not (kk > 0 and ll > 0):
        return None
    return min(max(kl / math.sqrt(kk * ll), _RANGE[0]), _RANGE[1])


def exact_null(kx: KernelSums, ky: KernelSums, kk: float, ll: float) -> tuple[float | None, float | None]:
    """Exact mean and SD of the value under random pairing of the rows (fixed kernels).

    Notes
    -----
    Only tr(Kc Lc^π) varies, Kc = HKH symmetric with zero row sums, so the RV moments of
    :func:`repalign.stats.biased_cka_null` apply with tr Kc = n − S/n, tr Kc² = tr(KHKH) and the diagonal
    of Kc: mean = tr Kc · tr Lc / ((n−1)·sqrt(tr Kc² · tr Lc²)). Verified against all permutations in the
    tests.
    """
    if not (kk > 0 and ll > 0):
        return None, None
    sums = _CentredSums(kx.n, kk, ll, kx.diag_centred(), ky.diag_centred())
    if kx.n >= 4:
        return stats.biased_cka_null(sums)
    tx, ty = float(np.sum(sums.a)), float(np.sum(sums.b))
    return tx * ty / ((kx.n - 1) * math.sqrt(kk * ll)), None


def cka_rbf_result(p: PairData, params: Params) -> MetricResult:
    """RBF CKA of the pair with its exact chance level and null SD."""
    sigma, factor = params["sigma"], params["factor"]
    p.progress(f"cka-rbf: RBF kernels over {_cd.pairs(p.n)} item pairs")
    kx, ky, s1, s2 = _kernels(p.a, p.b, sigma, factor, None)
    # finish hands these (not params) to the permutation null, so they include sigma and factor as given.
    shown = {"kernel": "rbf", "estimator": "biased", "sigma": sigma,
             "sigma_rule": "median squared distance, zero diagonal included" if sigma == "median" else "fixed",
             "factor": factor, "sigma_a": s1, "sigma_b": s2}
    if kx is None or ky is None:
        side = p.labels[0] if kx is None else p.labels[1]
        return finish(p, SPEC, params, None, shown=shown,
                      reason=f"{side}: the median squared distance is 0 (most rows are duplicates), so σ = 0")
    for ks, label, s in ((kx, p.labels[0], s1), (ky, p.labels[1], s2)):
        if ks.k.size and float(ks.k.max()) < _IDENTITY:
            p.notes.append(f"cka-rbf: σ = {s:g} is so small against {label}'s distances that its kernel is "
                           "numerically the identity (every item unlike every other); the value then says little")
    kl, kk, ll = cka_rbf_parts(kx, ky)
    value = _ratio(kl, kk, ll)
    if value is None:
        side = p.labels[0] if not kk > 0 else p.labels[1]
        return finish(p, SPEC, params, None, shown=shown,
                      reason=f"{side}: the centred kernel is zero (all rows identical); CKA is undefined")
    mean, sd = exact_null(kx, ky, kk, ll)
    del kx, ky  # finish may run the permutation null, which builds the kernels again: not twice in memory
    return finish(p, SPEC, params, value, chance=mean, null_sd=sd, shown=shown)


def _permutation_null(p: PairData, params: Params, perms: list[np.ndarray]) -> np.ndarray:
    """Kernels built once; per permutation one gather of L's condensed entries (O(n²)) and r_L[π]."""
    kx, ky, _, _ = _kernels(p.a, p.b, params["sigma"], params["factor"], None)
    if kx is None or ky is None:
        return np.full(len(perms), np.nan)
    _, kk, ll = cka_rbf_parts(kx, ky)
    if not (kk > 0 and ll > 0):
        return np.full(len(perms), np.nan)
    cross = _cd.permuted_dots(kx.k, ky.k, p.n, perms)
    out = np.empty(len(perms), dtype=np.float64)
    for t, perm in enumerate(perms):
        kl = hsic_trace(kx, ky, float(cross[t]), dot(kx.r, ky.r[perm]))
        out[t] = min(max(kl / math.sqrt(kk * ll), _RANGE[0]), _RANGE[1])
    return out


def _memory(n: int, d1: int, d2: int, params: Params) -> int:
    # Two condensed kernels of N = n(n−1)/2 float64, plus the partition copy for a median σ.
    per = 8 * _cd.pairs(n)
    vectors = (3 if params.get("sigma", "median") == "median" else 2) * per
    # float64 centred copies of the inputs and one block's temporaries.
    return vectors + 8 * n * (d1 + d2) + _cd.block_bytes(n)


def _check(params: Params, n: int, d1: int, d2: int, k: int, labels: tuple[str, str]) -> None:
    if params.get("sigma", "median") != "median" and params.get("factor", 1.0) != 1.0:
        raise UsageError("cka-rbf: factor applies to sigma=median only; with a fixed sigma give sigma alone")
    if n < 2:
        raise InputError(f"{labels[0]} and {labels[1]} hold {n} items, but cka-rbf needs at least 2")


SPEC = MetricSpec(
    "cka-rbf", "RBF CKA", _RANGE,
    "centred kernel alignment with Gaussian kernels, biased HSIC (Kornblith et al. 2019); σ per side from "
    "the median squared distance with the zero diagonal included (their convention), or fixed", cka_rbf_result,
    params=(Param("sigma", "median", _sigma,
                  "RBF bandwidth: 'median' (σ = factor·sqrt(median squared distance), per side) or a fixed "
                  "positive number"),
            Param("factor", 1.0, _positive,
                  "θ in σ = θ·sqrt(median squared distance), with sigma=median (Kornblith et al.'s threshold, "
                  "default 1)")),
    work=Work(arrays=True),
    chance="exact: permutation mean and SD in closed form (the RV moments of the centred kernels)",
    permutation_null=_permutation_null, memory=_memory, check=_check)
