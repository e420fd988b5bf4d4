"""Clipping and normalisation exactly as docs/formulas.md §4 states them."""

import numpy as np
import pytest

from repalign import preprocess
from repalign.errors import InputError, UsageError
from repalign.options import Options


def test_clip_threshold_is_the_value_at_int_qN(rng):
    X = rng.standard_normal((37, 11))
    flat = np.sort(np.abs(X).ravel())
    for q in (0.5, 0.9, 0.95, 0.999):
        assert preprocess.clip_threshold(X, q) == flat[int(q * flat.size)]


def test_apply_clip_then_normalize(rng):
    X = rng.standard_normal((20, 5)) * 10
    pre = preprocess.Preprocessing(clip=0.9, normalize=True)
    out = preprocess.apply(X, pre, "x")
    t = np.sort(np.abs(X).ravel())[int(0.9 * X.size)]
    expected = np.clip(X, -t, t)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(out, expected, rtol=0, atol=1e-15)
    assert np.array_equal(X, X.copy())  # input not modified in place


def test_clip_one_is_no_op(rng):
    X = rng.standard_normal((5, 3))
    assert preprocess.apply(X, preprocess.Preprocessing(clip=1.0), "x") is X


def test_normalize_zero_row_errors(rng):
    X = rng.standard_normal((6, 3))
    X[2] = 0
    with pytest.raises(InputError, match="x: all-zero row 2"):
        preprocess.apply(X, preprocess.Preprocessing(normalize=True), "x")


def test_preset_prh_and_overrides():
    o = Options.build(preset="prh")
    assert (o.k, o.preprocessing.clip, o.preprocessing.normalize, o.preprocessing.preset) == (10, 0.95, True, "prh")
    o = Options.build(k=5, normalize=False, preset="prh")
    assert (o.k, o.preprocessing.clip, o.preprocessing.normalize) == (5, 0.95, False)
    with pytest.raises(UsageError, match="unknown preset"):
        Options.build(preset="nope")


@pytest.mark.parametrize("q", [0.0, -0.1, 1.5])
def test_bad_clip(q):
    with pytest.raises(UsageError, match="--clip"):
        preprocess.Preprocessing(clip=q)


def test_clip_leaving_only_tiny_values_is_rescaled_exactly(rng):
    """Hypothesis found it: one huge entry scales the input down by 2^-k, then a clip at the 0.9 quantile
    leaves values near 1e-81, whose fourth powers underflow in CKA's sums. The clipped array is rescaled by a
    power of two (exact), so it equals the clip of the unscaled array up to that power of two."""
    import repalign

    X = rng.standard_normal((40, 3))
    Y = X + 0.5 * rng.standard_normal((40, 3))
    X[0, 0] = 1e98  # scaled by 2^-326 on reading
    pre = preprocess.Preprocessing(clip=0.9)
    t = preprocess.clip_threshold(X, 0.9)
    clipped = np.clip(X, -t, t)  # the reference: clip of the unscaled input (t is an ordinary number here)
    scaled = np.ldexp(X, -326)
    out = preprocess.apply(scaled, pre, "x")
    ratio = out / clipped
    assert np.allclose(ratio, ratio.flat[0], rtol=0, atol=0) and np.log2(ratio.flat[0]).is_integer()
    r = repalign.compare(scaled, Y, metrics="cka", clip=0.9, resamples=0, permutations=0)
    ty = preprocess.clip_threshold(Y, 0.9)
    xc, yc = clipped - clipped.mean(0), np.clip(Y, -ty, ty)
    yc = yc - yc.mean(0)
    dense = np.linalg.norm(xc.T @ yc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert r.metric("cka").value == pytest.approx(dense, rel=1e-12)
