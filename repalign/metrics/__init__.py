"""Metric registry: names → metric modules, and the names selected on the command line."""

from __future__ import annotations

from collections.abc import Iterable

from repalign.errors import UsageError
from repalign.metrics.base import CI_METHODS, COVERS, DEFAULT_CI, MetricSpec, PairData, clamp, list_depth
from repalign.metrics.cka_linear import cka_biased_result, cka_unbiased_result
from repalign.metrics.mknn import mknn_result

__all__ = ["CI_METHODS", "COVERS", "DEFAULT_CI", "DEFAULT_METRICS", "REGISTRY", "MetricSpec", "PairData", "clamp",
           "list_depth", "parse_metrics"]

REGISTRY: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("mknn", "mutual k-NN", (0.0, 1.0),
                   "mean share of each item's k nearest neighbours that are the same in both spaces "
                   "(Huh et al. 2024); chance level k/(n−1)", mknn_result, needs_neighbors=True),
        MetricSpec("cka", "linear CKA", (0.0, 1.0),
                   "centred kernel alignment with linear kernels, biased HSIC (Kornblith et al. 2019); "
                   "chance is its exact mean under random pairing", cka_biased_result),
        MetricSpec("cka-unbiased", "unbiased linear CKA", (-1.0, 1.0),
                   "linear CKA with the unbiased HSIC estimator (Song et al. 2012); chance 0", cka_unbiased_result),
    )
}
DEFAULT_METRICS = ("mknn", "cka")


def parse_metrics(values: str | Iterable[str] | None) -> list[str]:
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
