"""Resampling machinery against explicit materialisation and brute force."""

import math

import numpy as np
import pytest
import reference as ref
from conftest import make_pair

from repalign import stats
from repalign.neighbors import knn


def materialised_mknn(X, Y, w, k, distance="cosine"):
    """Build the resample row by row (copies adjacent), search with the query's own copies excluded."""
    idx = np.repeat(np.arange(len(w)), w)
    SA = ref.similarity(X, distance)[np.ix_(idx, idx)]
    SB = ref.similarity(Y, distance)[np.ix_(idx, idx)]
    total = 0
    for r in range(idx.size):
        cands = np.flatnonzero(idx != idx[r])
        na = cands[np.lexsort((cands, -SA[r, cands]))[:k]]
        nb = cands[np.lexsort((cands, -SB[r, cands]))[:k]]
        total += len(set(na) & set(nb))
    return total / (idx.size * k)


def resampler(X, Y, k, K, distance="cosine"):
    full = {"a": knn(X, X.shape[0] - 1, distance), "b": knn(Y, Y.shape[0] - 1, distance)}
    return stats.KnnResampler(knn(X, K, distance), knn(Y, K, distance), k,
                              full_list=lambda s, i, depth: full[s][i, :depth])


@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_replicates_equal_materialised_resamples(rng, distance):
    X, Y = make_pair(rng, n=60, d1=5, d2=6)
    rs = resampler(X, Y, k=4, K=9, distance=distance)
    assert rs.replicate(np.ones(60, dtype=np.int32)) == pytest.approx(ref.mutual_knn(X, Y, 4, distance), abs=1e-12)
    seed = np.random.SeedSequence(7)
    for w in next(stats.resample_weights(seed, 60, 6)):
        assert w.sum() == 60
        assert rs.replicate(w) == pytest.approx(materialised_mknn(X, Y, w, 4, distance), abs=1e-12)


def test_short_lists_fall_back_exactly(rng):
    """K barely above k: many rows run out of slots and must use the complete list."""
    X, Y = make_pair(rng, n=40, d1=3, d2=3)
    rs = resampler(X, Y, k=5, K=6)
    w = np.zeros(40, dtype=np.int32)
    w[::4] = 4  # only every 4th item present: lists of 6 hold too few present items
    assert rs.replicate(w) == pytest.approx(materialised_mknn(X, Y, w, 5), abs=1e-12)


def test_jackknife_equals_leave_one_out(rng):
    X, Y = make_pair(rng, n=45, d1=4, d2=7)
    k = 5
    rs = stats.KnnResampler(knn(X, 12), knn(Y, 12), k)
    expected = [ref.mutual_knn(np.delete(X, i, 0), np.delete(Y, i, 0), k) for i in range(45)]
    assert np.allclose(rs.jackknife(), expected, rtol=0, atol=1e-12)


def test_permutation_relabelling_equals_recomputation(rng):
    X, Y = make_pair(rng, n=50, d1=4, d2=4)
    perms = list(stats.permutations(np.random.SeedSequence(3), 50, 5))
    got = stats.knn_permutation_null(knn(X, 6), knn(Y, 6), perms)
    expected = [ref.mutual_knn(X, Y[p], 6) for p in perms]
    assert np.allclose(got, expected, rtol=0, atol=1e-12)


def test_weights_are_reproducible_and_multinomial():
    a = np.vstack(list(stats.resample_weights(np.random.SeedSequence(1), 1000, 200)))
    b = np.vstack(list(stats.resample_weights(np.random.SeedSequence(1), 1000, 200)))
    assert np.array_equal(a, b) and (a.sum(axis=1) == 1000).all()
    # Each count is Binomial(n, 1/n): mean 1, variance (1 − 1/n); 200·1000 draws.
    assert a.mean() == pytest.approx(1.0, abs=1e-12)
    assert a.var() == pytest.approx(1 - 1 / 1000, abs=0.02)


def test_p_value_and_calibrated():
    null = np.array([0.1, 0.2, 0.3, 0.4])
    assert stats.p_value(0.35, null) == 2 / 5
    assert stats.p_value(0.9, null) == 1 / 5
    # ⌈0.95·5⌉ = 5th smallest of {0.5, 0.1..0.4} = 0.5 → (0.5 − 0.5)/(1 − 0.5) = 0.
    assert stats.calibrated_score(0.5, null) == 0.0
    null20 = np.linspace(0, 0.19, 20)  # ⌈0.95·21⌉ = 20th smallest of 21 values = 0.19
    assert stats.calibrated_score(0.6, null20) == pytest.approx((0.6 - 0.19) / 0.81)


def test_intervals_closed_forms():
    r = np.arange(1, 1001, dtype=float) / 1000
    lo, hi = stats.interval(0.5, "percentile", 0.9, replicates=r)
    assert (lo, hi) == pytest.approx((np.quantile(r, 0.05), np.quantile(r, 0.95)))
    blo, bhi = stats.interval(0.6, "basic", 0.9, replicates=r)
    assert (blo, bhi) == pytest.approx((1.2 - hi, 1.2 - lo))
    jack = np.array([1.0, 2.0, 3.0, 4.0])
    se = np.sqrt(3 / 4 * 5.0)
    assert stats.interval(2.5, "normal", 0.95, jack=jack) == pytest.approx((2.5 - 1.959963984540 * se,
                                                                             2.5 + 1.959963984540 * se))
    # BCa with symmetric replicates centred on the estimate and a symmetric jackknife is the percentile interval.
    sym = np.concatenate([-r, r])
    assert stats.interval(0.0, "bca", 0.9, replicates=sym, jack=np.array([-1.0, 0.0, 1.0])) == pytest.approx(
        stats.interval(0.0, "percentile", 0.9, replicates=sym))


@pytest.mark.parametrize("shape", [(30, 4, 6), (25, 40, 50), (40, 8, 60)])
def test_cka_jackknife_equals_leave_one_out(rng, shape):
    from repalign.metrics import cka_jackknife

    n, d1, d2 = shape
    X, Y = make_pair(rng, n=n, d1=d1, d2=d2)
    X += 3.0  # an offset, so that re-centring after a deletion matters
    biased, unbiased = cka_jackknife.jackknife(X, Y)
    eb = [ref.cka(np.delete(X, i, 0), np.delete(Y, i, 0)) for i in range(n)]
    eu = [ref.cka(np.delete(X, i, 0), np.delete(Y, i, 0), unbiased=True) for i in range(n)]
    assert np.allclose(biased, eb, rtol=0, atol=1e-10)
    assert np.allclose(unbiased, eu, rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape", [(30, 3, 5), (20, 40, 50)])
def test_cka_permutation_null_equals_recomputation(rng, shape):
    from repalign.metrics import cka

    n, d1, d2 = shape
    X, Y = make_pair(rng, n=n, d1=d1, d2=d2)
    st = cka.cross_stats(X, Y)
    perms = list(stats.permutations(np.random.SeedSequence(5), n, 4))
    for unbiased in (False, True):
        got = stats.cka_permutation_null(X, Y, st, perms, unbiased=unbiased)
        expected = [ref.cka(X, Y[p], unbiased=unbiased) for p in perms]
        assert np.allclose(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape", [(16, 3, 5), (14, 30, 40), (24, 6, 50)])
def test_cka_delete2_sum_equals_all_pairs_recomputed(rng, shape):
    """Σ_{i<j} (T − T₍ᵢ₎ − T₍ⱼ₎ + T₍ᵢⱼ₎)² with every delete-2 value recomputed from scratch by the reference."""
    from repalign.metrics import cka, cka_jackknife

    n, d1, d2 = shape
    X, Y = make_pair(rng, n=n, d1=d1, d2=d2)
    X += 3.0
    Y -= 2.0
    st = cka.cross_stats(X, Y, per_row=True)
    loo = cka_jackknife.jackknife(X, Y, st)
    values = (ref.cka(X, Y), ref.cka(X, Y, unbiased=True))
    expected = np.zeros(2)
    for i in range(n):
        for j in range(i + 1, n):
            Xd, Yd = np.delete(X, [i, j], 0), np.delete(Y, [i, j], 0)
            for e, unb in enumerate((False, True)):
                expected[e] += (values[e] - loo[e][i] - loo[e][j] + ref.cka(Xd, Yd, unbiased=unb)) ** 2
    biased, unbiased, exact = cka_jackknife.second_order(X, Y, st, values, loo, seed=0)
    assert exact
    assert biased == pytest.approx(expected[0], rel=1e-9)
    assert unbiased == pytest.approx(expected[1], rel=1e-9)


def test_cka_delete2_sum_from_a_row_subset_is_unbiased(rng):
    """Above ``rows`` items the sum comes from all pairs among random rows; averaged over draws it is the full sum."""
    from repalign.metrics import cka, cka_jackknife

    n = 160
    X, Y = make_pair(rng, n=n, d1=5, d2=7)
    st = cka.cross_stats(X, Y, per_row=True)
    loo = cka_jackknife.jackknife(X, Y, st)
    values = (ref.cka(X, Y), ref.cka(X, Y, unbiased=True))
    full = cka_jackknife.second_order(X, Y, st, values, loo, seed=0)
    draws = np.array([cka_jackknife.second_order(X, Y, st, values, loo, seed=s, rows=60)[:2] for s in range(200)])
    assert full[2] and not cka_jackknife.second_order(X, Y, st, values, loo, seed=0, rows=60)[2]
    # Each draw uses the 1770 pairs among 60 of the 160 rows (SD of one draw ≈ 25% of the full sum here);
    # the mean of 200 draws has an SD of ≈ 2%.
    assert draws.mean(axis=0) == pytest.approx(full[:2], rel=0.08)
    assert draws.std(axis=0).max() > 0  # the draws do differ: the subset is random


def test_ij_replicates_are_the_bootstrap_replicates(rng):
    X, Y = make_pair(rng, n=70, d1=5, d2=6)
    rs = resampler(X, Y, 5, 15)
    seed = np.random.SeedSequence(11)
    reps, _ = rs.bootstrap_ij(stats.resample_weights(seed, 70, 50))
    assert np.array_equal(reps, rs.bootstrap(stats.resample_weights(seed, 70, 50)))


def test_an_items_weight_moves_only_its_own_and_its_holders_overlaps(rng):
    """The locality bootstrap_ij relies on: w_i changes o_a only for a = i and the a whose stored lists hold i."""
    n, k, K = 60, 4, 12
    X, Y = make_pair(rng, n=n, d1=4, d2=5)
    rs = resampler(X, Y, k, K)
    w = next(stats.resample_weights(np.random.SeedSequence(3), n, 1))[0].astype(np.int64)
    for i in range(0, n, 7):
        holders = {i} | {a for a in range(n) if i in rs.lists_a[a] or i in rs.lists_b[a]}
        for wi in (0, 1, 3):
            w2 = w.copy()
            w2[i] = wi
            moved = np.flatnonzero(rs.overlaps(w2) != rs.overlaps(w))
            assert set(moved.tolist()) <= holders


def test_local_ij_variance_equals_the_textbook_estimate(rng):
    """Σ_i cov*(w_i, T*)² estimated from every item (Efron 2014), Monte Carlo bias removed as in Wager, Hastie &
    Efron 2014, against bootstrap_ij's local estimate: both are unbiased for the same quantity."""
    n, k, B = 80, 5, 6000
    X, Y = make_pair(rng, n=n, d1=4, d2=5, signal=1.5)
    rs = resampler(X, Y, k, 20)
    W = np.concatenate(list(stats.resample_weights(np.random.SeedSequence(8), n, B)))
    reps = np.array([rs.replicate(w) for w in W])
    c = (W - W.mean(axis=0)).T @ (reps - reps.mean()) / (B - 1)
    textbook = float(np.sum(c**2) - n * np.sum((reps - reps.mean()) ** 2) / B**2)
    _, local = rs.bootstrap_ij(stats.resample_weights(np.random.SeedSequence(9), n, B))
    # Monte Carlo SD of the textbook estimate here: about √(2n)/B·Var(T*) + ... ≈ 3% of it.
    assert local == pytest.approx(textbook, rel=0.15)
    assert 0 < local < np.var(reps)  # the IJ is the linear part of the bootstrap variance


@pytest.mark.parametrize("signal", [0.0, 3.0])
def test_local_ij_variance_equals_its_dense_formula(rng, signal):
    """bootstrap_ij's variance against its formula computed densely: S_i = v_i + Σ over the items a whose
    stored lists (either) hold i of v_a, with v = w·o; without signal most v_a are 0 (the sparse path), with
    strong signal most are not (the gather path)."""
    n, k, K, B = 200, 5, 12, 40
    X, Y = make_pair(rng, n=n, d1=6, d2=6, signal=signal)
    rs = resampler(X, Y, k, K)
    W = np.concatenate(list(stats.resample_weights(np.random.SeedSequence(5), n, B)))
    hold = np.zeros((n, n))
    for a in range(n):
        hold[a, np.union1d(rs.lists_a[a], rs.lists_b[a])] = 1.0
    full = np.array([len(set(rs.lists_a[i, :k]) & set(rs.lists_b[i, :k])) for i in range(n)], dtype=float)
    centre = full + hold.T @ full
    u = np.array([(w - 1.0) * (w * rs.overlaps(w) + hold.T @ (w * rs.overlaps(w)) - centre) for w in W])
    coef = u.mean(axis=0)
    noise = ((u * u).mean(axis=0) - coef**2) / (B - 1)
    expected = (np.sum(coef**2 - noise) - n * coef.mean() ** 2) / (n * k) ** 2
    sparse = np.mean([np.count_nonzero(w * rs.overlaps(w)) < n / 4 for w in W])
    assert sparse == (1.0 if signal == 0 else 0.0)  # each case takes the path it is meant to test
    _, got = rs.bootstrap_ij(iter([W]))
    assert got == pytest.approx(expected, rel=1e-9)


def test_relabelled_resampler_is_the_permuted_datas(rng):
    n, k, K = 50, 4, 12
    X, Y = make_pair(rng, n=n, d1=4, d2=5)
    perm = np.random.default_rng(5).permutation(n)
    rs = resampler(X, Y, k, K).relabelled(perm)
    direct = resampler(X, Y[perm], k, K)
    assert np.array_equal(rs.lists_b, direct.lists_b)
    # The fallback list of a permuted row, too (depth beyond the stored K).
    assert np.array_equal(rs.full_list("b", 7, 30), direct.full_list("b", 7, 30))


def test_calibrated_ij_variance_is_reproducible_and_consistent(rng):
    X, Y = make_pair(rng, n=90, d1=5, d2=6)
    rs = resampler(X, Y, 5, 15)
    from repalign.stats import nulls

    sd = nulls.mknn_null(rs.lists_a[:, :5], rs.lists_b[:, :5])[1]
    args = (np.random.SeedSequence(1), 200, np.random.SeedSequence(2), sd)
    one, two = stats.knn_ij_variance(rs, *args), stats.knn_ij_variance(rs, *args)
    assert one.variance == two.variance and np.array_equal(one.replicates, two.replicates)
    assert one.calibrated == pytest.approx(one.ij - one.null_excess, rel=1e-12)
    assert one.variance == max(one.calibrated, sd**2) and one.null_variance == sd**2
    assert np.isfinite(one.null_excess) and one.ij > 0


def test_tiny_data_without_a_positive_ij_variance_gets_the_null_sd():
    """Here the calibrated IJ variance is ≤ 0 (noise); the interval is then estimate ± z·(exact null SD)."""
    import repalign
    from repalign.stats import nulls

    rng = np.random.default_rng(12)
    X, Y = rng.standard_normal((15, 3)), rng.standard_normal((15, 3))
    rs = resampler(X, Y, 3, 14)
    sd = nulls.mknn_null(rs.lists_a[:, :3], rs.lists_b[:, :3])[1]
    r = repalign.compare(X, Y, metrics="mknn", k=3, seed=12, resamples=200, permutations=0)
    m = r.metric("mknn")
    assert m.ci_method == "ij-calibrated-normal" and m.null_sd == pytest.approx(sd, rel=1e-12)
    assert m.ci_high - m.value == pytest.approx(1.959963984540 * sd, rel=1e-9)


def test_stats_package_imports_no_metric():
    """repalign.stats is generic: the metrics import it, never the other way (that made an import cycle)."""
    import ast
    import pathlib

    import repalign.stats

    for path in pathlib.Path(repalign.stats.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [n for n in names if n.startswith("repalign.metrics")], path.name


@pytest.mark.parametrize("k, K", [(4, 6), (3, 14)])
def test_block_replicates_equal_materialised_resamples(rng, k, K):
    """The vectorised path (a block of resamples at once), fallback rows included (one resample of three
    items, where every row runs out of stored slots; with K = 6 barely above k = 4, others too), against the
    resample materialised. K = 14 > 2k also takes the path that follows only the rows still open after 2k
    positions."""
    n = 48
    X, Y = make_pair(rng, n=n, d1=4, d2=5)
    rs = resampler(X, Y, k, K)
    W = np.concatenate(list(stats.resample_weights(np.random.SeedSequence(4), n, 12)))
    W[0] = 0
    W[0, :3] = n // 3
    expected = [materialised_mknn(X, Y, w, k) for w in W]
    assert np.allclose(rs.bootstrap([W]), expected, rtol=0, atol=1e-12)
    assert np.array_equal(rs.block_overlaps(W), np.stack([rs.overlaps(w) for w in W]))


def test_ij_budgets_keep_n_times_b_and_never_exceed_the_resamples():
    """Up to n = 2,560 the budgets are the ones validated (B and B/4 per pairing); above, n·B stays fixed down to the
    floors; never more than ``resamples``."""
    from repalign.stats import resampling as rsm

    assert stats.ij_budgets(1024, 1000) == (1000, 250)
    assert stats.ij_budgets(2560, 1000) == (1000, 250)
    assert stats.ij_budgets(10_000, 1000) == (256, 64)
    assert stats.ij_budgets(10**6, 1000) == (rsm.IJ_MIN_REPLICATES, rsm.IJ_NULL_MIN_REPLICATES)
    assert stats.ij_budgets(10**6, 20) == (20, 5)
    for n in (300, 4096, 16_384, 50_000):
        observed, per = stats.ij_budgets(n, 1000)
        assert observed * n >= min(rsm.IJ_ITEM_REPLICATES, 1000 * n)
        assert per * n >= min(rsm.IJ_NULL_ITEM_REPLICATES, 250 * n)


def test_calibration_replicates_shrink_only_when_the_ij_dwarfs_the_null_variance():
    """Without signal (IJ a little above the null variance) the nominal budget; with the IJ at V null variances above
    it, nominal/V² (the calibration's error relative to the variance unchanged), down to the floor."""
    from repalign.stats import resampling as rsm

    assert stats.calibration_replicates(64, 1.5, 1.0) == 64
    assert stats.calibration_replicates(64, 0.8, 1.0) == 64  # IJ below the null variance: nothing to gain
    assert stats.calibration_replicates(250, 3.0, 1.0) == math.ceil(250 / 4)
    assert stats.calibration_replicates(250, 201.0, 1.0) == rsm.IJ_NULL_MIN_REPLICATES
    assert stats.calibration_replicates(5, 201.0, 1.0) == 5  # below the floor already: as asked
    assert stats.calibration_replicates(64, float("nan"), 1.0) == 64
