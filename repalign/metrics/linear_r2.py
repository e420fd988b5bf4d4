"""The linear-r2 metric: R² of a ridge regression from one input to the other, out of sample by default."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from repalign.errors import InputError
from repalign.linalg import matmul
from repalign.metrics import subspace as _sub
from repalign.metrics.base import PairData, finish
from repalign.metrics.spec import MetricSpec, Param, Params, Work, integer, number, one_of
from repalign.results import MetricResult

_SPLIT = "shuffled k-fold (folds drawn from the pair stream's child 0), R² pooled over the held-out rows"


def fold_rows(n: int, folds: int, seed: np.random.SeedSequence) -> list[np.ndarray] | None:
    """The test rows of each fold (a seeded shuffle cut into nearly equal parts), or None for in-sample."""
    if folds == 0:
        return None
    # A fixed child of the pair stream: the stream's own state also picks --max-rows's rows.
    child = np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key) + (0,))
    order = np.random.default_rng(child).permutation(n)
    return [np.sort(part) for part in np.array_split(order, folds)]


@dataclass(frozen=True)
class Parts:
    """Per-part sums of a centred input: XfᵀXf and the column sums of each part (one part when in-sample)."""

    grams: list[np.ndarray]
    sums: list[np.ndarray]

    @property
    def gram(self) -> np.ndarray:
        return sum(self.grams[1:], self.grams[0].copy())

    @property
    def sum(self) -> np.ndarray:
        return sum(self.sums[1:], self.sums[0].copy())


def parts(Xc: np.ndarray, rows: list[np.ndarray], grams: bool = True) -> Parts:
    """The sums of each part of Xc; without ``grams`` only the column sums (all a regression target needs)."""
    return Parts([_sub.gram(Xc[r]) for r in rows] if grams else [], [Xc[r].sum(axis=0) for r in rows])


def crosses(Xc: np.ndarray, Yc: np.ndarray, rows: list[np.ndarray]) -> list[np.ndarray]:
    """XfᵀYf for each part."""
    return [matmul(Xc[r].T, Yc[r]) for r in rows]


def residual_ss(Xc: np.ndarray, Yc: np.ndarray, px: Parts, py: Parts, cross: list[np.ndarray],
                rows: list[np.ndarray], in_sample: bool, alpha: float) -> np.ndarray:
    """Per target column, the sum of squared residuals of ridge regressions of Yc on Xc.

    Parameters
    ----------
    Xc, Yc : (n, d1), (n, d2) float64, column-centred (the intercept is fitted all the same).
    px, py, cross : the parts' sums (:func:`parts`, :func:`crosses`) over ``rows``.
    rows : the test rows of each fold; in-sample, one part holding every row.
    in_sample : fit on all rows and predict them (PU); else fit on the other folds, predict the fold.
    alpha : ridge penalty on the slopes (not the intercept).

    Returns
    -------
    (d2,) Σ_i (y_ij − ŷ_ij)² over every predicted row.

    Notes
    -----
    Each fit solves the d1×d1 normal equations (XᵀX + αI)B = XᵀY of the training rows centred with their
    own means, whose sums are the totals minus the fold's: no n×n matrix and no refit over the rows.
    """
    n, d1 = Xc.shape
    gx, sx, sy, c = px.gram, px.sum, py.sum, sum(cross[1:], cross[0].copy())
    ridge = alpha * np.eye(d1)
    out = np.zeros(Yc.shape[1])
    for f, r in enumerate(rows):
        m = n if in_sample else n - r.size
        mx = (sx if in_sample else sx - px.sums[f]) / m
        my = (sy if in_sample else sy - py.sums[f]) / m
        sxx = (gx if in_sample else gx - px.grams[f]) - m * np.outer(mx, mx)
        sxy = (c if in_sample else c - cross[f]) - m * np.outer(mx, my)
        beta = np.linalg.solve(sxx + ridge, sxy)
        resid = Yc[r] - my - matmul(Xc[r] - mx, beta)
        out += np.einsum("ij,ij->j", resid, resid)
    return out


def r2(ss_res: np.ndarray, ss_tot: np.ndarray, constant: np.ndarray) -> float:
    """R² averaged uniformly over the target's columns, sklearn's ``r2_score`` (multioutput='uniform_average').

    A constant target column scores 1: its intercept predicts it exactly, and sklearn scores a column with
    zero residual and zero variance 1 (with float rounding sklearn itself may leave a tiny residual and 0).
    """
    scores = np.ones(ss_tot.shape)
    ok = ~constant
    scores[ok] = 1.0 - ss_res[ok] / ss_tot[ok]
    return float(scores.mean())


@dataclass(frozen=True)
class _Pair:
    """The work both directions and the permutation null share."""

    a: np.ndarray
    b: np.ndarray
    pa: Parts
    pb: Parts
    rows: list[np.ndarray]
    in_sample: bool
    ss_a: np.ndarray
    ss_b: np.ndarray
    const_a: np.ndarray
    const_b: np.ndarray


def _prepare(p: PairData, params: Params) -> _Pair:
    p.progress("linear-r2: ridge regressions")
    a, b = _sub.centred(p.a), _sub.centred(p.b)
    split = fold_rows(p.n, params["folds"], p.streams.pair)
    rows = split if split is not None else [np.arange(p.n)]
    return _Pair(a, b, parts(a, rows), parts(b, rows), rows, split is None,
                 np.einsum("ij,ij->j", a, a), np.einsum("ij,ij->j", b, b),
                 np.ptp(p.a, axis=0) == 0, np.ptp(p.b, axis=0) == 0)


def _values(w: _Pair, b: np.ndarray, pb: Parts, direction: str, alpha: float) -> dict[str, float]:
    """R² a→b ('ab') and b→a ('ba') as the direction asks, with b (and its parts) possibly permuted."""
    cross = crosses(w.a, b, w.rows)
    out = {}
    if direction in ("ab", "both"):
        out["ab"] = r2(residual_ss(w.a, b, w.pa, pb, cross, w.rows, w.in_sample, alpha), w.ss_b, w.const_b)
    if direction in ("ba", "both"):
        back = [c.T for c in cross]
        out["ba"] = r2(residual_ss(b, w.a, pb, w.pa, back, w.rows, w.in_sample, alpha), w.ss_a, w.const_a)
    return out


def _value(values: dict[str, float]) -> float:
    return float(np.mean(list(values.values())))


def linear_r2_result(p: PairData, params: Params) -> MetricResult:
    """Ridge R² of the pair in the chosen direction (both: the mean of a→b and b→a)."""
    direction, alpha, folds = params["direction"], params["alpha"], params["folds"]
    shown: dict = {"alpha": alpha, "folds": folds, "direction": direction, "intercept": True,
                   "split": "in-sample (fit and scored on all rows)" if folds == 0 else _SPLIT,
                   "average": "uniform over target columns"}
    w = _prepare(p, params)
    flat = [lab for lab, c in zip(p.labels, (w.const_a, w.const_b)) if c.all()]
    if flat:
        return finish(p, SPEC, params, None, shown=shown,
                      reason=f"{flat[0]} has all rows identical (zero variance); R² is undefined")
    values = _values(w, w.b, w.pb, direction, alpha)
    if direction == "both":
        shown.update({"r2_ab": values["ab"], "r2_ba": values["ba"]})
    # The null reuses the centred inputs and a's sums.
    spec = replace(SPEC, permutation_null=lambda q, prm, perms: _null(w, direction, alpha, perms))
    return finish(p, spec, params, _value(values), shown=shown)


def _null(w: _Pair, direction: str, alpha: float, perms: list[np.ndarray]) -> np.ndarray:
    """B's rows permuted: the folds stay put, so a's sums are reused and B's parts and the crosses redone."""
    out = []
    for perm in perms:
        b = w.b[perm]
        pb = w.pb if w.in_sample else parts(b, w.rows, grams=direction != "ab")
        out.append(_value(_values(w, b, pb, direction, alpha)))
    return np.array(out)


def _permutation_null(p: PairData, params: Params, perms: list[np.ndarray]) -> np.ndarray:
    return _null(_prepare(p, params), params["direction"], params["alpha"], perms)


def _parse_folds(text: str) -> int:
    v = integer(0)(text)
    if v == 1:
        raise ValueError("1 fold leaves nothing to fit on (0 = in-sample, or at least 2)")
    return v


def _check(params: Params, n: int, d1: int, d2: int, k: int, labels: tuple[str, str]) -> None:
    if params["folds"] > n:
        raise InputError(f"{labels[0]} and {labels[1]} hold {n} items, too few for linear-r2:folds="
                         f"{params['folds']} (at most one fold per item)")


def _memory(n: int, d1: int, d2: int, params: Params) -> int:
    # Both centred float64 copies, a permuted copy of B with a fold's residuals, and per part (folds, or one
    # in-sample) the Grams and cross-products, plus their totals.
    parts_ = max(params["folds"], 1) + 1
    d = max(d1, d2)
    return 8 * (n * (d1 + 2 * d2) + n * d + parts_ * (d1 * d1 + d2 * d2 + d1 * d2) + 3 * d * d)


def _symmetric(params: Params) -> bool:
    return params["direction"] == "both"


SPEC = MetricSpec(
    "linear-r2", "linear predictivity R²", (-math.inf, 1.0),
    "R² of a ridge regression with intercept from one input to the other, averaged over the target's "
    "columns (PU's linear_r2); default out of sample over 5 shuffled folds, where PU fits and scores the "
    "same rows (folds=0)",
    linear_r2_result,
    params=(Param("alpha", 1.0, number(0.0, lo_open=True), "ridge penalty on the slopes (as sklearn's Ridge; "
                  "not scale-free)"),
            Param("folds", 5, _parse_folds, "folds of the out-of-sample R² (shuffled with the seed); 0 = "
                  "in-sample, as PU"),
            Param("direction", "both", one_of("both", "ab", "ba"), "ab: a predicts b; ba: b predicts a; "
                  "both: the mean of the two")),
    work=Work(arrays=True), permutation_null=_permutation_null, memory=_memory, check=_check,
    symmetric=_symmetric, asymmetry="direction=ab: a predicts b; ba: b predicts a")
