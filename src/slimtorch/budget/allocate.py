"""Allocating channel cuts to a latency budget (HALP-style): least importance lost per
millisecond saved, with each layer's time read off curves measured on this CPU.

``LayerCurves`` times every conv / linear of a model standalone at a grid of output and input
widths (``LatencyTable``, so the times are cached per machine) and predicts a layer's time at
any widths by interpolating the two curves (separable: ``T(in, out) = T * a(in) * b(out)``).
Grouped and depthwise convs shrink with their groups. What the layers do not explain (norms,
activations, Python) is spread over the layers in proportion to their output volume.

``allocate`` is a greedy knapsack: starting from full widths it repeatedly removes one width
step (the SIMD multiple) from the group whose next channels cost the least normalized
importance per predicted millisecond saved, until the prediction meets the budget. It is a
pure function of the groups, scores and a cost function, so it is tested without timing.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from ..graph.groups import ChannelGroup
from .latency import LatencyTable, LayerShape

__all__ = ["LayerCurves", "LayerTerms", "allocate", "layer_terms"]

GRID = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)


@dataclass(frozen=True, slots=True)
class LayerTerms:
    """How one layer's widths follow the groups: ``width = full - sum(m * removed(group))``."""

    name: str
    out_full: int
    in_full: int
    out_terms: tuple[tuple[int, int], ...]  # (group atom, positions per group index)
    in_terms: tuple[tuple[int, int], ...]


def layer_terms(
    groups: Sequence[ChannelGroup], shapes: Mapping[str, LayerShape]
) -> list[LayerTerms]:
    """For every timed layer, the groups on its output (dim 0) and input (dim 1) channels."""
    terms: dict[str, tuple[dict[int, int], dict[int, int]]] = {n: ({}, {}) for n in shapes}
    for g in groups:
        for m in g.members:
            layer, _, attr = m.param.rpartition(".")
            if attr != "weight" or layer not in terms or m.dim > 1:
                continue
            mult = math.prod(m.factors) // m.factors[m.pos]
            side = terms[layer][m.dim]
            side[g.atom] = side.get(g.atom, 0) + mult
    out = []
    for name, s in shapes.items():
        o, i = terms[name]
        in_full = s.in_ch // (s.groups if s.kind != "linear" else 1)
        out.append(LayerTerms(name, s.out_ch, in_full, tuple(o.items()), tuple(i.items())))
    return out


class LayerCurves:
    """Predicted ms of each layer at given widths, from times measured on this CPU.

    Args:
        table: the latency table (cache) the standalone layers are timed with.
        shapes: the layers as they run in the full model (``layer_shapes``).
        terms: which widths change (a curve is measured only along a dim some group prunes).
        step: the width step of the grid (the SIMD multiple).

    ``calibrate(ms)`` spreads what a real measurement of the whole model leaves unexplained
    over the layers by output volume (norms and activations scale with activations).
    """

    def __init__(
        self,
        table: LatencyTable,
        shapes: Mapping[str, LayerShape],
        terms: Sequence[LayerTerms],
        step: int = 8,
    ) -> None:
        self.shapes = dict(shapes)
        self.full = {n: table.ms(s) for n, s in self.shapes.items()}
        self.rest = dict.fromkeys(self.shapes, 0.0)
        self.out_curve: dict[str, list[tuple[int, float]]] = {}
        self.in_curve: dict[str, list[tuple[int, float]]] = {}
        for t in terms:
            s = self.shapes[t.name]
            if t.out_terms:
                self.out_curve[t.name] = [
                    (w, table.ms(_resized(s, out=w))) for w in _grid(s.out_ch, step)
                ]
            if t.in_terms and (s.kind == "linear" or s.groups == 1):
                self.in_curve[t.name] = [
                    (w, table.ms(_resized(s, inp=w))) for w in _grid(s.in_ch, step)
                ]
        if table.measured:
            table.save()

    def calibrate(self, measured_ms: float) -> None:
        rest = max(measured_ms - sum(self.full.values()), 0.0)
        volume = max(sum(s.out_elements() for s in self.shapes.values()), 1)
        self.rest = {n: rest * s.out_elements() / volume for n, s in self.shapes.items()}

    def full_ms(self) -> float:
        return sum(self.full.values()) + sum(self.rest.values())

    def ms(self, t: LayerTerms, w_in: int, w_out: int) -> float:
        """The layer's predicted ms at output width ``w_out`` and input width ``w_in``
        (per group for a grouped conv), its share of the rest included."""
        full = self.full[t.name]
        b = _interp(self.out_curve[t.name], w_out) / full if t.name in self.out_curve else 1.0
        if t.name in self.in_curve:
            a = _interp(self.in_curve[t.name], w_in) / full
        else:  # a grouped conv's channels per group: linear
            a = w_in / t.in_full if t.in_terms else 1.0
        return full * a * b + self.rest[t.name] * w_out / t.out_full


def _grid(full: int, step: int) -> list[int]:
    widths = {max(step, int(round(full * f / step)) * step) for f in GRID}
    return [*sorted(w for w in widths if w < full), full]


def _resized(s: LayerShape, out: int | None = None, inp: int | None = None) -> LayerShape:
    """``s`` at another output or input width (a grouped conv keeps channels per group)."""
    if out is not None:
        if s.kind != "linear" and s.groups > 1:
            groups = max(1, round(s.groups * out / s.out_ch))
            while s.out_ch % s.groups == 0 and out % groups:  # a width the groups divide
                groups -= 1
            in_ch = s.in_ch // s.groups * groups
            return replace(s, out_ch=out, in_ch=in_ch, groups=groups, input=_with_ch(s, in_ch))
        return replace(s, out_ch=out)
    assert inp is not None
    return replace(s, in_ch=inp, input=_with_ch(s, inp))


def _with_ch(s: LayerShape, ch: int) -> tuple[int, ...]:
    shape = list(s.input)
    shape[-1 if s.kind == "linear" else 1] = ch
    return tuple(shape)


def _interp(curve: list[tuple[int, float]], w: float) -> float:
    """Piecewise linear through the measured points (and through 0 at width 0)."""
    xs = [0] + [p[0] for p in curve]
    ys = [0.0] + [p[1] for p in curve]
    if w >= xs[-1]:
        return ys[-1]
    j = bisect.bisect_right(xs, w)
    x0, x1, y0, y1 = xs[j - 1], xs[j], ys[j - 1], ys[j]
    return y0 + (y1 - y0) * (w - x0) / (x1 - x0)


def allocate(
    groups: Sequence[ChannelGroup],
    scores: Mapping[int, torch.Tensor],
    terms: Sequence[LayerTerms],
    cost: Callable[[LayerTerms, int, int], float],
    budget: float,
    *,
    steps: Mapping[int, int],
    floors: Mapping[int, int],
) -> tuple[dict[int, int], float]:
    """Kept channels per group atom, and the predicted total, for a cost ``budget``.

    Greedy on ``importance lost / cost saved``: each group's scores are normalized by their
    mean (as in a global ranking), its channels leave lowest score first, ``steps[atom]`` at a
    time and never below ``floors[atom]``. ``cost(terms, w_in, w_out)`` is one layer's cost.
    Stops as soon as the predicted total is within the budget (or nothing is left to cut).
    """
    size = {g.atom: g.size for g in groups}
    keep = dict(size)
    prefix = {}
    for g in groups:
        s = scores[g.atom].double()
        normed = torch.sort(s / s.mean().clamp_min(1e-12)).values
        prefix[g.atom] = [0.0, *torch.cumsum(normed, 0).tolist()]
    touching: dict[int, list[int]] = {a: [] for a in size}
    for i, t in enumerate(terms):
        for a, _ in (*t.out_terms, *t.in_terms):
            if a in touching and i not in touching[a]:
                touching[a].append(i)

    def widths(t: LayerTerms, kept: Mapping[int, int]) -> tuple[int, int]:
        w_out = t.out_full - sum(m * (size[a] - kept[a]) for a, m in t.out_terms if a in size)
        w_in = t.in_full - sum(m * (size[a] - kept[a]) for a, m in t.in_terms if a in size)
        return max(w_in, 1), max(w_out, 1)

    now = [cost(t, *widths(t, keep)) for t in terms]
    total = sum(now)
    version = dict.fromkeys(size, 0)
    heap: list[tuple[float, int, int]] = []

    def lower(a: int) -> int:  # the next width down: a multiple of the step, or the floor
        return max(floors[a], (keep[a] - 1) // steps[a] * steps[a])

    def push(a: int) -> None:
        k = keep[a]
        s = k - lower(a)
        if s <= 0:
            return
        trial = {**keep, a: k - s}
        saved = sum(now[i] - cost(terms[i], *widths(terms[i], trial)) for i in touching[a])
        lost = prefix[a][size[a] - k + s] - prefix[a][size[a] - k]
        heapq.heappush(heap, (lost / max(saved, 1e-12), version[a], a))

    for a in size:
        push(a)
    while total > budget and heap:
        _, v, a = heapq.heappop(heap)
        if v != version[a]:
            continue
        keep[a] = lower(a)
        neighbours = set()
        for i in touching[a]:
            new = cost(terms[i], *widths(terms[i], keep))
            total += new - now[i]
            now[i] = new
            neighbours.update(b for b, _ in (*terms[i].out_terms, *terms[i].in_terms) if b in size)
        for b in neighbours | {a}:
            version[b] += 1
            push(b)
    return keep, total
