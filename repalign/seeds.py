"""The random streams of one run, derived from its seed in one place."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Streams:
    """Independent random streams for the parts of a run that draw random numbers.

    Every metric draws from the same streams, so, e.g., bootstrap replicate b is the
    same resample of the items for every metric, and permutation b the same pairing.
    Nothing may spawn from these (spawn() changes a SeedSequence); derive a fixed
    child with ``np.random.SeedSequence(s.entropy, spawn_key=s.spawn_key + (j,))``.
    """

    boot: np.random.SeedSequence
    """Bootstrap resamples of the items."""
    perm: np.random.SeedSequence
    """Permutations for p-values and calibrated scores (one pair and the max over layer pairs)."""
    pair: np.random.SeedSequence
    """The rows whose pairs the second-order CKA jackknife correction uses at large n."""
    null: np.random.SeedSequence
    """The random pairings that calibrate mknn's infinitesimal-jackknife variance."""
    groups: np.random.SeedSequence
    """The split of the rows into the grouped jackknife's groups (child 4, added after the others)."""
    subsample: np.random.SeedSequence
    """The rows --max-rows keeps.

    Its state is the same as ``pair`` (both are child 2 of the seed): this was so before the streams
    were named here, and changing it would change published numbers, so whether to give it a stream
    of its own is left to a deliberate, announced change.
    """

    @classmethod
    def from_seed(cls, seed: int) -> Streams:
        """The streams of ``seed``: children 0–3 of SeedSequence(seed), as they have always been drawn, and child 4."""
        root = np.random.SeedSequence(seed)
        boot, perm, pair, null = root.spawn(4)
        return cls(boot=boot, perm=perm, pair=pair, null=null,
                   groups=np.random.SeedSequence(root.entropy, spawn_key=(4,)),
                   subsample=np.random.SeedSequence(root.entropy, spawn_key=(2,)))
