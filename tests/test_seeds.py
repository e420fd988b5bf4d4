"""The named random streams keep the states they had when each part of the code spawned its own."""

import numpy as np
import pytest

from repalign.seeds import Streams


def _state(seq: np.random.SeedSequence) -> list[int]:
    return seq.generate_state(8).tolist()


@pytest.mark.parametrize("seed", [0, 7, 2**62 + 12345])
def test_streams_match_the_historical_derivations(seed):
    s = Streams.from_seed(seed)
    # PairData spawned four children in this order; the sweep took child 1 of spawn(2) for its permutations;
    # pairing.subsample used SeedSequence(seed, spawn_key=(2,)).
    spawned = np.random.SeedSequence(seed).spawn(4)
    assert [_state(x) for x in (s.boot, s.perm, s.pair, s.null)] == [_state(x) for x in spawned]
    assert _state(s.perm) == _state(np.random.SeedSequence(seed).spawn(2)[1])
    assert _state(s.subsample) == _state(np.random.SeedSequence(seed, spawn_key=(2,)))
    assert _state(s.subsample) == _state(s.pair)  # documented in seeds.py: the two share their state


def test_streams_differ_between_seeds_and_between_each_other():
    a, b = Streams.from_seed(1), Streams.from_seed(2)
    assert _state(a.boot) != _state(b.boot)
    assert len({tuple(_state(x)) for x in (a.boot, a.perm, a.pair, a.null)}) == 4
