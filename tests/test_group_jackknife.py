"""The delete-a-group jackknife: its SE against a slow reference, and the interval of the metrics that use it."""

import json
from statistics import NormalDist

import numpy as np
import pytest
from conftest import make_pair
from typer.testing import CliRunner

from repalign import stats
from repalign.cli import app
from repalign.metrics import REGISTRY, PairData
from repalign.metrics.base import group_jackknife_interval
from repalign.results import UncertaintySettings
from repalign.seeds import Streams


def _slow_se(theta, X, labels):
    """sqrt((G−1)/G · Σ_g (θ_(g) − θ̄)²), one explicit deletion of each group from X."""
    G = int(labels.max()) + 1
    vals = []
    for g in range(G):
        keep = [i for i in range(X.shape[0]) if labels[i] != g]
        vals.append(theta(X[keep]))
    mean = sum(vals) / G
    return ((G - 1) / G * sum((v - mean) ** 2 for v in vals)) ** 0.5


def test_groups_are_seeded_and_near_equal():
    a = stats.groups(np.random.SeedSequence(5), 103)
    assert np.array_equal(a, stats.groups(np.random.SeedSequence(5), 103))
    assert not np.array_equal(a, stats.groups(np.random.SeedSequence(6), 103))
    sizes = np.bincount(a)
    assert sizes.size == stats.GROUPS and sizes.max() - sizes.min() <= 1 and sizes.sum() == 103
    with pytest.raises(ValueError):
        stats.groups(np.random.SeedSequence(5), 10)


def test_se_matches_slow_reference(rng):
    X = rng.standard_normal((97, 3))

    def theta(x):  # a non-linear statistic: the correlation of two columns
        return float(np.corrcoef(x[:, 0], x[:, 1] + x[:, 2] ** 2)[0, 1])

    labels = stats.groups(np.random.SeedSequence(1), X.shape[0])
    values = stats.group_jackknife_values(lambda rows: theta(X[rows]), labels)
    assert stats.group_jackknife_se(values) == pytest.approx(_slow_se(theta, X, labels), rel=1e-12)


def test_groups_stream_is_a_new_child():
    # Child 4 of the seed: the older streams (children 0–3) keep their states.
    s = Streams.from_seed(11)
    assert np.array_equal(s.groups.generate_state(4), np.random.SeedSequence(11).spawn(5)[4].generate_state(4))


def test_library_interval_matches_slow_reference(rng):
    # What a metric that passes the coverage study would report, against an explicit loop over the groups
    # with the metric recomputed on fresh pairs of the remaining rows (rsa: no metric has passed yet).
    X, Y = make_pair(rng, n=120)
    seed, spec = 7, REGISTRY["rsa"]
    p = PairData(X, Y, k=10, distance="cosine", labels=("a", "b"),
                 uncertainty=UncertaintySettings(resamples=1, permutations=0, seed=seed))
    value = spec.compute(p, spec.defaults()).value
    iv = group_jackknife_interval(p, spec, spec.defaults(), value, "what it covers")
    assert iv["ci_method"] == "group-jackknife-normal" and iv["ci_covers"] == "what it covers"

    quiet = UncertaintySettings(resamples=0, permutations=0, seed=seed)

    def theta(rows):
        return spec.compute(PairData(X[rows], Y[rows], k=10, distance="cosine", labels=("a", "b"),
                                     uncertainty=quiet), spec.defaults()).value

    labels = stats.groups(Streams.from_seed(seed).groups, X.shape[0])
    se = _slow_se(theta, np.arange(X.shape[0]), labels)  # "rows" of arange are the row indices
    z = NormalDist().inv_cdf(0.975)
    assert iv["ci_low"] == pytest.approx(max(value - z * se, spec.range[0]), abs=1e-12)
    assert iv["ci_high"] == pytest.approx(min(value + z * se, spec.range[1]), abs=1e-12)


def test_unvalidated_metrics_report_no_interval(rng, tmp_path):
    # Issue 10: a metric gets an interval only when the coverage study validates it; none of the
    # metrics measured with the grouped jackknife passed, so none offers it.
    assert not [name for name, spec in REGISTRY.items() if "group-jackknife" in spec.ci_methods]
    X, Y = make_pair(rng, n=60)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    r = CliRunner().invoke(app, ["compare", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "-m", "rsa,jaccard",
                                 "--resamples", "10", "--permutations", "0", "--seed", "3", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    for m in json.loads(r.stdout)["metrics"]:
        assert m["ci_low"] is None and m["ci_high"] is None
        assert "no validated interval" in m["ci_reason"]


def test_too_few_items_gives_a_reason():
    X = np.random.default_rng(0).standard_normal((30, 4))
    p = PairData(X, X, k=5, distance="cosine", labels=("a", "b"),
                 uncertainty=UncertaintySettings(resamples=1, permutations=0))
    spec = REGISTRY["cka"]
    assert "at least 40 items" in group_jackknife_interval(p, spec, {}, 1.0, "x")["ci_reason"]
