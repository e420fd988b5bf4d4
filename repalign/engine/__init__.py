"""The engine: inputs → representations (each layer's work once) → scored pairs. compare is its two-input case.

Data flow of one run (see docs/architecture.md):

1. :func:`prepare` opens every input from its headers (:mod:`.inputs`), plans memory, reads, pairs rows and
   wraps each input as a :class:`~.representation.Representation`;
2. :func:`~.scoring.score_pair` scores one pair of representations (every layer pair, then each metric's
   best pair with its interval and p-value); ``compare`` scores the one pair, ``matrix`` every pair and the
   diagonal (:func:`~.scoring.self_scores`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from repalign.engine.cache import ListCache
from repalign.engine.inputs import Side, open_side, pair_rows, plan_memory, read_side, selectors
from repalign.engine.representation import Representation
from repalign.engine.scoring import SWEEP_PERMUTATIONS, score_pair, self_scores
from repalign.options import Options
from repalign.pairing import Pairing
from repalign.results import UncertaintySettings

__all__ = ["Prepared", "prepare", "score_pair", "self_scores", "Representation", "SWEEP_PERMUTATIONS"]


@dataclass
class Prepared:
    """Every input opened, planned, read and paired, ready to be scored."""

    sides: list[Side]
    reps: list[Representation]
    pairing: Pairing
    uncertainty: UncertaintySettings
    """The run's settings: a compare sweep's default permutation count already applied."""
    keep: bool
    """Whether every layer stays in memory (else layers are read again for each pair they are in)."""
    notes: list[str]
    """Notes from pairing (e.g. files whose ids disagree row by row)."""
    cache: ListCache | None = None
    """The neighbour-list cache shared by every representation (its notes say what it served)."""

    @property
    def n(self) -> int:
        return self.pairing.max_rows or self.pairing.paired


def prepare(xs: list, options: Options, *, compare: bool,
            progress: Callable[[str], None] | None = None) -> Prepared:
    """Open, plan, read and pair the inputs; nothing is read in full before the memory plan is accepted.

    ``compare``: the two inputs of ``repalign compare`` (labels a and b, each with its own layer
    selection); otherwise the inputs of a matrix, labelled by position, ``options.layers[0]`` applying to
    every layered input.
    """
    xs = selectors(xs, options.formats if compare else ())
    labels = ["a", "b"] if compare else [str(i) for i in range(len(xs))]
    layers = options.layers if compare else (options.layers[0],) * len(xs)
    sides = [open_side(x, label, options.allow_external, sel, only_layered=not compare)
             for x, label, sel in zip(xs, labels, layers)]
    u = options.uncertainty
    if compare and not u.permutations_explicit and len(sides[0].source) * len(sides[1].source) > 1:
        u = dataclasses.replace(u, permutations=SWEEP_PERMUTATIONS)
    keep = plan_memory(sides, options, u)
    sides = [read_side(s) for s in sides]  # the first full read, once the plan is accepted
    if progress and compare:
        progress("reading inputs")
    notes: list[str] = []
    pairing, rows = pair_rows(xs, sides, options, u.seed, notes, compare=compare)
    # A single pair of single arrays is in memory anyway (read and checked above).
    single = compare and all(len(s.source) == 1 for s in sides)
    from repalign import search as _search

    cache = ListCache(options.cache) if options.cache is not None else None
    reps = [Representation(s.source, s.info.label, r, options.preprocessing, keep=keep or single, cache=cache,
                           name=s.info.name, search=_search.make(options.search, options.recall, u.seed, options.k))
            for s, r in zip(sides, rows)]
    return Prepared(sides, reps, pairing, u, keep, notes, cache)
