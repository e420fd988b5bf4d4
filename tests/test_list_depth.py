"""The stored depth with resampling: the smallest K at which a resample leaves a row short with rate ≤ 1e-7."""

from fractions import Fraction
from math import comb, e

import pytest

from repalign.metrics import list_depth
from repalign.metrics.base import SHORT_LIST_RATE

# 1 − 1/e as an exact fraction close enough that the tail below is exact to far better than the rate's size.
KEEP = Fraction(1) - Fraction(1 / e)


def short_rate(K: int, k: int) -> Fraction:
    """P(Binomial(K, 1 − 1/e) < k) in exact rational arithmetic."""
    return sum((comb(K, j) * KEEP**j * (1 - KEEP) ** (K - j) for j in range(k)), Fraction(0))


@pytest.mark.parametrize("k", [1, 3, 10, 25])
def test_depth_is_the_smallest_with_a_rare_short_list(k):
    K = list_depth(10**6, k, 1000)
    assert K >= max(3 * k, k + 10)
    assert short_rate(K, k) <= SHORT_LIST_RATE
    assert K == max(3 * k, k + 10) or short_rate(K - 1, k) > SHORT_LIST_RATE


def test_without_resamples_and_small_n():
    assert list_depth(10**6, 10, 0) == 10
    assert list_depth(30, 10, 1000) == 29  # never deeper than the other rows
