"""What approximate lists cost: recall@k and each list metric's shift, measured on the seeded sample rows."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from repalign.search.approx import Record, row_recall


def _per_row(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Each sampled row's term of a k-NN metric that is a mean over rows (None: the metric is not one)."""
    k = a.shape[1]
    if name in ("mknn", "jaccard"):
        o = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1).astype(np.float64)
        return o / k if name == "mknn" else o / (2 * k - o)
    if name == "lcs-knn":
        from repalign.metrics.lcs_knn import lcs_lengths

        return lcs_lengths(a, b) / k
    if name == "edit-knn":
        from repalign.metrics.edit_knn import levenshtein_rows

        return 1.0 - levenshtein_rows(a, b) / k
    return None


PER_ROW_METRICS = ("mknn", "jaccard", "lcs-knn", "edit-knn")
"""k-NN metrics that are means of per-row terms, so their shift on a row sample estimates the whole shift.
cycle-knn and cknna read other rows' lists too and are not measured."""


def unmeasured_notes(searched, names) -> list[str]:
    """Notes for the k-NN metrics that ran on approximate lists but whose shift is not measured."""
    if searched is None:
        return []
    return [f"{name}: computed on approximate lists; its shift is not measured (it is not a mean of per-row terms), "
            "only the search's recall" for name in dict.fromkeys(names) if name in ("cycle-knn", "cknna")]


def mean_interval(values: np.ndarray, population: int, confidence: float) -> tuple[float, float, float]:
    """Mean of per-row values from a simple random sample without replacement, with a normal interval.

    The standard error carries the finite-population correction sqrt((N − m)/(N − 1)): the target is the
    mean over all N rows of this input, which a sample of every row knows exactly.
    """
    m = values.size
    mean = float(values.mean())
    if m < 2:
        return mean, mean, mean
    fpc = (population - m) / (population - 1) if population > 1 else 0.0
    se = float(values.std(ddof=1) / np.sqrt(m) * np.sqrt(max(fpc, 0.0)))  # a plain float for the report
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return mean, mean - z * se, mean + z * se


def recall(rec: Record, k: int, confidence: float) -> tuple[float, float, float]:
    """recall@k over all rows, estimated from the sample: mean share of each exact k-list found."""
    return mean_interval(row_recall(rec.approx[:, :k], rec.exact[:, :k]), rec.n, confidence)


def shift(name: str, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], k: int, n: int,
          confidence: float) -> tuple[float, float, float, float, float] | None:
    """The metric on the sample rows with exact lists minus with approximate lists: (shift, low, high, exact,
    approximate); ``a`` and ``b`` are each side's (exact, approximate) lists of the same sample rows.

    A paired difference over rows: the per-row terms under both lists, their difference's mean and a normal
    interval (finite-population corrected, as for recall).
    """
    exact = _per_row(name, a[0][:, :k], b[0][:, :k])
    approx = _per_row(name, a[1][:, :k], b[1][:, :k])
    if exact is None or approx is None:
        return None
    mean, lo, hi = mean_interval(exact - approx, n, confidence)
    return mean, lo, hi, float(exact.mean()), float(approx.mean())


def summarise(reps: list, pairs: list[tuple[int, int, tuple]], options, uncertainty):
    """The report's ``search`` object from the representations' search records (None: every list was exact).

    ``reps``: the run's :class:`~repalign.engine.representation.Representation` objects; ``pairs``: (index of
    a, index of b, that pair's metric results), whose reported layer pair each shift is measured at.
    """
    from repalign.metrics import list_depth
    from repalign.results import SearchIndex, SearchReport, SearchShift

    records = [getattr(r.search, "records", {}) for r in reps]
    if not any(records):
        return None
    k, conf = options.k, uncertainty.confidence
    indexes = []
    for r, recs in zip(reps, records):
        for rec in recs.values():
            mean, lo, hi = recall(rec, k, conf)
            indexes.append(SearchIndex(r.label, rec.label, rec.n, rec.d, rec.nlist, rec.nprobe, rec.training_rows,
                                       rec.tuning_rows, rec.tuning_recall, rec.fallback_rows, mean, lo, hi))
    first = next(rec for recs in records for rec in recs.values())
    sample, n = first.sample, first.n
    depth = list_depth(n, k, uncertainty.resamples)
    ordered = options.works("ordered")

    def side(p: int, layer_label: str | None) -> tuple[str, tuple[np.ndarray, np.ndarray], bool]:
        r = reps[p]
        i = 0 if layer_label is None else list(r.labels).index(layer_label)
        name = r.name(i)
        rec = records[p].get(name)
        tag = f"{r.label}:{name}" if r.layered else r.label
        if rec is not None:
            return tag, (rec.exact, rec.approx), True
        lists = r.lists(i, depth, options.distance, k, ordered)[sample]
        return tag, (lists, lists), False

    shifts = []
    for p, q, results in pairs:
        for m in results:
            if m.name not in PER_ROW_METRICS or m.value is None:
                continue
            ta, la, approx_a = side(p, m.params.get("layer_a"))
            tb, lb, approx_b = side(q, m.params.get("layer_b"))
            if not (approx_a or approx_b):
                continue
            got = shift(m.name, la, lb, k, n, conf)
            if got is not None:
                shifts.append(SearchShift(m.id, (ta, tb), *got))
    methods = {getattr(r.search, "method", "exact") for r in reps}
    chosen = {v for r in reps for v in getattr(r.search, "chosen", {}).values()}
    method = "mixed" if "exact" in chosen or "exact" in methods else "approx"
    worst = min(indexes, key=lambda x: x.recall_at_k)
    target = next(float(getattr(r.search, "recall", getattr(getattr(r.search, "approx", None), "recall", 0.0)))
                  for r in reps if getattr(r.search, "records", {}))
    return SearchReport(method, "auto" if options.search == "auto" else "option", False, target, uncertainty.seed,
                        k, conf, int(sample.size), worst.recall_at_k, worst.ci_low, worst.ci_high,
                        tuple(indexes), tuple(shifts))
