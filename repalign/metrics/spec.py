"""What a metric declares to the engine: parameters, shared work, direction, null, interval, memory."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

if TYPE_CHECKING:
    from repalign.metrics.base import PairData
    from repalign.results import MetricResult

Params = Mapping[str, Any]


@dataclass(frozen=True)
class Param:
    """One parameter of a metric: ``-m NAME:PARAM=VALUE``."""

    name: str
    default: Any
    parse: Callable[[str], Any]
    """Text → value; raises ValueError with a message saying what is allowed."""
    doc: str


@dataclass(frozen=True)
class Work:
    """The shared work a metric reads from its PairData; the engine computes each piece once per layer."""

    lists: bool = False
    """Both sides' neighbour lists (``p.neighbors(side)``, depth ≥ k), from one search per layer."""
    ordered: bool = False
    """The lists' order matters (nearest first), not only the set of k."""
    cross: bool = False
    """The linear-CKA sums of the pair (``p.cross``)."""
    arrays: bool = False
    """The two preprocessed arrays (``p.a``, ``p.b``)."""


class LayerPairs(Protocol):
    """A sweep's layer pairs, as a max-over-pairs null sees them (the engine implements it)."""

    k: int
    shape: tuple[int, int]
    """(layers of a, layers of b)."""
    defined: set[tuple[int, int]]
    """The pairs where the metric has a value: the pairs the observed best was taken over."""

    def lists(self, side: str, i: int) -> np.ndarray:
        """Layer i's stored neighbour lists on side 'a' or 'b'."""
        ...

    def pair(self, i: int, j: int) -> PairData:
        """Layer pair (i, j) with its shared work, arrays included."""
        ...


# How one permutation null of one layer pair is computed: B's rows permuted by each permutation in turn.
PermutationNull = Callable[["PairData", Params, list[np.ndarray]], np.ndarray]
# Bytes a metric needs beyond the inputs and the shared work, from n, d1, d2 and its parameters (the engine
# adds the run's k to them as "k").
MemoryEstimate = Callable[[int, int, int, Params], int]
# Checks that need the data's shape: (params, n, d1, d2, k, labels) → raises InputError.
ShapeCheck = Callable[[Params, int, int, int, int, tuple[str, str]], None]
# Checks between parameters: (all values, the names the user gave) → raises ValueError saying what is allowed.
ParamCheck = Callable[[Params, tuple[str, ...]], None]


def _no_memory(n: int, d1: int, d2: int, params: Params) -> int:
    return 0


@dataclass(frozen=True)
class MetricSpec:
    """A metric as the engine, the CLI, the reports and the README know it: one per metric module."""

    name: str
    title: str
    range: tuple[float, float]
    description: str
    compute: Callable[[PairData, Params], MetricResult]
    """The pair's full result: value, chance level, null, interval and p-value as the settings ask."""
    higher_is_better: bool = True
    """The direction: True when a higher value means more aligned (False: a distance)."""
    params: tuple[Param, ...] = ()
    work: Work = Work()
    chance: str = "permutation null (with --permutations)"
    """How the chance level is known, for ``repalign metrics`` and the README."""
    permutation_null: PermutationNull | None = None
    """The metric's values with B's rows permuted (one layer pair); None: it has no permutation null."""
    cheap_null: bool = False
    """A permutation costs O(n·k·log) or less, so the permutations run by default (else only when asked)."""
    moment_bound: bool = False
    """``chance`` and ``null_sd`` are the permutation null's exact mean and SD, so the p-value may come from
    Cantelli's bound with no permutation, and the permutations that do run stop early (Besag–Clifford)."""
    max_null: Callable[[LayerPairs, Params, list[np.ndarray]], np.ndarray] | None = None
    """A faster max-over-layer-pairs null; None: the engine takes the max (or min) of each pair's null."""
    covers: str | None = None
    """What the validated interval covers; None: no validated interval yet (``ci_reason`` says so)."""
    ci_methods: tuple[str, ...] = ()
    """Interval methods it offers besides its default; the first is the default."""
    memory: MemoryEstimate = _no_memory
    check: ShapeCheck | None = None
    validate: ParamCheck | None = None
    """Checks between parameters (e.g. two that exclude each other), run when ``-m`` is parsed."""
    symmetric: bool | Callable[[Params], bool] = True
    """Swapping the inputs leaves the value unchanged (a matrix then fills both triangles); may depend on the
    parameters (linear-r2 is symmetric only with direction=both)."""
    asymmetry: str = ""
    """For an asymmetric metric: which direction the value is, e.g. 'a predicts b'."""

    @property
    def default_ci(self) -> str | None:
        return self.ci_methods[0] if self.ci_methods else None

    perfect: float | None = None
    """The value of identical inputs when the range does not show it (cknna's range is unbounded, its perfect
    value 1); the calibrated score scales towards it."""

    @property
    def best(self) -> float:
        """The value of perfect alignment (infinite when unknown: then no calibrated score)."""
        if self.perfect is not None:
            return self.perfect
        return self.range[1] if self.higher_is_better else self.range[0]

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"

    def better(self, a: float, b: float) -> bool:
        """Whether value a is strictly more aligned than value b."""
        return a > b if self.higher_is_better else a < b

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


@dataclass(frozen=True)
class Choice:
    """One metric as selected: its spec, the full parameter set, and the id reports and gates name it by."""

    spec: MetricSpec
    params: tuple[tuple[str, Any], ...] = ()
    """Every parameter of the metric, given or default, in declaration order."""
    given: tuple[str, ...] = ()
    """The parameters the user gave (they, not the defaults, make up the id)."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def id(self) -> str:
        """``name``, or ``name:p=v,...`` with the parameters the user gave: unique within a run."""
        if not self.given:
            return self.spec.name
        values = dict(self.params)
        return self.spec.name + ":" + ",".join(f"{p}={format_value(values[p])}" for p in self.given)

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def symmetric(self) -> bool:
        s = self.spec.symmetric
        return s if isinstance(s, bool) else bool(s(self.values))


def format_value(v: Any) -> str:
    """A parameter value as a user would type it."""
    if isinstance(v, float):
        return repr(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)


# --- parameter parsers: each turns the text after '=' into a value or raises ValueError with what is allowed.

def integer(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            if "_" in text:
                raise ValueError
            v = int(text)
        except ValueError:
            raise ValueError(f"'{text}' is not a whole number") from None
        if v < lo or (hi is not None and v > hi):
            raise ValueError(f"{v} is out of range (from {lo}" + (f" to {hi})" if hi is not None else " up)"))
        return v
    return parse


def number(lo: float, hi: float = math.inf, *, lo_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            if "_" in text:
                raise ValueError
            v = float(text)
        except ValueError:
            raise ValueError(f"'{text}' is not a number") from None
        if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo):
            low = f"above {lo:g}" if lo_open else f"at least {lo:g}"
            high = "" if hi == math.inf else f" and at most {hi:g}"
            raise ValueError(f"{text} is out of range (must be {low}{high})")
        return v
    return parse


def one_of(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        v = text.strip().lower()
        if v not in allowed:
            raise ValueError(f"'{text}' is not one of {', '.join(allowed)}")
        return v
    return parse


@dataclass
class _Draft:
    name: str
    given: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)


def parse_selection(values: Any, registry: Mapping[str, MetricSpec], default: tuple[str, ...],
                    error: Callable[[str], Exception]) -> tuple[Choice, ...]:
    """``-m`` values → choices, in order, without exact repeats.

    Grammar: comma-separated pieces; ``NAME`` or ``NAME:P=V`` starts a metric, and a piece containing ``=``
    (and no ``:``) adds a parameter to the metric before it, so ``mknn,linear-r2:folds=0,direction=ab,cka``
    is three metrics. Repeated options are concatenated.
    """
    if values is None or isinstance(values, str):
        values = [values] if values else [",".join(default)]
    drafts: list[_Draft] = []
    for v in values:
        for piece in str(v).split(","):
            piece = piece.strip()
            if not piece:
                continue
            head, colon, rest = piece.partition(":")
            if not colon and "=" in piece:
                if not drafts:
                    raise error(f"metric parameter '{piece}' comes before any metric name (write NAME:{piece})")
                _add_param(drafts[-1], piece, error)
                continue
            name = head.strip().lower()
            if name not in registry:
                raise error(f"unknown metric '{name}' (choose from {', '.join(registry)}; see repalign metrics)")
            drafts.append(_Draft(name))
            if colon:
                if not rest.strip():
                    raise error(f"metric '{name}': nothing after ':' (write {name}:PARAM=VALUE)")
                _add_param(drafts[-1], rest, error)
    out: list[Choice] = []
    for d in drafts:
        choice = _resolve(registry[d.name], d, error)
        if not any(c.name == choice.name and c.params == choice.params for c in out):
            out.append(choice)
    if not out:
        raise error("no metric selected")
    return tuple(out)


def _add_param(d: _Draft, piece: str, error: Callable[[str], Exception]) -> None:
    key, eq, value = piece.partition("=")
    key, value = key.strip().lower(), value.strip()
    if not eq or not key or not value:
        raise error(f"metric '{d.name}': parameter '{piece.strip()}' must be PARAM=VALUE")
    if key in d.given:
        raise error(f"metric '{d.name}': parameter '{key}' is given twice")
    d.given[key] = value
    d.order.append(key)


def _resolve(spec: MetricSpec, d: _Draft, error: Callable[[str], Exception]) -> Choice:
    known = {p.name: p for p in spec.params}
    values = spec.defaults()
    for key in d.order:
        if key not in known:
            allowed = ", ".join(known) if known else "none"
            raise error(f"metric '{spec.name}' has no parameter '{key}' (its parameters: {allowed})")
        try:
            values[key] = known[key].parse(d.given[key])
        except ValueError as exc:
            raise error(f"metric '{spec.name}': {key}={d.given[key]}: {exc}") from None
    if spec.validate is not None:
        try:
            spec.validate(values, tuple(d.order))
        except ValueError as exc:
            raise error(f"metric '{spec.name}': {exc}") from None
    return Choice(spec, tuple(values.items()), tuple(d.order))
