#!/usr/bin/env python
"""Simulation study: do repalign's confidence intervals cover what they claim to cover?

Data with a shared latent signal, from a *fixed population* per setting::

    Z ~ N(0, I_r) (n×r, r = 8),  X = Z·A + E1,  Y = Z·B + E2,  E ~ N(0, 1)

with A, B (r×d) drawn once per (d, signal) with entries N(0, s²/r), so s² is
the signal variance per feature (s = 0: X and Y independent).

Targets (docs/formulas.md §6, what each interval claims to cover):

* mknn (k = 10) and biased CKA: the mean of the statistic over fresh datasets
  of the same n from the same population, estimated from ``--truth-datasets``
  fresh datasets (their SD is the "true SD" of the statistic);
* unbiased CKA: the population value, in closed form,
  ‖Σ_XY‖²_F / (‖Σ_XX‖_F ‖Σ_YY‖_F), Σ_XX = AᵀA + I, Σ_XY = AᵀB, Σ_YY = BᵀB + I
  (cross-checked at large n with ``--check-population``).

For each of ``--datasets`` further datasets the intervals are computed
exactly as ``repalign.compare`` does: mknn through the library's internals
(one neighbour search, one set of bootstrap replicates, one jackknife, then
every interval method from the same replicates; the first datasets of each
setting are checked against ``compare`` itself), CKA through ``compare``.
Besides the library's mknn methods (percentile, basic, bca, normal = bootstrap
SD) the study evaluates ``normal-jack`` (estimate ± z·jackknife SE). For CKA every bootstrap flavour
(percentile, basic, bca, normal) is computed from one set of weighted replicates
(repalign.metrics.cka_bootstrap), and the first datasets are checked against ``compare`` itself.

Usage::

    python benchmarks/coverage.py --quick
    nohup python benchmarks/coverage.py --jobs 2 --partial /tmp/cov --out /tmp/cov/coverage.json &

Per-dataset records are appended to ``--partial DIR`` as they are computed,
and a rerun with the same options resumes from them. ``--decompose N`` splits
the bootstrap variance of mknn on N datasets per setting; ``--check-population N``
compares the closed-form unbiased-CKA target with estimates at n = N.
Results and their discussion: benchmarks/coverage_results.md.
"""

from __future__ import annotations

import os

# One thread per worker: the work is many small problems, parallelised over datasets.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import datetime as _dt
import json
import multiprocessing as mp
import platform
import sys
import time
from statistics import NormalDist

import numpy as np

RANK = 8
K = 10
SIGNALS = {"none": 0.0, "moderate": 0.5, "strong": 1.5}
MKNN_METHODS = ("ij", "percentile", "basic", "bca", "normal", "normal-jack", "normal-iid", "normal-infl")
# Not in repalign, candidates of this study: estimate ± z·SE with SE from the per-item overlaps o_i
# ("iid": sd(o_i/k)/√n, items treated as independent) or from the first-order influence of each
# item, which enters as a query (o_i) and as a neighbour (in_i = #{j : i ∈ N_X(j) ∩ N_Y(j)}):
# sd((o_i + in_i)/k)/√n.
EXPLORATORY = ("normal-iid", "normal-infl")
CKA_METRICS = ("cka", "cka-unbiased")
# The bootstrap flavours of CKA (weighted replicates, repalign.metrics.cka_bootstrap), all from one set of replicates.
CKA_BOOTSTRAP = ("percentile", "basic", "bca", "normal")
MASTER_SEED = 20260601


# ---------------------------------------------------------------- data


def population(d: int, signal: str, seed: int = MASTER_SEED, rank: int = RANK):
    """Fixed loadings (A, B) for one (d, signal); the same for every n."""
    s = SIGNALS[signal]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, d, list(SIGNALS).index(signal)]))
    A = rng.standard_normal((rank, d)) * s / np.sqrt(rank)
    B = rng.standard_normal((rank, d)) * s / np.sqrt(rank)
    return A, B


def draw(rng: np.random.Generator, A: np.ndarray, B: np.ndarray, n: int):
    z = rng.standard_normal((n, A.shape[0]))
    X = z @ A + rng.standard_normal((n, A.shape[1]))
    Y = z @ B + rng.standard_normal((n, B.shape[1]))
    return X, Y


def population_cka(A: np.ndarray, B: np.ndarray) -> float:
    """Population linear CKA ‖Σ_XY‖²_F / (‖Σ_XX‖_F ‖Σ_YY‖_F) of the model above."""
    sxx = A.T @ A + np.eye(A.shape[1])
    syy = B.T @ B + np.eye(B.shape[1])
    sxy = A.T @ B
    return float(np.sum(sxy**2) / np.sqrt(np.sum(sxx**2) * np.sum(syy**2)))


def cka_pair(X: np.ndarray, Y: np.ndarray) -> tuple[float, float]:
    """(biased, unbiased) linear CKA written here from docs/formulas.md §3, independent of repalign."""
    n = X.shape[0]
    Xc = X - X.mean(axis=0)
    Yc = Y - Y.mean(axis=0)
    a = np.einsum("ij,ij->i", Xc, Xc)
    b = np.einsum("ij,ij->i", Yc, Yc)

    def fro2(P, Q):
        if P.shape[1] * Q.shape[1] > n * n:
            return float(np.vdot(P @ P.T, Q @ Q.T))
        C = P.T @ Q
        return float(np.vdot(C, C))

    sxy, sxx, syy = fro2(Xc, Yc), fro2(Xc, Xc), fro2(Yc, Yc)

    def unb(s, u, v):
        return s - n / (n - 2) * float(u @ v) + float(u.sum()) * float(v.sum()) / ((n - 1) * (n - 2))

    biased = sxy / np.sqrt(sxx * syy)
    unbiased = unb(sxy, a, b) / np.sqrt(unb(sxx, a, a) * unb(syy, b, b))
    return float(biased), float(unbiased)


# ---------------------------------------------------------------- settings and seeds


def key(n, d, signal):
    return f"n={n},d={d},{signal}"


def truth_seed(n, d, signal, j, seed=MASTER_SEED):
    return np.random.SeedSequence([seed, 2, n, d, list(SIGNALS).index(signal), j])


def data_seed(n, d, signal, j, seed=MASTER_SEED):
    return np.random.SeedSequence([seed, 3, n, d, list(SIGNALS).index(signal), j])


def compare_seed(n, d, signal, j, seed=MASTER_SEED) -> int:
    """The integer ``seed=`` passed to repalign.compare for interval dataset j."""
    ss = np.random.SeedSequence([seed, 4, n, d, list(SIGNALS).index(signal), j])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


# ---------------------------------------------------------------- workers


def _init_worker():
    import faiss

    faiss.omp_set_num_threads(1)


def truth_task(args):
    """Statistic values of fresh datasets j0..j1−1 (no intervals)."""
    from repalign.metrics.knn import mutual_knn
    from repalign.neighbors import knn

    n, d, signal, j0, j1, seed = args
    A, B = population(d, signal, seed)
    out = []
    for j in range(j0, j1):
        X, Y = draw(np.random.default_rng(truth_seed(n, d, signal, j, seed)), A, B, n)
        m = mutual_knn(knn(X, K), knn(Y, K))
        cb, cu = cka_pair(X, Y)
        out.append({"kind": "truth", "key": key(n, d, signal), "j": j, "mknn": m, "cka": cb, "cka-unbiased": cu})
    return out


def mknn_intervals(X, Y, seed: int, resamples: int, confidence: float, check: bool = False) -> dict:
    """Every mknn interval for one dataset, mirroring repalign.metrics.mknn line by line."""
    import repalign
    from repalign import stats
    from repalign.metrics import PairData, clamp
    from repalign.metrics.knn import mutual_knn, overlaps
    from repalign.results import UncertaintySettings
    from repalign.stats import nulls

    u = UncertaintySettings(resamples=resamples, confidence=confidence, seed=seed, ci_method="auto",
                            permutations=0)
    p = PairData(X, Y, k=K, distance="cosine", labels=("array a", "array b"), uncertainty=u)
    la, lb = p.neighbors("a"), p.neighbors("b")
    value = mutual_knn(la[:, :K], lb[:, :K])
    fallbacks = set()

    def full_list(side, i, *depth):
        # Counts the rows whose stored lists a resample exhausted; passes on whatever the library asks.
        fallbacks.add((side, i))
        return p.full_list(side, i, *depth)

    rs = stats.KnnResampler(la, lb, K, full_list=full_list)
    # One set of replicates for every bootstrap method; the same call also gives the IJ variance.
    ijv = stats.knn_ij_variance(rs, p.boot_seed, resamples, p.null_seed, nulls.mknn_null(la[:, :K], lb[:, :K])[1])
    reps = ijv.replicates
    # Above n = 2,560 the IJ uses fewer replicates (stats.ij_budgets) while compare's bootstrap flavours use all
    # of them: draw those too, as compare does (before 2026-12-03 evening the flavours here used the IJ's).
    boot = reps if reps.size >= resamples else rs.bootstrap(stats.resample_weights(p.boot_seed, p.n, resamples))
    jack = rs.jackknife()
    res = {"value": value, "boot_mean": float(boot.mean()), "boot_sd": float(boot.std(ddof=1)),
           "ij_var": ijv.ij, "ij_null_excess": ijv.null_excess, "ij_cal_var": ijv.calibrated,
           "null_var": ijv.null_variance, "ij_used_var": ijv.variance,
           "ij_replicates": [int(reps.size),
                             stats.calibration_replicates(stats.ij_budgets(p.n, resamples)[1], ijv.ij, ijv.null_variance)],
           "jack_se": stats.jackknife_se(jack), "jack_mean": float(jack.mean()),
           "boot_median": float(np.median(boot)), "depth": p.depth, "fallback_rows": len(fallbacks)}
    A, B = la[:, :K], lb[:, :K]
    o = overlaps(A, B).astype(np.float64)
    both = np.concatenate([A, B], axis=1)
    both.sort(axis=1)
    shared = both[:, 1:][both[:, 1:] == both[:, :-1]]  # every j with j ∈ N_X(i) ∩ N_Y(i), over all i
    indeg = np.bincount(shared, minlength=p.n).astype(np.float64)
    se_iid = float(np.std(o / K, ddof=1) / np.sqrt(p.n))
    se_infl = float(np.std((o + indeg) / K, ddof=1) / np.sqrt(p.n))
    res.update(se_iid=se_iid, se_infl=se_infl)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    iv = {}
    for m in MKNN_METHODS:
        if m in EXPLORATORY:
            se = se_iid if m == "normal-iid" else se_infl
            lo, hi = value - z * se, value + z * se
        elif m == "ij":
            se = np.sqrt(ijv.variance) if ijv.variance > 0 else float(reps.std(ddof=1))
            lo, hi = value - z * se, value + z * se
        elif m == "normal-jack":
            lo, hi = stats.interval(value, "normal", confidence, jack=jack)
        else:
            lo, hi = stats.interval(value, m, confidence, replicates=boot, jack=jack)
        iv[m] = list(clamp(lo, hi, (0.0, 1.0)))
    res["intervals"] = iv
    if check:
        # The same dataset through the public API, default method and each of the others.
        from repalign.metrics import REGISTRY

        for m in ("auto", "percentile", "basic", "bca", "normal"):
            r = repalign.compare(X, Y, metrics="mknn", k=K, resamples=resamples, seed=seed, ci_method=m,
                                 permutations=0, confidence=confidence).metric("mknn")
            mine = iv[REGISTRY["mknn"].default_ci if m == "auto" else m]
            res.setdefault("check", {})[m] = {"ci_method": r.ci_method,
                                              "match": bool(r.value == value and r.ci_low == mine[0]
                                                            and r.ci_high == mine[1])}
    return res


def cka_bootstrap_intervals(X, Y, seed: int, resamples: int, confidence: float, check: bool = False) -> dict:
    """Every CKA bootstrap flavour for one dataset from one set of replicates, as repalign.metrics.cka_linear does.

    ``check``: also run each flavour through ``repalign.compare`` and record whether it gave the same interval.
    """
    import repalign
    from repalign import stats
    from repalign.metrics import PairData, clamp
    from repalign.results import UncertaintySettings

    u = UncertaintySettings(resamples=resamples, confidence=confidence, seed=seed, ci_method="auto", permutations=0)
    p = PairData(X, Y, k=K, distance="cosine", labels=("array a", "array b"), uncertainty=u)
    out: dict = {"checks": []}
    values = cka_pair(X, Y)
    for e, name in enumerate(CKA_METRICS):
        reps, jack = p.cka_boot[e], p.cka_loo[e]
        rng = (0.0, 1.0) if name == "cka" else (-1.0, 1.0)
        out[name] = {f"bootstrap-{m}": list(clamp(*stats.interval(values[e], m, confidence, replicates=reps,
                                                                    jack=jack), rng))
                     for m in CKA_BOOTSTRAP}
        out[name]["_boot"] = [float(np.mean(reps)), float(np.std(reps, ddof=1))]
    if check:
        for m in CKA_BOOTSTRAP:
            r = repalign.compare(X, Y, metrics=",".join(CKA_METRICS), resamples=resamples, seed=seed, ci_method=m,
                                 permutations=0, confidence=confidence)
            for name in CKA_METRICS:
                mm = r.metric(name)
                mine = out[name][f"bootstrap-{m}"]
                # The value here is computed by the study's own formula, so allow rounding (not a method change).
                out["checks"].append(bool(np.allclose([mm.ci_low, mm.ci_high], mine, rtol=0, atol=1e-12)))
    return out


def ci_task(args):
    """Intervals of interval datasets j0..j1−1."""

    n, d, signal, j0, j1, seed, resamples, confidence, n_check, skip_mknn, cka_datasets, cka_boot, boot_only = args
    A, B = population(d, signal, seed)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    out = []
    for j in range(j0, j1):
        X, Y = draw(np.random.default_rng(data_seed(n, d, signal, j, seed)), A, B, n)
        s = compare_seed(n, d, signal, j, seed)
        t0 = time.perf_counter()
        rec = {"kind": "ci", "key": key(n, d, signal), "j": j, "seed": s}
        if not skip_mknn:
            rec["mknn"] = mknn_intervals(X, Y, s, resamples, confidence, check=j < n_check)
        t1 = time.perf_counter()
        if j >= cka_datasets:  # CKA on the first cka_datasets only (--cka-datasets)
            rec["seconds"] = {"mknn": t1 - t0}
            out.append(rec)
            continue
        if boot_only:  # --cka-bootstrap-only: the bootstrap flavours alone (their defaults come from another run)
            values = cka_pair(X, Y)
            for e, name in enumerate(CKA_METRICS):
                rec[name] = {"value": values[e], "intervals": {}}
            t2 = t1
        else:
            _cka_defaults(rec, X, Y, s, resamples, confidence, z)
            t2 = time.perf_counter()
        if not cka_boot:  # --no-cka-bootstrap: the default intervals only
            rec["seconds"] = {"mknn": t1 - t0, "cka": t2 - t1}
            out.append(rec)
            continue
        boot = cka_bootstrap_intervals(X, Y, s, resamples, confidence, check=j < n_check)
        for name in CKA_METRICS:
            rec[name]["boot_mean_sd"] = boot[name].pop("_boot")
            rec[name]["intervals"].update(boot[name])
        rec["cka_checks"] = boot["checks"]
        rec["seconds"] = {"mknn": t1 - t0, "cka": t2 - t1, "cka_bootstrap": time.perf_counter() - t2}
        out.append(rec)
    return out


def _cka_defaults(rec: dict, X, Y, s: int, resamples: int, confidence: float, z: float) -> None:
    """CKA's default interval (through the public API) and the plain jackknife-normal one, into the record."""
    import repalign
    from repalign import stats
    from repalign.metrics import clamp
    from repalign.metrics.cka_jackknife import jackknife

    r = repalign.compare(X, Y, metrics=",".join(CKA_METRICS), k=K, resamples=resamples, seed=s,
                         ci_method="auto", permutations=0, confidence=confidence)
    loo = jackknife(X, Y)  # the plain interval (--ci-method jackknife) from the same leave-one-out values
    for e, name in enumerate(CKA_METRICS):
        m = r.metric(name)
        se = stats.jackknife_se(loo[e])
        plain = clamp(m.value - z * se, m.value + z * se, (0.0, 1.0) if name == "cka" else (-1.0, 1.0))
        rec[name] = {"value": m.value, "intervals": {m.ci_method: [m.ci_low, m.ci_high], "jackknife-normal": list(plain)},
                     "ci_method": m.ci_method}


def population_check(args):
    """Unbiased and biased CKA at large n against the closed form (docs/formulas.md §6 target)."""
    d, signal, n, reps, seed = args
    A, B = population(d, signal, seed)
    vals = []
    for j in range(reps):
        X, Y = draw(np.random.default_rng(np.random.SeedSequence([seed, 5, n, d, list(SIGNALS).index(signal), j])),
                    A, B, n)
        vals.append(cka_pair(X, Y)[1])
    return {"d": d, "signal": signal, "n": n, "closed_form": population_cka(A, B), "large_n": vals}


def decompose_task(args):
    """Split the bootstrap variance of mknn for one dataset (see --decompose).

    A replicate is Σ_i w_i·o_i(w)/(n·k). With the overlaps held at their full-data
    values o_i, Σ_i w_i·o_i/(n·k) is the part due to re-weighting items ("weights");
    the rest is due to neighbour sets changing in the resample ("neighbours").
    """
    from repalign import stats
    from repalign.metrics import PairData
    from repalign.metrics.knn import overlaps
    from repalign.results import UncertaintySettings

    n, d, signal, j, seed, resamples = args
    A, B = population(d, signal, seed)
    X, Y = draw(np.random.default_rng(data_seed(n, d, signal, j, seed)), A, B, n)
    u = UncertaintySettings(resamples=resamples, confidence=0.95, seed=compare_seed(n, d, signal, j, seed),
                            ci_method="auto", permutations=0)
    p = PairData(X, Y, k=K, distance="cosine", labels=("array a", "array b"), uncertainty=u)
    la, lb = p.neighbors("a"), p.neighbors("b")
    o = overlaps(la[:, :K], lb[:, :K]).astype(np.float64)
    rs = stats.KnnResampler(la, lb, K, full_list=p.full_list)
    reps, fixed = [], []
    for block in stats.resample_weights(p.boot_seed, n, resamples):
        for w in block:
            reps.append(rs.replicate(w))
            fixed.append(float(w @ o) / (n * K))
    reps, fixed = np.asarray(reps), np.asarray(fixed)
    return {"bootstrap": float(reps.var(ddof=1)), "weights": float(fixed.var(ddof=1)),
            "neighbours": float((reps - fixed).var(ddof=1)), "cov2": float(2 * np.cov(fixed, reps - fixed)[0, 1]),
            "iid": float(o.var(ddof=1) / (n * K * K))}


def decompose(settings, truth_sd: dict, datasets: int, resamples: int, seed: int, jobs: int) -> str:
    tasks = [(n, d, s, j, seed, resamples) for n, d, s in settings for j in range(datasets)]
    if jobs > 1:
        with mp.get_context("fork").Pool(jobs, initializer=_init_worker) as pool:
            res = pool.map(decompose_task, tasks)
    else:
        _init_worker()
        res = [decompose_task(t) for t in tasks]
    lines = ["| n | d | signal | bootstrap var | = weights only | + neighbour sets | + 2·cov | iid var(o_i)/(n·k²) |",
             "|---|---|---|---|---|---|---|---|"]
    for i, (n, d, s) in enumerate(settings):
        chunk = res[i * datasets:(i + 1) * datasets]
        v = truth_sd[key(n, d, s)] ** 2
        mean = {f: np.mean([r[f] for r in chunk]) / v for f in chunk[0]}
        lines.append(f"| {n} | {d} | {s} | {mean['bootstrap']:.2f} | {mean['weights']:.2f} | {mean['neighbours']:.2f} | "
                     f"{mean['cov2']:.2f} | {mean['iid']:.2f} |")
    return ("\n### Where the bootstrap variance of mknn comes from (in units of the true variance)\n\n"
            + "\n".join(lines) + "\n")


# ---------------------------------------------------------------- grouped jackknife of the newer metrics
#
# --metrics NAME,... --method group-jackknife: for each metric, the truth is the mean of the statistic over
# fresh datasets at this n (its SD the true SD), and the candidate interval is estimate ± z·SE with the SE of
# the delete-a-group jackknife (G = repalign.stats.GROUPS), each group's value recomputed through the metric's
# own compute on the remaining rows, exactly as repalign.metrics.base.group_jackknife_interval does. One
# sub-pair per group serves every metric, so the neighbour metrics share its search.

GJ_METHOD = "group-jackknife-normal"


def _metric_pair(X, Y, seed: int, resamples: int = 0):
    from repalign.metrics import PairData
    from repalign.results import UncertaintySettings

    u = UncertaintySettings(resamples=resamples, permutations=0, seed=seed)
    # ordered=True: the state of a pair when intervals are on (lists deeper than k are kept in order).
    return PairData(X, Y, k=K, distance="cosine", labels=("array a", "array b"), uncertainty=u, ordered=True)


def _values(pair, names) -> dict:
    """Each metric's value on one pair (None → NaN), through its spec with default parameters."""
    from repalign.metrics import REGISTRY

    out = {}
    for name in names:
        spec = REGISTRY[name]
        v = spec.compute(pair, spec.defaults()).value
        out[name] = float("nan") if v is None else float(v)
    return out


def gj_truth_task(args):
    n, d, signal, j0, j1, seed, names = args
    A, B = population(d, signal, seed)
    out = []
    for j in range(j0, j1):
        X, Y = draw(np.random.default_rng(truth_seed(n, d, signal, j, seed)), A, B, n)
        out.append({"kind": "gtruth", "key": key(n, d, signal), "j": j, **_values(_metric_pair(X, Y, 0), names)})
    return out


def gj_intervals(X, Y, s: int, names, confidence: float) -> dict:
    """Every metric's estimate, grouped jackknife SE and interval on one dataset (one search per group)."""
    from repalign import stats
    from repalign.metrics import REGISTRY, clamp
    from repalign.seeds import Streams

    pair = _metric_pair(X, Y, s)
    est = _values(pair, names)
    labels = stats.groups(Streams.from_seed(s).groups, X.shape[0])
    dele = np.array([list(_values(pair.subset(np.flatnonzero(labels != g)), names).values())
                     for g in range(int(labels.max()) + 1)])
    out = {}
    for i, name in enumerate(names):
        se = stats.group_jackknife_se(dele[:, i])
        if np.isfinite(se) and np.isfinite(est[name]):
            iv = list(clamp(*stats.interval(est[name], "normal", confidence, se=se), REGISTRY[name].range))
        else:
            iv = [float("nan"), float("nan")]
        out[name] = {"value": est[name], "se": se, "delete_mean": float(dele[:, i].mean()),
                     "intervals": {GJ_METHOD: iv}}
    return out


def gj_check(X, Y, s: int, names, confidence: float, mine: dict) -> dict:
    """The study's interval against the library's own group_jackknife_interval on the same dataset."""
    from repalign.metrics import REGISTRY
    from repalign.metrics.base import group_jackknife_interval

    pair = _metric_pair(X, Y, s, resamples=1)
    out = {}
    for name in names:
        spec = REGISTRY[name]
        if not np.isfinite(mine[name]["value"]):
            continue
        lib = group_jackknife_interval(pair, spec, spec.defaults(), mine[name]["value"], covers="")
        out[name] = bool([lib.get("ci_low"), lib.get("ci_high")] == mine[name]["intervals"][GJ_METHOD])
    return out


def gj_ci_task(args):
    n, d, signal, j0, j1, seed, names, confidence, n_check = args
    A, B = population(d, signal, seed)
    out = []
    for j in range(j0, j1):
        X, Y = draw(np.random.default_rng(data_seed(n, d, signal, j, seed)), A, B, n)
        s = compare_seed(n, d, signal, j, seed)
        t0 = time.perf_counter()
        rec = {"kind": "gci", "key": key(n, d, signal), "j": j, "seed": s, **gj_intervals(X, Y, s, names, confidence)}
        rec["seconds"] = time.perf_counter() - t0
        if j < n_check:
            rec["check"] = gj_check(X, Y, s, names, confidence, rec)
        out.append(rec)
    return out


def gj_summarise(records: list[dict], settings, names, confidence: float) -> dict:
    """Per setting and metric: truth, true SD, coverage, width ratio, SE ratio, centre bias, misses."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    out = {}
    for n, d, signal in settings:
        kk = key(n, d, signal)
        tr = [r for r in records if r["key"] == kk and r["kind"] == "gtruth"]
        ci = [r for r in records if r["key"] == kk and r["kind"] == "gci"]
        if not tr or not ci:
            continue
        s = {"n": n, "d": d, "signal": signal, "truth_datasets": len(tr), "datasets": len(ci),
             "seconds_per_dataset": float(np.mean([r["seconds"] for r in ci])), "metrics": {}}
        for name in names:
            fresh = np.array([r[name] for r in tr])
            est = np.array([r[name]["value"] for r in ci])
            lo = np.array([r[name]["intervals"][GJ_METHOD][0] for r in ci])
            hi = np.array([r[name]["intervals"][GJ_METHOD][1] for r in ci])
            se = np.array([r[name]["se"] for r in ci])
            undefined = int((~np.isfinite(fresh)).sum() + (~np.isfinite(lo)).sum())
            truth, sd = float(np.nanmean(fresh)), float(np.nanstd(fresh, ddof=1))
            ok = np.isfinite(lo)
            checks = [r["check"][name] for r in ci if name in r.get("check", {})]
            s["metrics"][name] = {
                "truth": truth, "true_sd": sd, "undefined": undefined,
                "coverage": float(np.mean((lo[ok] <= truth) & (truth <= hi[ok]))),
                "miss_low": float(np.mean(hi[ok] < truth)), "miss_high": float(np.mean(lo[ok] > truth)),
                "width_ratio": float(np.mean(hi[ok] - lo[ok]) / (2 * z * sd)) if sd > 0 else None,
                "se_ratio": float(np.mean(se[ok]) / sd) if sd > 0 else None,
                "centre_bias": float((np.nanmean(est) - truth) / sd) if sd > 0 else None,
                "checks": len(checks), "mismatches": sum(not c for c in checks)}
        out[kk] = s
    return out


def _passes(m: dict) -> bool:
    return (m["width_ratio"] is not None and 0.92 <= m["coverage"] <= 0.98 and m["width_ratio"] <= 1.3
            and m["undefined"] == 0)


def gj_markdown(summary: dict, names, confidence: float) -> str:
    """One row per setting and metric, then one row per metric over all settings with its verdict."""
    rows = list(summary.values())
    if not rows:
        return "(no results)\n"
    lines = [f"Coverage of {confidence:.0%} group-jackknife-normal intervals (G = 20); width ratio = mean width / "
             "(2·z·true SD); SE ratio = mean jackknife SE / true SD; centre bias = (mean estimate − truth) / true SD. "
             "`*` = outside [0.92, 0.98], `!` = width ratio > 1.3.\n",
             "| metric | n | d | signal | truth | true SD | coverage | width ratio | SE ratio | centre bias | "
             "miss low/high | undefined | checks (mismatches) | truth / interval datasets | s / dataset (all metrics) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        for s in rows:
            m = s["metrics"].get(name)
            if m is None:
                continue
            flag = "" if 0.92 <= m["coverage"] <= 0.98 else "*"
            wflag = "!" if m["width_ratio"] is None or m["width_ratio"] > 1.3 else ""
            lines.append(f"| {name} | {s['n']} | {s['d']} | {s['signal']} | {m['truth']:.4f} | {m['true_sd']:.4f} | "
                         f"{m['coverage']:.3f}{flag} | {_f(m['width_ratio'], 2)}{wflag} | {_f(m['se_ratio'], 2)} | "
                         f"{_f(m['centre_bias'], 2)} | {m['miss_low']:.3f}/{m['miss_high']:.3f} | {m['undefined']} | "
                         f"{m['checks']} ({m['mismatches']}) | {s['truth_datasets']} / {s['datasets']} | "
                         f"{s['seconds_per_dataset']:.2f} |")
    return "\n".join(lines) + "\n\n" + gj_verdicts(summary, names)


def gj_verdicts(summary: dict, names) -> str:
    """Per metric: coverage, width-ratio and SE-ratio ranges over the settings measured, and whether all pass."""
    lines = ["| metric | settings | coverage | width ratio | SE ratio | verdict | fails in (n/d/signal) |",
             "|---|---|---|---|---|---|---|"]

    def span(xs, nd):
        xs = [x for x in xs if x is not None]
        return f"{min(xs):.{nd}f}–{max(xs):.{nd}f}" if xs else "—"

    for name in names:
        ms = [(s, s["metrics"][name]) for s in summary.values() if name in s["metrics"]]
        if not ms:
            continue
        bad = [f"{s['n']}/{s['d']}/{s['signal']}" for s, m in ms if not _passes(m)]
        verdict = "**passes in every setting**" if not bad else f"fails in {len(bad)} of {len(ms)}"
        lines.append(f"| {name} | {len(ms)} | {span([m['coverage'] for _, m in ms], 3)} | "
                     f"{span([m['width_ratio'] for _, m in ms], 2)} | {span([m['se_ratio'] for _, m in ms], 2)} | "
                     f"{verdict} | {'all' if len(bad) == len(ms) else ', '.join(bad) or '—'} |")
    return "\n".join(lines) + "\n"


def gj_main(args, settings) -> int:
    """The --metrics study: tasks, resumable records, summary (see the block comment above)."""
    from repalign.metrics import REGISTRY

    names = [x.strip() for x in args.metrics.split(",") if x.strip()]
    unknown = [x for x in names if x not in REGISTRY]
    if unknown:
        raise SystemExit(f"unknown metrics: {', '.join(unknown)}")
    records: list[dict] = []
    partial = None
    if args.partial:
        os.makedirs(args.partial, exist_ok=True)
        partial = os.path.join(args.partial, f"records_gj_seed{args.seed}_conf{args.confidence}_{'+'.join(names)}.jsonl")
        records = [r for r in _load_partial(partial) if r.get("kind") in ("gtruth", "gci")]
    done = {(r["kind"], r["key"], r["j"]) for r in records}
    tasks = []
    for n, d, s in settings:
        kk = key(n, d, s)
        for j0 in range(0, args.truth_datasets, 25):
            j1 = min(j0 + 25, args.truth_datasets)
            if any(("gtruth", kk, j) not in done for j in range(j0, j1)):
                tasks.append(("gtruth", (n, d, s, j0, j1, args.seed, names)))
        for j0 in range(0, args.datasets, args.chunk):
            j1 = min(j0 + args.chunk, args.datasets)
            if any(("gci", kk, j) not in done for j in range(j0, j1)):
                tasks.append(("gci", (n, d, s, j0, j1, args.seed, names, args.confidence, args.check_compare)))
    tasks.sort(key=lambda t: (t[0] != "gtruth", -t[1][0] * t[1][1]))
    records += _run_tasks(tasks, args.jobs, partial, done)
    summary = gj_summarise(records, settings, names, args.confidence)
    print(gj_markdown(summary, names, args.confidence))
    if args.out:
        with open(args.out, "w") as fo:
            json.dump({"meta": {"date": _dt.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv),
                                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                                "args": vars(args)}, "summary": summary}, fo, indent=1)
    return 0


def _run_tasks(tasks, jobs: int, partial: str | None, done: set) -> list[dict]:
    """Run the tasks (in a pool when jobs > 1), appending each new record to the partial file as it arrives."""
    t0 = time.time()
    print(f"# {len(tasks)} tasks, jobs={jobs}", file=sys.stderr, flush=True)
    out = []
    fh = open(partial, "a") if partial else None  # noqa: SIM115 - appended to as results arrive, closed below
    pool = mp.get_context("fork").Pool(jobs, initializer=_init_worker) if jobs > 1 else None
    if pool is None:
        _init_worker()
    results = pool.imap_unordered(_run_task, tasks) if pool else (_run_task(t) for t in tasks)
    for i, recs in enumerate(results):
        recs = [r for r in recs if (r["kind"], r["key"], r["j"]) not in done]
        done |= {(r["kind"], r["key"], r["j"]) for r in recs}
        out.extend(recs)
        if fh:
            fh.writelines(json.dumps(r) + "\n" for r in recs)
            fh.flush()
        if recs:
            print(f"# [{time.time() - t0:7.0f}s] task {i + 1}/{len(tasks)}: {recs[0]['kind']} {recs[0]['key']} "
                  f"j={recs[0]['j']}..{recs[-1]['j']}", file=sys.stderr, flush=True)
    if pool:
        pool.close()
        pool.join()
    if fh:
        fh.close()
    return out


# ---------------------------------------------------------------- summary

Z975 = NormalDist().inv_cdf(0.975)


def studentized_bound(ci: list[dict], name: str, est: np.ndarray, truth: float) -> float:
    """The most any studentized bootstrap interval could cover here, whatever standard error it divides by.

    A studentized interval is [θ̂ − t*₁₋α/₂·SE, θ̂ − t*α/₂·SE] with t* = (θ* − θ̂)/SE*, and SE* > 0, so t* has the
    sign of θ* − θ̂. Where the α/2 quantile of the replicates lies above θ̂ (the percentile interval's lower
    end), fewer than α/2 of the t* are ≤ 0, t*α/₂ > 0, and the whole interval lies below θ̂: it misses a truth
    at or above θ̂. Symmetrically above. (Up to the interpolation between two neighbouring order statistics.)
    """
    lo = np.array([r[name]["intervals"]["bootstrap-percentile"][0] for r in ci])
    hi = np.array([r[name]["intervals"]["bootstrap-percentile"][1] for r in ci])
    below = (lo > est) & (truth >= est)
    above = (hi < est) & (truth <= est)
    return float(1.0 - np.mean(below | above))


def summarise(records: list[dict], settings, confidence: float, seed: int = MASTER_SEED) -> dict:
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    out = {}
    for n, d, signal in settings:
        kk = key(n, d, signal)
        tr = [r for r in records if r["key"] == kk and r["kind"] == "truth"]
        ci = sorted((r for r in records if r["key"] == kk and r["kind"] == "ci"), key=lambda r: r["j"])
        if not tr or not ci:
            continue
        A, B = population(d, signal, seed)
        s = {"n": n, "d": d, "signal": signal, "s": SIGNALS[signal], "truth_datasets": len(tr), "datasets": len(ci),
             "chance_mknn": K / (n - 1), "metrics": {}}
        for name in [x for x in ("mknn",) + CKA_METRICS if any(x in r for r in ci)]:
            ci_all, ci = ci, [r for r in ci if name in r]  # --cka-datasets: CKA on the first datasets only
            fresh = np.array([r[name] for r in tr])
            sd = float(fresh.std(ddof=1))
            truth = population_cka(A, B) if name == "cka-unbiased" else float(fresh.mean())
            truth_se = 0.0 if name == "cka-unbiased" else sd / np.sqrt(fresh.size)
            est = np.array([r[name]["value"] for r in ci])
            m = {"datasets": len(ci), "truth": truth, "truth_se": truth_se, "fresh_mean": float(fresh.mean()),
                 "true_sd": sd,
                 "mean_estimate": float(est.mean()), "sd_estimate": float(est.std(ddof=1)),
                 "centre_bias": float((est.mean() - truth) / sd) if sd > 0 else None, "methods": {}}
            methods = dict.fromkeys(meth for r in ci for meth in r[name].get("intervals", {}))
            for meth in methods:  # over the datasets that have the method (--no-cka-bootstrap runs lack some)
                have = [r for r in ci if meth in r[name].get("intervals", {})]
                lo = np.array([r[name]["intervals"][meth][0] for r in have])
                hi = np.array([r[name]["intervals"][meth][1] for r in have])
                cov = (lo <= truth) & (truth <= hi)
                width = hi - lo
                m["methods"][meth] = {
                    "datasets": len(have),
                    "coverage": float(cov.mean()),
                    "miss_low": float(np.mean(hi < truth)),  # interval entirely below the truth
                    "miss_high": float(np.mean(lo > truth)),
                    "width_ratio": float(width.mean() / (2 * z * sd)) if sd > 0 else None,
                    "midpoint_bias": float(((lo + hi) / 2 - truth).mean() / sd) if sd > 0 else None,
                }
            if name == "mknn":
                bm = np.array([r["mknn"]["boot_mean"] for r in ci])
                bsd = np.array([r["mknn"]["boot_sd"] for r in ci])
                jse = np.array([r["mknn"]["jack_se"] for r in ci])
                m["boot_bias"] = float((bm - est).mean() / sd)
                m["boot_bias_over_boot_sd"] = float(((bm - est) / bsd).mean())
                m["boot_sd_ratio"] = float(bsd.mean() / sd)
                m["jack_se_ratio"] = float(jse.mean() / sd)
                m["iid_se_ratio"] = float(np.mean([r["mknn"]["se_iid"] for r in ci]) / sd)
                m["infl_se_ratio"] = float(np.mean([r["mknn"]["se_infl"] for r in ci]) / sd)
                m["fallback_rows"] = int(sum(r["mknn"]["fallback_rows"] for r in ci))
                # The default's variance, its parts and its Monte Carlo budget, in true variances.
                tv = sd * sd
                for field, label in (("ij_used_var", "ij_var_ratio"), ("ij_var", "ij_raw_var_ratio"),
                                     ("ij_null_excess", "ij_excess_ratio"), ("null_var", "null_var_ratio")):
                    vals = np.array([r["mknn"][field] for r in ci])
                    m[label] = float(vals.mean() / tv) if tv > 0 else None
                    if field == "ij_used_var":
                        m["ij_var_ratio_se"] = float(vals.std(ddof=1) / np.sqrt(vals.size) / tv) if tv > 0 else None
                if "ij_replicates" in ci[0]["mknn"]:  # observed B; calibration replicates per pairing, mean
                    m["ij_replicates"] = [ci[0]["mknn"]["ij_replicates"][0],
                                          round(float(np.mean([r["mknn"]["ij_replicates"][1] for r in ci])), 1)]
                # Coverage with an oracle SE: the truth SD itself (what the centre and the sample of datasets
                # allow), and the SD of these datasets' estimates (also removes the truth SD's own error).
                m["oracle_coverage"] = float(np.mean(np.abs(est - truth) <= z * sd))
                m["oracle_coverage_sample_sd"] = float(np.mean(np.abs(est - truth) <= z * est.std(ddof=1)))
                checks = [c for r in ci for c in r["mknn"].get("check", {}).values()]
                m["compare_checks"] = len(checks)
                m["compare_mismatches"] = sum(not c["match"] for c in checks)
            else:
                for meth, label in (("jackknife-normal", "jack_se_ratio"),
                                    ("jackknife-corrected-normal", "corrected_se_ratio")):
                    if meth not in ci[0][name]["intervals"]:
                        continue
                    lo = np.array([r[name]["intervals"][meth][0] for r in ci])
                    hi = np.array([r[name]["intervals"][meth][1] for r in ci])
                    m[label] = float(((hi - lo) / (2 * z)).mean() / sd) if sd > 0 else None
                m["ci_methods"] = sorted({r[name]["ci_method"] for r in ci if "ci_method" in r[name]})
                booted = [r for r in ci if "boot_mean_sd" in r[name]]
                if booted:
                    est_b = np.array([r[name]["value"] for r in booted])
                    bm = np.array([r[name]["boot_mean_sd"][0] for r in booted])
                    bsd = np.array([r[name]["boot_mean_sd"][1] for r in booted])
                    m["boot_datasets"] = len(booted)
                    m["boot_bias"] = float((bm - est_b).mean() / sd) if sd > 0 else None
                    m["boot_sd_ratio"] = float(bsd.mean() / sd) if sd > 0 else None
                    m["studentized_bound"] = studentized_bound(booted, name, est_b, truth)
                    checks = [c for r in ci for c in r.get("cka_checks", [])]
                    m["compare_checks"], m["compare_mismatches"] = len(checks), sum(not c for c in checks)
            m["sd_estimate_ratio"] = float(est.std(ddof=1) / sd) if sd > 0 else None
            s["metrics"][name] = m
            ci = ci_all
        s["seconds_per_dataset"] = float(np.mean([sum(r["seconds"].values()) for r in ci]))
        out[kk] = s
    return out


def _f(x, nd=3):
    return "—" if x is None else f"{x:.{nd}f}"


def markdown(summary: dict, confidence: float) -> str:
    lines = []
    rows = list(summary.values())
    if not rows:
        return "(no results)\n"
    nd = rows[0]["datasets"]
    lines.append(f"Coverage of {confidence:.0%} intervals; in brackets the width ratio = mean width / "
                 f"(2·z·true SD). Binomial SE of a coverage of 0.95 over {nd} datasets: "
                 f"{np.sqrt(0.95 * 0.05 / nd):.3f}. `*` = outside [0.92, 0.98], `!` = width ratio > 1.3.\n")

    def cell(mm):
        flag = "" if 0.92 <= mm["coverage"] <= 0.98 else "*"
        wflag = "!" if mm["width_ratio"] is not None and mm["width_ratio"] > 1.3 else ""
        return f"{mm['coverage']:.3f}{flag} ({_f(mm['width_ratio'], 2)}{wflag})"

    if "mknn" in rows[0]["metrics"]:
        lines.append("### mknn (k = 10): coverage (width ratio)\n")
        lines.append("percentile, basic, bca, normal (bootstrap SD) are repalign's methods; normal-jack = estimate ± "
                     "z·jackknife SE from repalign's jackknife; normal-iid and normal-infl are not in repalign "
                     "(SE from the per-item overlaps, see EXPLORATORY in coverage.py).\n")
        lines.append("| n | d | signal | truth | chance | true SD | " + " | ".join(MKNN_METHODS) + " |")
        lines.append("|---|---|---|---|---|---|" + "---|" * len(MKNN_METHODS))
        for s in rows:
            m = s["metrics"]["mknn"]
            lines.append(f"| {s['n']} | {s['d']} | {s['signal']} | {m['truth']:.4f} | {s['chance_mknn']:.4f} | "
                         f"{m['true_sd']:.4f} | " + " | ".join(cell(m["methods"][x]) for x in MKNN_METHODS) + " |")
        lines.append("")
        lines.append("### mknn diagnostics (in units of the true SD unless said otherwise)\n")
        lines.append("centre bias = (mean estimate − truth)/true SD; miss low = interval entirely below the truth, "
                     "miss high = entirely above; fallback rows = distinct rows whose stored lists a resample "
                     "exhausted, summed over datasets.\n")
        lines.append("| n | d | signal | centre bias | boot mean − est | (boot mean − est)/boot SD | boot SD / true SD | "
                     "jack SE / true SD | iid SE / true SD | infl SE / true SD | miss low/high percentile | miss low/high basic | miss low/high normal | "
                     "fallback rows | compare() checks (mismatches) |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for s in rows:
            m = s["metrics"]["mknn"]
            mm = m["methods"]
            ml = " | ".join(f"{mm[x]['miss_low']:.3f}/{mm[x]['miss_high']:.3f}" for x in ("percentile", "basic", "normal"))
            lines.append(f"| {s['n']} | {s['d']} | {s['signal']} | {_f(m['centre_bias'], 2)} | {_f(m['boot_bias'], 2)} | "
                         f"{_f(m['boot_bias_over_boot_sd'], 2)} | {_f(m['boot_sd_ratio'], 2)} | {_f(m['jack_se_ratio'], 2)} | "
                         f"{_f(m['iid_se_ratio'], 2)} | {_f(m['infl_se_ratio'], 2)} | "
                         f"{ml} | {m['fallback_rows']} | {m['compare_checks']} ({m['compare_mismatches']}) |")
        lines.append("")
        lines.extend(_ij_table(rows, cell))
    rows_all, rows = rows, [s for s in rows if "cka" in s["metrics"]]
    if not rows:
        lines.extend(_sizes_table(rows_all))
        return "\n".join(lines) + "\n"
    lines.append("### CKA: jackknife-corrected-normal (default) and plain jackknife-normal (--ci-method jackknife)\n")
    lines.append("Coverage (width ratio); SE ratio = mean half-width / (z·true SD). Truth: biased CKA, the mean at n; "
                 "unbiased CKA, the population value.\n")
    lines.append("| n | d | signal | cka truth | cka true SD | cka corrected | cka plain | cka centre bias | "
                 "cka-unb. truth | cka-unb. true SD | cka-unb. corrected | cka-unb. plain | cka-unb. centre bias |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in rows:
        c, u = s["metrics"]["cka"], s["metrics"]["cka-unbiased"]

        def two(x):
            mm = x["methods"]
            cor = mm.get("jackknife-corrected-normal")
            plain = mm.get("jackknife-normal")
            return f"{cell(cor) if cor else '–'} | {cell(plain) if plain else '–'}"

        lines.append(f"| {s['n']} | {s['d']} | {s['signal']} | {c['truth']:.4f} | {c['true_sd']:.4f} | {two(c)} | "
                     f"{_f(c['centre_bias'], 2)} | {u['truth']:.4f} | {u['true_sd']:.4f} | {two(u)} | "
                     f"{_f(u['centre_bias'], 2)} |")
    lines.append("")
    if any("bootstrap-percentile" in r["metrics"]["cka"]["methods"] for r in rows):
        lines.extend(_cka_bootstrap_table(rows, cell))
    lines.extend(_sizes_table(rows_all))
    return "\n".join(lines) + "\n"


def _sizes_table(rows) -> list[str]:
    """Datasets per setting and metric, the truth's Monte Carlo error, and the seconds per interval dataset."""
    lines = ["| n | d | signal | truth datasets | mknn interval datasets | CKA interval datasets | truth SE / true SD | "
             "rel. SE of the true SD | s / dataset |", "|---|---|---|---|---|---|---|---|---|"]
    for s in rows:
        t = s["truth_datasets"]
        counts = [str(s["metrics"][x]["datasets"]) if x in s["metrics"] else "0" for x in ("mknn", "cka")]
        lines.append(f"| {s['n']} | {s['d']} | {s['signal']} | {t} | {' | '.join(counts)} | {1 / np.sqrt(t):.3f} | "
                     f"{1 / np.sqrt(2 * (t - 1)):.3f} | {s['seconds_per_dataset']:.2f} |")
    lines.append("")
    return lines


def _ij_table(rows, cell) -> list[str]:
    """The default mknn interval (ij) and its parts, in units of the true variance."""
    lines = ["### mknn default (ij): what its width is made of\n",
             "var = the variance the interval uses, max(IJ − null excess, null variance), mean over datasets "
             "(± its SE over datasets); raw IJ, null excess and null variance likewise; all over the true "
             "variance (SD² of the truth datasets, whose own relative SE is in the last table). SD of estimates "
             "= SD of the interval datasets' estimates / true SD. Replicates: IJ of the observed pairing, per "
             "calibration pairing (4 pairings; mean over datasets). Oracle: coverage of estimate ± z·(true SD), "
             "and ± z·(SD of these datasets' estimates): what any interval of the right width would cover here.\n",
             "| n | d | signal | datasets | ij | oracle: true SD / SD of estimates | centre bias | SD of estimates | "
             "var | raw IJ | null excess | null var | replicates |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in rows:
        m = s["metrics"]["mknn"]
        reps = m.get("ij_replicates") or ["?", "?"]
        lines.append(f"| {s['n']} | {s['d']} | {s['signal']} | {m['datasets']} | {cell(m['methods']['ij'])} | "
                     f"{_f(m['oracle_coverage'])} / {_f(m['oracle_coverage_sample_sd'])} | {_f(m['centre_bias'], 2)} | {_f(m['sd_estimate_ratio'], 2)} | {_f(m['ij_var_ratio'], 2)} ± "
                     f"{_f(m['ij_var_ratio_se'], 2)} | {_f(m['ij_raw_var_ratio'], 2)} | {_f(m['ij_excess_ratio'], 2)} | "
                     f"{_f(m['null_var_ratio'], 2)} | {reps[0]}, {reps[1]} |")
    lines.append("")
    return lines


def _cka_bootstrap_table(rows, cell) -> list[str]:
    """Coverage (width ratio) of every CKA bootstrap flavour, and where the replicates sit."""
    lines = ["### CKA: bootstrap flavours (weighted replicates, --ci-method percentile|basic|bca|normal)\n",
             "Coverage (width ratio); boot bias = (mean of the replicates − estimate)/true SD; boot SD ratio = "
             "SD of the replicates / true SD; studentized ≤ = the highest coverage any studentized (bootstrap-t) "
             "interval could reach on these replicates, whatever its standard error (`studentized_bound`); "
             "compare() checks = intervals also computed through repalign.compare (mismatches).\n"]
    head = " | ".join(f"{e} {m}" for e in ("cka", "cka-unb.") for m in CKA_BOOTSTRAP)
    lines.append(f"| n | d | signal | {head} | cka boot bias / SD ratio | cka-unb. boot bias / SD ratio | "
                 "studentized ≤ (cka, cka-unb.) | checks |")
    lines.append("|---|---|---|" + "---|" * (2 * len(CKA_BOOTSTRAP) + 4))
    for s in rows:
        c, u = s["metrics"]["cka"], s["metrics"]["cka-unbiased"]
        if "bootstrap-percentile" not in c["methods"]:  # a setting with the defaults only
            continue
        cells = " | ".join(cell(x["methods"][f"bootstrap-{m}"]) for x in (c, u) for m in CKA_BOOTSTRAP)
        diag = " | ".join(f"{_f(x['boot_bias'], 2)} / {_f(x['boot_sd_ratio'], 2)}" for x in (c, u))
        checks = f"{c['compare_checks'] + u['compare_checks']} ({c['compare_mismatches'] + u['compare_mismatches']})"
        bound = ", ".join(_f(x.get("studentized_bound")) for x in (c, u))
        lines.append(f"| {s['n']} | {s['d']} | {s['signal']} | {cells} | {diag} | {bound} | {checks} |")
    lines.append("")
    return lines


# ---------------------------------------------------------------- driver


def merge_records(base: list[dict], more: list[dict]) -> list[dict]:
    """``base`` with ``more`` merged in by (kind, setting, dataset): a CKA record gains the other run's intervals.

    A defaults-only run (--no-cka-bootstrap) and a bootstrap-only run (--cka-bootstrap-only) of the same
    datasets become one record each. Where both runs have a method, ``more`` wins (the later code).
    """
    index = {(r["kind"], r["key"], r["j"]): r for r in base}
    out = list(base)
    for r in more:
        k = (r["kind"], r["key"], r["j"])
        have = index.get(k)
        if have is None:
            index[k] = r
            out.append(r)
            continue
        if r["kind"] != "ci":
            continue
        for name in CKA_METRICS:
            if name in r:
                mine = have.setdefault(name, {"value": r[name]["value"], "intervals": {}})
                mine["intervals"].update(r[name]["intervals"])
                for field in ("boot_mean_sd", "ci_method"):
                    if field in r[name]:
                        mine[field] = r[name][field]
        if r.get("cka_checks"):
            have["cka_checks"] = r["cka_checks"]
        have["seconds"] = {**have.get("seconds", {}), **{f: v for f, v in r.get("seconds", {}).items() if f != "mknn"}}
    return out


def _load_partial(path: str) -> list[dict]:
    if not path or not os.path.exists(path):
        return []
    out = []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by an interrupted run
                    pass
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small run; unless given: n=256, d=64, 20 datasets, 100 truth datasets, 500 resamples")
    ap.add_argument("--n", type=int, nargs="+", help="default 256 1024")
    ap.add_argument("--d", type=int, nargs="+", help="default 64 768")
    ap.add_argument("--signal", nargs="+", default=list(SIGNALS), choices=list(SIGNALS))
    ap.add_argument("--datasets", type=int, help="datasets with intervals per setting (default 200)")
    ap.add_argument("--truth-datasets", type=int, help="fresh datasets for the truth and true SD (default 500)")
    ap.add_argument("--resamples", type=int, help="bootstrap resamples (default 1000)")
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=MASTER_SEED)
    ap.add_argument("--check-compare", type=int, default=2,
                    help="datasets per setting also run through repalign.compare(mknn) to check the mirroring")
    ap.add_argument("--check-population", type=int, default=0, metavar="N",
                    help="also estimate unbiased CKA at n=N (3 datasets per population) against the closed form")
    ap.add_argument("--decompose", type=int, default=0, metavar="DATASETS",
                    help="also split the bootstrap variance of mknn (weights vs. neighbour sets) on this many "
                         "datasets per setting, in units of the true variance")
    ap.add_argument("--cka-datasets", type=int, default=None, metavar="N",
                    help="CKA intervals (default and bootstrap flavours) on the first N interval datasets only "
                         "(default: all); 0 = mknn only")
    ap.add_argument("--cka-bootstrap-only", action="store_true",
                    help="CKA's bootstrap flavours only (merge with a --no-cka-bootstrap run's records)")
    ap.add_argument("--no-cka-bootstrap", action="store_true",
                    help="CKA's default and jackknife intervals only, not the bootstrap flavours")
    ap.add_argument("--skip-mknn", action="store_true",
                    help="CKA intervals only (mknn point values are still drawn for the truth)")
    ap.add_argument("--metrics", default=None,
                    help="comma-separated metrics whose --method interval to study instead of mknn and CKA "
                         "(any registered metric, through its spec with default parameters)")
    ap.add_argument("--method", default="group-jackknife", choices=["group-jackknife"],
                    help="the interval candidate studied for --metrics: estimate ± z·SE, SE from the "
                         "delete-a-group jackknife (G = 20)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=10, help="datasets per task")
    ap.add_argument("--partial", default=None, help="directory for per-dataset records (resumable)")
    ap.add_argument("--out", default=None, help="JSON dump of the summary and settings")
    ap.add_argument("--merge", nargs="+", default=[], metavar="DIR",
                    help="also read these --partial directories' records, merged by dataset (with --summary-only)")
    ap.add_argument("--summary-only", action="store_true", help="tabulate the --partial records, run nothing")
    args = ap.parse_args(argv)
    defaults = ({"n": [256], "d": [64], "datasets": 20, "truth_datasets": 100, "resamples": 500} if args.quick else
                {"n": [256, 1024], "d": [64, 768], "datasets": 200, "truth_datasets": 500, "resamples": 1000})
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.cka_datasets is None:
        args.cka_datasets = args.datasets

    settings = [(n, d, s) for n in args.n for d in args.d for s in args.signal]
    if args.metrics:
        return gj_main(args, settings)
    partial = None
    records = []
    if args.partial:
        os.makedirs(args.partial, exist_ok=True)
        tag = f"seed{args.seed}_B{args.resamples}_conf{args.confidence}" + ("_cka" if args.skip_mknn else "")
        partial = os.path.join(args.partial, f"records_{tag}.jsonl")
        records = [r for r in _load_partial(partial) if r.get("kind") in ("truth", "ci")]
        for extra in args.merge:  # other runs' records of the same datasets (--summary-only)
            more = _load_partial(os.path.join(extra, f"records_{tag}.jsonl"))
            records = merge_records(records, [r for r in more if r.get("kind") in ("truth", "ci")])
    done = {(r["kind"], r["key"], r["j"]) for r in records}

    tasks = []
    for n, d, s in settings:
        kk = key(n, d, s)
        for j0 in range(0, args.truth_datasets, 25):  # small tasks: a stopped run loses little
            j1 = min(j0 + 25, args.truth_datasets)
            if any(("truth", kk, j) not in done for j in range(j0, j1)):
                tasks.append(("truth", (n, d, s, j0, j1, args.seed)))
        for j0 in range(0, args.datasets, args.chunk):
            j1 = min(j0 + args.chunk, args.datasets)
            if any(("ci", kk, j) not in done for j in range(j0, j1)):
                tasks.append(("ci", (n, d, s, j0, j1, args.seed, args.resamples, args.confidence, args.check_compare,
                                     args.skip_mknn, args.cka_datasets, not args.no_cka_bootstrap,
                                     args.cka_bootstrap_only)))
    # Largest problems first, so the two workers finish together.
    tasks.sort(key=lambda t: (t[0] != "truth", -t[1][0] * t[1][1]))
    if args.summary_only:
        tasks = []

    t0 = time.time()
    print(f"# {len(settings)} settings, {len(tasks)} tasks, jobs={args.jobs}", file=sys.stderr, flush=True)
    fh = open(partial, "a") if partial else None  # noqa: SIM115 - appended to as results arrive, closed below

    def run(kind_args):
        kind, a = kind_args
        return truth_task(a) if kind == "truth" else ci_task(a)

    if args.jobs > 1:
        pool = mp.get_context("fork").Pool(args.jobs, initializer=_init_worker)
        results = pool.imap_unordered(_run_task, tasks)
    else:
        _init_worker()
        results = (run(t) for t in tasks)
    for i, recs in enumerate(results):
        keyed = {(r["kind"], r["key"], r["j"]) for r in recs}
        recs = [r for r in recs if (r["kind"], r["key"], r["j"]) not in done]
        done |= keyed
        records.extend(recs)
        if fh:
            for r in recs:
                fh.write(json.dumps(r) + "\n")
            fh.flush()
        if recs:
            print(f"# [{time.time() - t0:7.0f}s] task {i + 1}/{len(tasks)}: {recs[0]['kind']} {recs[0]['key']} "
                  f"j={recs[0]['j']}..{recs[-1]['j']}", file=sys.stderr, flush=True)
    if args.jobs > 1:
        pool.close()
        pool.join()
    if fh:
        fh.close()

    pop = []
    if args.check_population:
        pops = [(d, s, args.check_population, 3, args.seed) for d in args.d for s in args.signal]
        if args.jobs > 1:
            with mp.get_context("fork").Pool(args.jobs, initializer=_init_worker) as pool:
                pop = pool.map(population_check, pops)
        else:
            pop = [population_check(p) for p in pops]

    summary = summarise(records, settings, args.confidence, args.seed)
    text = markdown(summary, args.confidence)
    if pop:
        text += "\n### Unbiased CKA: closed-form population value vs. estimates at large n\n\n"
        text += "| d | signal | closed form | n | estimates |\n|---|---|---|---|---|\n"
        for p in pop:
            text += (f"| {p['d']} | {p['signal']} | {p['closed_form']:.5f} | {p['n']} | "
                     + ", ".join(f"{v:.5f}" for v in p["large_n"]) + " |\n")
    if args.decompose and not args.skip_mknn:
        sd = {kk: v["metrics"]["mknn"]["true_sd"] for kk, v in summary.items()}
        text += decompose([st for st in settings if key(*st) in sd], sd, args.decompose, args.resamples, args.seed,
                          args.jobs)
    print(text)
    elapsed = time.time() - t0
    print(f"# elapsed {elapsed:.0f}s", file=sys.stderr)
    if args.out:
        meta = {"date": _dt.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv),
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "elapsed_seconds": elapsed,
                "rank": RANK, "k": K, "signals": SIGNALS, "master_seed": args.seed,
                "seeds": "population: SeedSequence([seed, 1, d, signal_index]); truth dataset j: "
                         "SeedSequence([seed, 2, n, d, signal_index, j]); interval dataset j: "
                         "SeedSequence([seed, 3, n, d, signal_index, j]); compare seed: first uint64 of "
                         "SeedSequence([seed, 4, n, d, signal_index, j]) >> 1",
                "args": vars(args)}
        with open(args.out, "w") as fo:
            json.dump({"meta": meta, "summary": summary, "population_check": pop}, fo, indent=1)
    return 0


def _run_task(kind_args):
    kind, a = kind_args
    return {"truth": truth_task, "ci": ci_task, "gtruth": gj_truth_task, "gci": gj_ci_task}[kind](a)


if __name__ == "__main__":
    sys.exit(main())
