"""What every metric shares: the pair of inputs with its shared work, the metric spec, interval settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypedDict

import numpy as np

from repalign.metrics import cka as _cka
from repalign.metrics import cka_jackknife as _jackknife
from repalign.results import MetricResult, UncertaintySettings
from repalign.seeds import Streams

COVERS = {
    "mknn": "the mean of mknn over fresh samples of n items, at this n and k",
    "cka": "the mean of biased CKA over fresh samples of n items, at this n",
    "cka-unbiased": "the population value of CKA",
}
CI_METHODS = ("auto", "percentile", "basic", "bca", "normal", "ij", "jackknife")
# The interval each metric uses unless --ci-method asks otherwise; benchmarks/coverage.py measures them
# (results in benchmarks/coverage_results.md).
# mknn: the bootstrap SD is 1.4–1.7× the true SD in every setting studied, and the bootstrap distribution
# can sit well below the estimate under strong signal, where percentile and basic intervals under-cover
# (0.875 and 0.65 at n=1024, d=768). "ij" is estimate ± z·(null-calibrated IJ SE, floored at the exact
# null SD), stats.knn_ij_variance; "normal" (± z·bootstrap SD) remains as the conservative choice.
# CKA: the jackknife variance counts the second-order (degenerate) part of the variance twice, which
# made its intervals 1.34–1.50× too wide when the sides are unrelated; "corrected" subtracts the sum of
# squared delete-2 interactions (cka_jackknife.second_order). "jackknife" asks for the plain, conservative one.
DEFAULT_CI = {"mknn": "ij", "cka": "corrected"}


def list_depth(n: int, k: int, resamples: int) -> int:
    """Neighbours to store per item: k, or deeper when bootstrap replicates read past k (docs/formulas.md §6)."""
    return min(n - 1, max(3 * k, k + 10) if resamples else k)


def clamp(lo: float, hi: float, rng: tuple[float, float]) -> tuple[float, float]:
    """An interval cut to the metric's range."""
    return max(lo, rng[0]), min(hi, rng[1])


class ResultFields(TypedDict, total=False):
    """The optional fields of a :class:`~repalign.results.MetricResult` that a metric fills step by step."""

    chance: float | None
    null_sd: float | None
    z: float | None
    p_value: float
    calibrated: float
    permutations: int
    ci_low: float
    ci_high: float
    ci_method: str
    ci_covers: str
    ci_reason: str


class PairData:
    """Two validated, preprocessed inputs and the work metrics share (computed once, on demand)."""

    def __init__(self, a: np.ndarray | None, b: np.ndarray | None, *, k: int, distance: str,
                 labels: tuple[str, str], uncertainty: UncertaintySettings | None = None,
                 progress: Callable[[str], None] | None = None, lists: dict[str, np.ndarray] | None = None,
                 cross: _cka.CrossStats | None = None,
                 counts: tuple[dict[str, int], dict[str, int]] | None = None, n: int | None = None):
        # lists/cross/counts: work done already (a sweep computes it once per layer); a and b may then be
        # None when neither intervals nor permutations need the arrays.
        self._a, self._b = a, b
        self.progress = progress or (lambda stage: None)
        if n is None:
            n = self.a.shape[0]
        self.n = n
        self.k = k
        self.distance = distance
        self.labels = labels
        self.u = uncertainty or UncertaintySettings(resamples=0, permutations=0)
        self.streams = Streams.from_seed(self.u.seed)
        self.depth = list_depth(self.n, k, self.u.resamples)
        self._lists: dict[str, np.ndarray] = dict(lists or {})
        self._norms: dict[str, np.ndarray] = {}
        self.counts = counts
        self._cross = cross
        self._cka_loo: tuple[np.ndarray, np.ndarray] | None = None
        self._cka_second: tuple[float, float, bool] | None = None
        self.notes: list[str] = []

    @property
    def a(self) -> np.ndarray:
        """The first input (present unless the pair was built from precomputed work alone)."""
        if self._a is None:
            raise RuntimeError(f"{self.labels[0]}: this work needs the array, which was not kept")
        return self._a

    @property
    def b(self) -> np.ndarray:
        """The second input (present unless the pair was built from precomputed work alone)."""
        if self._b is None:
            raise RuntimeError(f"{self.labels[1]}: this work needs the array, which was not kept")
        return self._b

    # The streams under the names the metrics and benchmarks/coverage.py read.
    @property
    def boot_seed(self) -> np.random.SeedSequence:
        return self.streams.boot

    @property
    def perm_seed(self) -> np.random.SeedSequence:
        return self.streams.perm

    @property
    def pair_seed(self) -> np.random.SeedSequence:
        return self.streams.pair

    @property
    def null_seed(self) -> np.random.SeedSequence:
        return self.streams.null

    def _side(self, side: str) -> tuple[np.ndarray, str]:
        return (self.a, self.labels[0]) if side == "a" else (self.b, self.labels[1])

    def neighbors(self, side: str) -> np.ndarray:
        """Ordered neighbour lists of depth ``self.depth`` (the metric uses the first k)."""
        from repalign.neighbors import knn  # FAISS loads only when a metric searches

        if side not in self._lists:
            x, label = self._side(side)
            self.progress(f"searching {self.depth} nearest neighbours of {self.n} items in {label}")
            # Without resamples only the set of k neighbours matters, and only the set is certified.
            self._lists[side] = knn(x, self.depth, self.distance, label=label, ordered=self.depth > self.k)
        return self._lists[side]

    def full_list(self, side: str, i: int, depth: int) -> np.ndarray:
        """Row i's ordered list to a given depth, for the rare resample that exhausts the stored one."""
        from repalign.neighbors import exact_knn
        from repalign.validation import row_norms

        x, _ = self._side(side)
        if side not in self._norms:
            self._norms[side] = row_norms(x)
        return exact_knn(x, depth, self.distance, rows=np.array([i]), norms=self._norms[side])[0]

    @property
    def cross(self) -> _cka.CrossStats:
        """The CKA sums of the pair (given, or computed on first use)."""
        if self._cross is None:
            self.progress("CKA cross-products")
            self._cross = _cka.cross_stats(self.a, self.b, per_row=self.u.resamples > 0)
        return self._cross

    @property
    def cka_loo(self) -> tuple[np.ndarray, np.ndarray]:
        """Leave-one-out values of (biased, unbiased) linear CKA, shared by both metrics."""
        if self._cka_loo is None:
            self.progress("CKA jackknife")
            self._cka_loo = _jackknife.jackknife(self.a, self.b, self.cross)
        return self._cka_loo

    @property
    def cka_second(self) -> tuple[float, float, bool]:
        """Second-order part of the CKA jackknife variance, (biased, unbiased, exact): cka_jackknife.second_order."""
        if self._cka_second is None:
            self.progress("CKA jackknife, second-order correction")
            st = self.cross
            biased, unbiased = _cka.ratio(_cka.biased_terms(st)), _cka.ratio(_cka.unbiased_terms(st))
            # An undefined estimator gets a NaN sum (its metric has no value, so never reads it); None would
            # make the other estimator's sum fail.
            values = (np.nan if biased is None else biased, np.nan if unbiased is None else unbiased)
            self._cka_second = _jackknife.second_order(self.a, self.b, st, values, self.cka_loo, self.streams.pair)
        return self._cka_second

    def method(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        """The interval method the user asked for if this metric offers it, else the metric's default."""
        m = self.u.ci_method
        return default if m == "auto" or m not in allowed else m


@dataclass(frozen=True)
class MetricSpec:
    """A metric as the CLI and the README know it."""

    name: str
    title: str
    range: tuple[float, float]
    description: str
    compute: Callable[[PairData], MetricResult]
    needs_neighbors: bool = False
