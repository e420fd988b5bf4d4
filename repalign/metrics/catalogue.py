"""The registry described for people: ``repalign metrics``, ``--metric help`` and the README's metric table."""

from __future__ import annotations

import math

from repalign.metrics.spec import MetricSpec, format_value


def _bound(v: float) -> str:
    text = ("-∞" if v < 0 else "∞") if math.isinf(v) else f"{v:.4g}"
    return text.replace("-", "−")


def _permutations(spec: MetricSpec) -> str:
    return "none" if spec.permutation_null is None else "by default" if spec.cheap_null else "with --permutations"


def entry(spec: MetricSpec) -> dict:
    """One metric as plain data (the JSON of ``repalign metrics --format json``)."""
    return {
        "name": spec.name,
        "title": spec.title,
        "direction": f"{spec.direction} = more aligned",
        "range": [None if math.isinf(v) else v for v in spec.range],
        "symmetric": spec.symmetric if isinstance(spec.symmetric, bool) else "depends on parameters",
        "params": [{"name": p.name, "default": p.default, "doc": p.doc} for p in spec.params],
        "chance": spec.chance,
        "permutations": _permutations(spec),
        "interval": spec.covers or "none validated yet",
        "description": spec.description,
    }


def params_text(spec: MetricSpec) -> str:
    if not spec.params:
        return "—"
    return ", ".join(f"{p.name}={'none' if p.default is None else format_value(p.default)}" for p in spec.params)


def markdown(registry: dict[str, MetricSpec]) -> str:
    """The README's metric table, one row per registered metric (a test keeps the README in step)."""
    lines = ["| metric | better | range | parameters (defaults) | chance level | permutation p-value | interval |",
             "|---|---|---|---|---|---|---|"]
    for s in registry.values():
        rng = f"[{_bound(s.range[0])}, {_bound(s.range[1])}]"
        sym = "" if s.symmetric is True else " (asymmetric)"
        lines.append(f"| `{s.name}`{sym} | {s.direction} | {rng} | {params_text(s)} | {s.chance} | "
                     f"{_permutations(s)} | {s.covers or 'none validated yet'} |")
    return "\n".join(lines) + "\n"


def text(registry: dict[str, MetricSpec]) -> str:
    """Plain text for a terminal: one block per metric."""
    out = []
    for s in registry.values():
        sym = "" if s.symmetric is True else f" (asymmetric{': ' + s.asymmetry if s.asymmetry else ''})"
        out.append(f"{s.name}: {s.title}{sym}. {s.description}")
        out.append(f"  direction: {s.direction} = more aligned; range [{_bound(s.range[0])}, {_bound(s.range[1])}]")
        for p in s.params:
            out.append(f"  {s.name}:{p.name}=…  {p.doc} [default: {'none' if p.default is None else p.default}]")
        out.append(f"  chance: {s.chance}; permutation p-value: {_permutations(s)}")
        out.append(f"  interval: {s.covers or 'none validated yet'}")
    return "\n".join(out) + "\n"
