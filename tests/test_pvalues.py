"""CKA p-values without full permutation runs: Cantelli's bound, Besag–Clifford stopping, batched products."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

from repalign import stats
from repalign.cli import app
from repalign.metrics import cka as _cka
from repalign.metrics.base import PairData
from repalign.metrics.cka_linear import SPECS
from repalign.report.json import report_schema
from repalign.results import UncertaintySettings

BOUND, SEQUENTIAL, PERMUTATION = stats.METHOD_BOUND, stats.METHOD_SEQUENTIAL, stats.METHOD_PERMUTATION


# --------------------------------------------------------------------------- dense references (formulas.md §3)


def _hsic_biased(K: np.ndarray, L: np.ndarray) -> np.ndarray:
    """tr(K H L H) for K (n, n) and a stack L (..., n, n): H K H is formed once."""
    n = K.shape[0]
    H = np.eye(n) - 1.0 / n
    Kc = H @ K @ H
    return np.einsum("ij,...ji->...", Kc, L)


def _hsic_unbiased(K: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Song et al. (2012): [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1]/(n(n−3)), K̃ = K off-diagonal."""
    n = K.shape[0]
    Kt = K - np.diag(np.diag(K))
    Lt = L * (1 - np.eye(n))
    tr = np.einsum("ij,...ji->...", Kt, Lt)
    ones = Kt.sum() * Lt.sum(axis=(-2, -1)) / ((n - 1) * (n - 2))
    cross = np.einsum("i,...ij,...j->...", Kt.sum(axis=0), Lt, np.ones(n))
    return (tr + ones - 2 / (n - 2) * cross) / (n * (n - 3))


def _all_cka(X: np.ndarray, Y: np.ndarray, unbiased: bool) -> np.ndarray:
    """CKA of X against Y with its rows permuted, for every permutation (the identity first)."""
    n = X.shape[0]
    hsic = _hsic_unbiased if unbiased else _hsic_biased
    K, L = X @ X.T, Y @ Y.T
    perms = np.array(list(itertools.permutations(range(n))))
    Lp = L[perms[:, :, None], perms[:, None, :]]  # (n!, n, n): L^π_ij = L_{π(i)π(j)}
    return hsic(K, Lp) / np.sqrt(hsic(K, K) * hsic(L, L))


@pytest.mark.parametrize("n", [7, 8])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("unbiased", [False, True])
def test_cantelli_bound_is_never_below_the_exact_permutation_p_value(n, seed, unbiased):
    """Every one of the n! pairings, brute force: the bound from the exact moments is ≥ P_π(T ≥ observed)."""
    rng = np.random.default_rng(100 * n + seed)
    X = rng.standard_normal((n, 3))
    Y = X @ rng.standard_normal((3, 4)) * (1 + seed) + rng.standard_normal((n, 4))  # signal grows with seed
    values = _all_cka(X, Y, unbiased)
    observed = values[0]  # itertools yields the identity first
    # Near-ties (rounding in a sum of a few dozen products, ~1e-15) count as exceedances: the exact p-value
    # can only grow, so the assertion below gets stricter, not looser.
    exact = np.mean(values >= observed - 1e-12)
    st = _cka.cross_stats(X, Y)
    mean, sd = (stats.unbiased_cka_null if unbiased else stats.biased_cka_null)(st)
    # The closed-form moments are the enumerated ones (as tests/test_nulls.py checks more widely).
    assert mean == pytest.approx(values.mean(), abs=1e-12) and sd == pytest.approx(values.std(), rel=1e-9)
    bound = stats.cantelli_bound(observed, mean, sd)
    assert bound is not None, "the data carry signal, so the observed value is above the mean"
    assert bound >= exact
    # The bound is informative here, not trivially near 1, for the larger signals.
    if seed >= 2:
        assert bound < 0.5


def test_cantelli_quantile_bounds_the_exact_quantile():
    """μ + σ√19 is at least the exact 95% quantile of the enumerated null (the calibrated score's τ)."""
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    for unbiased in (False, True):
        values = np.sort(_all_cka(X, Y, unbiased))
        mean, sd = (stats.unbiased_cka_null if unbiased else stats.biased_cka_null)(_cka.cross_stats(X, Y))
        assert stats.cantelli_quantile(mean, sd) >= values[math.ceil(0.95 * values.size) - 1]


def test_cantelli_bound_says_nothing_below_the_mean():
    assert stats.cantelli_bound(0.1, 0.2, 0.05) is None
    assert stats.cantelli_bound(0.3, 0.2, 0.0) is None
    assert stats.cantelli_bound(0.3, None, 0.1) is None
    assert stats.cantelli_bound(0.3, 0.2, 0.1) == pytest.approx(0.01 / (0.01 + 0.01))


# --------------------------------------------------------------------------- Besag–Clifford stopping


def test_sequential_stops_at_the_h_th_exceedance_whatever_the_batch():
    """p = h/L at the draw that brings the h-th value ≥ observed; the batch size does not change it."""
    values = np.random.default_rng(2).uniform(size=500)
    observed = 0.7
    L = int(np.flatnonzero(values >= observed)[stats.STOP_AFTER - 1]) + 1  # independent count by hand

    for batch in (1, 3, 8, 64):
        it = iter(values)
        run = stats.sequential_p_value(lambda m, it=it: np.array([next(it) for _ in range(m)]), observed, 500,
                                       batch=batch)
        assert run.stopped and run.null.size == L and run.p_value == stats.STOP_AFTER / L
        np.testing.assert_array_equal(run.null, values[:L])


def test_sequential_without_stopping_is_the_plain_p_value():
    values = np.random.default_rng(3).uniform(size=99)
    observed = np.sort(values)[-4]  # 4 values ≥ it: fewer than h, so all 99 are drawn
    it = iter(values)
    run = stats.sequential_p_value(lambda m: np.array([next(it) for _ in range(m)]), observed, 99)
    assert not run.stopped and run.p_value == (1 + 4) / 100 and run.null.size == 99


def _null_p_values(count: int, n: int, budget: int) -> tuple[np.ndarray, list[str]]:
    """p-values of cka / cka-unbiased (alternating) through the metric on independent X, Y."""
    rng = np.random.default_rng(77)
    ps, methods = [], []
    for i in range(count):
        X, Y = rng.standard_normal((n, 3)), rng.standard_normal((n, 2))
        u = UncertaintySettings(resamples=0, permutations=budget, seed=i, permutations_explicit=True)
        name = ("cka", "cka-unbiased")[i % 2]
        res = SPECS[name].compute(PairData(X, Y, k=3, distance="cosine", labels=("x", "y"), uncertainty=u), {})
        ps.append(res.p_value)
        methods.append(res.p_method)
    return np.asarray(ps), methods


def test_sequential_p_values_are_valid_under_the_null():
    """Independent X and Y: P(p ≤ α) ≤ α, and the p-values are uniform at the values they can take.

    The p-value's possible values are h/L (L = h … P) and (1 + g)/(P + 1) (g < h); at each of them the exact
    distribution function equals the value (Besag & Clifford 1991), between them it steps below the diagonal,
    so the comparison is made at those values only.
    """
    count, budget = 1000, 99
    ps, methods = _null_p_values(count, n=16, budget=budget)
    assert set(methods) <= {SEQUENTIAL, PERMUTATION, BOUND}
    assert methods.count(SEQUENTIAL) > count // 2  # under the null most runs stop early
    for alpha in (0.05, 0.1):
        # Slack: three binomial SDs of a rate α over `count` datasets (0.021 and 0.028), so a valid test
        # fails this by chance with probability about 0.001.
        assert np.mean(ps <= alpha + 1e-12) <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / count)
    h = stats.STOP_AFTER
    reachable = sorted({h / L for L in range(h, budget + 1)} | {(1 + g) / (budget + 1) for g in range(h)})
    gap = max(abs(np.mean(ps <= a + 1e-12) - a) for a in reachable)
    # Dvoretzky–Kiefer–Wolfowitz: P(sup |F_N − F| > ε) ≤ 2·exp(−2Nε²) = 0.001 at ε = √(ln 2000/(2N)) = 0.062.
    assert gap <= math.sqrt(math.log(2000) / (2 * count))


# --------------------------------------------------------------------------- batched products


@pytest.mark.parametrize("shape", [(50, 3, 4), (300, 40, 30), (30, 20, 20), (120, 7, 9)])
def test_batched_values_equal_the_one_by_one_null(shape):
    """One product per batch (several chunks of 8 here) against cka_permutation_null's one product each."""
    n, d1, d2 = shape
    rng = np.random.default_rng(n + d1)
    X = rng.standard_normal((n, d1))
    Y = X[:, :1] @ rng.standard_normal((1, d2)) + rng.standard_normal((n, d2))
    st = _cka.cross_stats(X, Y)
    perms = list(stats.permutations(np.random.SeedSequence(1), n, 21))
    permuter = stats.CkaPermuter(X, Y, st)
    for unbiased in (False, True):
        one = stats.cka_permutation_null(X, Y, st, perms, unbiased=unbiased)
        # The same sums; BLAS may tile a wider product differently, which moves the last bit (seen: 7e-18).
        np.testing.assert_allclose(permuter.values(perms, unbiased=unbiased), one, rtol=0, atol=1e-12)
    # Asked again (as cka-unbiased asks after cka), the kept sums are reused and give the same numbers.
    np.testing.assert_array_equal(permuter.values(perms[::-1], unbiased=True),
                                  permuter.values(perms, unbiased=True)[::-1])


def test_cka_and_cka_unbiased_share_the_pairs_products(monkeypatch):
    """One cross-product per permutation for both estimators of one pair."""
    calls = []
    real = stats.CkaPermuter._frobenius
    monkeypatch.setattr(stats.CkaPermuter, "_frobenius", lambda self, chunk: calls.append(len(chunk)) or
                        real(self, chunk))
    rng = np.random.default_rng(9)
    X, Y = rng.standard_normal((40, 12)), rng.standard_normal((40, 11))
    u = UncertaintySettings(resamples=0, permutations=60, seed=1, permutations_explicit=True)
    p = PairData(X, Y, k=3, distance="cosine", labels=("x", "y"), uncertainty=u)
    first = SPECS["cka"].compute(p, {})
    drawn_once = sum(calls)
    second = SPECS["cka-unbiased"].compute(p, {})
    assert first.p_method in (SEQUENTIAL, PERMUTATION) and second.p_method in (SEQUENTIAL, PERMUTATION)
    assert sum(calls) - drawn_once == max(0, second.permutations - first.permutations)


# --------------------------------------------------------------------------- the report


def _cli_doc(write, X, Y, *extra: str) -> dict:
    a, b = write.npy(X, "a.npy"), write.npy(Y, "b.npy")
    r = CliRunner().invoke(app, ["compare", a, b, "-f", "json", "--seed", "2", "--resamples", "0", *extra])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, report_schema())
    return doc


def _knn_lists(X: np.ndarray, k: int) -> np.ndarray:
    """Dense reference: each row's k most cosine-similar other rows, ties by index."""
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = U @ U.T
    np.fill_diagonal(S, -np.inf)
    return np.array([np.lexsort((np.arange(len(S)), -row))[:k] for row in S])


@pytest.mark.parametrize("seed", range(6))
def test_mknn_cantelli_bound_is_never_below_the_exact_permutation_p_value(seed):
    """mknn at n = 8, k = 2, all 8! pairings: the bound from its exact null mean and SD is ≥ the exact p-value."""
    n, k = 8, 2
    rng = np.random.default_rng(300 + seed)
    X = rng.standard_normal((n, 3))
    Y = X + rng.standard_normal((n, 3)) * (0.2 + 0.3 * seed)  # from strong to weak shared structure
    A, B = _knn_lists(X, k), _knn_lists(Y, k)
    values = []
    for perm in itertools.permutations(range(n)):  # identity first; B's row i becomes row perm[i]
        Bp = _knn_lists(Y[list(perm)], k)
        values.append(np.mean([len(set(A[i]) & set(Bp[i])) for i in range(n)]) / k)
    values = np.array(values)
    observed, exact = values[0], np.mean(values >= values[0])
    mean, sd = stats.mknn_null(A, B)
    assert mean == pytest.approx(values.mean(), abs=1e-12) and sd == pytest.approx(values.std(), rel=1e-9)
    bound = stats.cantelli_bound(observed, mean, sd)
    assert bound is None or bound >= exact
    assert seed > 0 or bound is not None  # the strongest case is above the mean, so the bound is used


def test_p_method_for_every_metric_in_json(write):
    """Strong signal: the bound for mknn and both CKAs; no signal: stopped permutations."""
    rng = np.random.default_rng(4)
    z = rng.standard_normal((150, 3))
    X = z @ rng.standard_normal((3, 10)) + 0.3 * rng.standard_normal((150, 10))
    Y = z @ rng.standard_normal((3, 8)) + 0.3 * rng.standard_normal((150, 8))
    strong = {m["name"]: m for m in _cli_doc(write, X, Y, "-m", "mknn,cka,cka-unbiased", "--permutations",
                                             "200")["metrics"]}
    for name in ("mknn", "cka", "cka-unbiased"):
        m = strong[name]
        assert m["p_method"] == BOUND and m["permutations"] == 0 and 0 < m["p_value"] < 1 / 201
        assert 0 <= m["calibrated"] <= 1
    none = {m["name"]: m for m in _cli_doc(write, X, rng.standard_normal((150, 8)), "-m",
                                           "mknn,cka,cka-unbiased", "--permutations", "200")["metrics"]}
    for name in ("mknn", "cka", "cka-unbiased"):
        m = none[name]
        assert m["p_method"] == SEQUENTIAL and m["permutations"] < 200
        assert m["p_value"] == pytest.approx(stats.STOP_AFTER / m["permutations"])
    off = _cli_doc(write, X, Y, "-m", "mknn,cka", "--permutations", "0")["metrics"]
    assert all("p_method" in m and m["p_method"] is None and m["p_value"] is None for m in off)
    default = {m["name"]: m for m in _cli_doc(write, X, Y, "-m", "mknn,cka")["metrics"]}
    assert default["mknn"]["p_method"] == BOUND and default["cka"]["p_method"] is None


def test_sweep_p_method_is_a_stopped_permutation_run(write):
    """A sweep's max-over-pairs null: no bound (the moments are one pair's), but sequential stopping."""
    rng = np.random.default_rng(6)
    X, Y = rng.standard_normal((80, 5)), rng.standard_normal((80, 4))
    layers = np.stack([X, 2 * X + rng.standard_normal((80, 5))], axis=1)
    doc = _cli_doc(write, layers, Y, "-m", "cka,cka-unbiased", "--permutations", "300")
    for m in doc["metrics"]:
        assert m["p_method"] == SEQUENTIAL and m["permutations"] < 300
        assert m["p_value"] == pytest.approx(stats.STOP_AFTER / m["permutations"])


def test_batched_permutations_do_not_depend_on_thread_count(tmp_path):
    """No signal, so CKA's permutations run (stopped early) through the batched products: 1 and 2 BLAS threads
    give the same report to the last bit."""
    rng = np.random.default_rng(8)
    np.save(tmp_path / "x.npy", rng.standard_normal((2000, 200)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.standard_normal((2000, 150)).astype(np.float32))
    argv = ["compare", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "-m", "cka,cka-unbiased",
            "--resamples", "0", "--permutations", "200", "-f", "json", "--seed", "3"]
    docs = []
    for threads in (1, 2):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads), PYTHONPATH=str(Path(__file__).parent.parent))
        r = subprocess.run([sys.executable, "-m", "repalign", *argv], env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        doc.pop("timing")
        docs.append(doc)
    assert all(m["p_method"] == SEQUENTIAL for m in docs[0]["metrics"])
    assert docs[0] == docs[1]
