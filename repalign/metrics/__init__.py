"""Metric registry: one line per metric module; the names and parameters selected with ``-m``."""

from __future__ import annotations

from typing import Any

from repalign.errors import UsageError
from repalign.metrics import (
    cka_linear,
    cka_rbf,
    cknna,
    cycle_knn,
    edit_knn,
    jaccard,
    lcs_knn,
    linear_r2,
    mknn,
    procrustes,
    pwcca,
    rsa,
    svcca,
)
from repalign.metrics.base import PairData, clamp, finish, list_depth
from repalign.metrics.spec import Choice, MetricSpec, Param, Params, Work, parse_selection

__all__ = ["CI_METHODS", "DEFAULT_METRICS", "REGISTRY", "Choice", "MetricSpec", "PairData", "Param", "Params",
           "Work", "clamp", "finish", "list_depth", "parse_metrics", "register"]

REGISTRY: dict[str, MetricSpec] = {}


def register(spec: MetricSpec) -> MetricSpec:
    """Add a metric: the CLI, the engine, the reports, the schema and ``repalign metrics`` all read REGISTRY."""
    REGISTRY[spec.name] = spec
    return spec


# Neighbour family first, then kernel and CCA family: the order of `repalign metrics` and the README table.
register(mknn.SPEC)
register(cycle_knn.SPEC)
register(lcs_knn.SPEC)
register(edit_knn.SPEC)
register(jaccard.SPEC)
register(cknna.SPEC)
register(cka_linear.SPECS["cka"])
register(cka_linear.SPECS["cka-unbiased"])
register(cka_rbf.SPEC)
register(svcca.SPEC)
register(pwcca.SPEC)
register(procrustes.SPEC)
register(rsa.SPEC)
register(linear_r2.SPEC)

DEFAULT_METRICS = ("mknn", "cka")
# "auto": each metric's own default (the first of its ci_methods).
CI_METHODS = ("auto", "bootstrap", "percentile", "basic", "bca", "normal", "ij", "jackknife", "corrected")


def parse_metrics(values: Any) -> tuple[Choice, ...]:
    """``-m`` values → choices (see :func:`repalign.metrics.spec.parse_selection` for the grammar)."""
    return parse_selection(values, REGISTRY, DEFAULT_METRICS, UsageError)
