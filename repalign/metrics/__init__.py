"""Metric registry: names → functions and parameters, plus the shared per-pair work they draw on."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from repalign.errors import InputError, UsageError
from repalign.metrics import cka as _cka
from repalign.metrics import knn as _knn
from repalign.results import MetricResult
from repalign.validation import check_k


class PairData:
    """Two validated, preprocessed inputs and the work metrics share (computed once, on demand)."""

    def __init__(self, a: np.ndarray, b: np.ndarray, *, k: int, distance: str, labels: tuple[str, str]):
        self.a, self.b = a, b
        self.n = a.shape[0]
        self.k = k
        self.distance = distance
        self.labels = labels

    def neighbors(self, side: str) -> np.ndarray:
        from repalign.neighbors import knn

        attr = f"_knn_{side}"
        if not hasattr(self, attr):
            x = self.a if side == "a" else self.b
            label = self.labels[0] if side == "a" else self.labels[1]
            setattr(self, attr, knn(x, self.k, self.distance, label=label))
        return getattr(self, attr)

    @cached_property
    def cross(self) -> _cka.CrossStats:
        return _cka.cross_stats(self.a, self.b)


@dataclass(frozen=True)
class MetricSpec:
    """A metric as the CLI and the README know it."""

    name: str
    title: str
    range: tuple[float, float]
    description: str
    compute: Callable[[PairData], MetricResult]


def _mknn(p: PairData) -> MetricResult:
    check_k(p.k, p.n, "mknn")
    value = _knn.mutual_knn(p.neighbors("a"), p.neighbors("b"))
    return MetricResult("mknn", value, {"k": p.k, "distance": p.distance}, chance=_knn.chance(p.n, p.k))


def _cka_result(name: str, p: PairData, unbiased: bool) -> MetricResult:
    st = p.cross
    terms = _cka.unbiased_terms(st) if unbiased else _cka.biased_terms(st)
    value = _cka.ratio(terms)
    params = {"kernel": "linear", "estimator": "unbiased" if unbiased else "biased"}
    rng = (-1.0, 1.0) if unbiased else (0.0, 1.0)
    chance = 0.0 if unbiased else _cka.permutation_mean(st)
    if value is None:
        side = p.labels[0] if not terms[1] > 0 else p.labels[1]
        what = "has no estimated variance" if unbiased else "has all rows identical (zero variance)"
        return MetricResult(name, None, params, None, rng, reason=f"{side} {what}; CKA is undefined")
    # Rounding can push a ratio of equal sums a hair past ±1.
    value = min(max(value, rng[0]), rng[1])
    return MetricResult(name, value, params, chance, rng)


def _cka_biased(p: PairData) -> MetricResult:
    return _cka_result("cka", p, unbiased=False)


def _cka_unbiased(p: PairData) -> MetricResult:
    if p.n < 4:
        raise InputError(f"cka-unbiased needs at least 4 items, but there are only {p.n}")
    return _cka_result("cka-unbiased", p, unbiased=True)


REGISTRY: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("mknn", "mutual k-NN", (0.0, 1.0),
                   "mean share of each item's k nearest neighbours that are the same in both spaces "
                   "(Huh et al. 2024); chance level k/(n−1)", _mknn),
        MetricSpec("cka", "linear CKA", (0.0, 1.0),
                   "centred kernel alignment with linear kernels, biased HSIC (Kornblith et al. 2019); "
                   "chance is its exact mean under random pairing", _cka_biased),
        MetricSpec("cka-unbiased", "unbiased linear CKA", (-1.0, 1.0),
                   "linear CKA with the unbiased HSIC estimator (Song et al. 2012); chance 0", _cka_unbiased),
    )
}
DEFAULT_METRICS = ("mknn", "cka")


def parse_metrics(values) -> list[str]:
    """Names from repeated and/or comma-separated options, in order, without repeats."""
    if values is None or isinstance(values, str):
        values = [values] if values else list(DEFAULT_METRICS)
    out: list[str] = []
    for v in values:
        for name in str(v).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in REGISTRY:
                raise UsageError(f"unknown metric '{name}' (choose from {', '.join(REGISTRY)})")
            if name not in out:
                out.append(name)
    if not out:
        raise UsageError("no metric selected")
    return out
