"""Solving for a target: the pruning ratio that brings a model to ``target_macs``, or to a
latency measured on this CPU (``target_latency_ms``, ``speedup``)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from ..._forward import Inputs, copy_model, eval_mode
from ...budget.allocate import LayerCurves, allocate, layer_terms
from ...budget.latency import LatencyTable, layer_shapes
from ...edit.channels import slice_channels_
from ...errors import ForwardError, PruneError
from ...graph.groups import ChannelGroup, GroupSet
from ...graph.trace import trace
from ...measure.analyze import count_macs
from ...measure.latency import benchmark, fixed_threads, forward_fn
from ...measure.timing import interleaved_times
from .options import ChannelOptions
from .plan import conv_groups, plan_groups, tensor_plan

__all__ = ["DeepCutFails", "measured_ms", "solve_allocation", "solve_latency", "solve_ratio"]


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the ``meta`` device (no memory, no arithmetic); unlike
    ``.to("meta")`` it keeps tied weights tied (an embedding shared with the LM head)."""
    memo: dict[int, Any] = {}
    named = [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]
    for _, t in named:
        if id(t) not in memo:
            m = torch.empty_like(t, device="meta")
            memo[id(t)] = nn.Parameter(m, t.requires_grad) if isinstance(t, nn.Parameter) else m
    return copy_model(model, memo)


def _to_meta(x: Any) -> Any:
    return tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t, x)


class DeepCutFails(Exception):
    """The deepest cut ``ratio`` makes a model whose forward fails (internal signal)."""

    def __init__(self, ratio: float) -> None:
        super().__init__(f"the forward fails at ratio {ratio}")
        self.ratio = ratio


def solve_ratio(
    work: nn.Module,
    example_inputs: Inputs,
    gset: GroupSet,
    groups: Sequence[ChannelGroup],
    scores: Mapping[int, torch.Tensor],
    opts: ChannelOptions,
    group_ratio: Mapping[int, float],
) -> float:
    """Bisection on the ratio until the pruned model's MACs reach ``target_macs``."""
    meta_inputs = _to_meta(example_inputs)
    real = [False]  # switched on when the forward needs real values (``.item()``, ...)

    def macs_at(r: float) -> int | None:
        """MACs of the model pruned at ratio ``r``; None if that model does not run."""
        keep = plan_groups(groups, scores, r, opts, group_ratio)
        if not real[0]:
            probe = meta_copy(work)
            slice_channels_(probe, tensor_plan(gset, keep), conv_groups(gset, keep), record=False)
            try:
                return sum(count_macs(trace(probe, meta_inputs)).values())
            except ForwardError:
                real[0] = True
        probe = copy_model(work)
        slice_channels_(probe, tensor_plan(gset, keep), conv_groups(gset, keep), record=False)
        try:
            return sum(count_macs(trace(probe, example_inputs)).values())
        except ForwardError:
            return None  # too narrow for the model's code somewhere (a fixed reshape, a split)

    target = int(opts.target_macs)
    hi = 0.95 if opts.scope == "local" else opts.max_ratio
    lowest = macs_at(hi)
    if lowest is None:
        # The deepest cut breaks the forward. A width the code needs (a minimum) leaves a
        # shallower cut that runs: solve below it if it reaches the target. Otherwise the
        # Pruner finds the groups to keep at the deepest cut (a bisection, as for any failing
        # plan) and solves again without them.
        ok, bad = 0.0, hi
        for _ in range(8):
            mid = (ok + bad) / 2
            if macs_at(mid) is None:
                bad = mid
            else:
                ok = mid
        shallow = macs_at(ok)
        if shallow is None or shallow > target:
            raise DeepCutFails(hi)
        hi, lowest = ok, shallow
    if lowest > target:
        raise PruneError(
            f"target_macs={target:,} cannot be reached: pruning {hi:.0%} of every prunable "
            f"group (the most the model's forward accepts) still leaves {lowest:,} MACs. "
            "Raise the target, or remove layers with prune_layers."
        )
    if (macs_at(0.0) or 0) <= target:
        return 0.0
    return _bisect(macs_at, target, hi, steps=14)


def measured_ms(
    candidate: nn.Module, reference: nn.Module, example_inputs: Inputs, threads: int, base_ms: float
) -> float:
    """The candidate's latency in ms: its median time over the reference's, both timed in
    interleaved runs (so the machine's drift cancels), times the reference's ``base_ms``."""
    runs = [forward_fn(m, example_inputs) for m in (candidate, reference)]
    with eval_mode(candidate), eval_mode(reference), torch.inference_mode(), fixed_threads(threads):
        a, b = interleaved_times(runs, warmup=2, rounds=9, min_rounds=5, budget_s=3.0)
    return statistics.median(a) / statistics.median(b) * base_ms


# An uneven allocation never cuts a group by more than this: importance lost is summed per
# channel, but a layer cut to a sliver loses more than its channels' scores say.
_MAX_UNEVEN = 0.75


def _latency_target(
    reference: nn.Module, example_inputs: Inputs, opts: ChannelOptions, log: list
) -> tuple[float, float]:
    """The reference's measured ms and the target in ms; logged as the first step."""
    base = benchmark(reference, example_inputs, int(opts.threads), warmup=3, repeats=15).median_ms
    target = opts.target_latency_ms if opts.speedup is None else base / opts.speedup
    log.append({"ratio": 0.0, "ms": base, "target_ms": target})
    return base, target


def _unreachable(opts: ChannelOptions, base: float, target: float, at: str) -> PruneError:
    return PruneError(
        f"{'speedup=' + format(opts.speedup, 'g') if opts.speedup else 'target_latency_ms='}"
        f"{'' if opts.speedup else format(target, 'g')} cannot be reached on this CPU at "
        f"{opts.threads} thread(s): the model takes {base:.2f} ms, and the deepest cut "
        f"still gives {at} (target {target:.2f} ms). What is left is in "
        "layers that channel pruning keeps (inputs, outputs, frozen groups): raise the "
        "target, or remove layers with prune_layers."
    )


def solve_latency(
    prune_at: Callable[[float], nn.Module | None],
    reference: nn.Module,
    example_inputs: Inputs,
    opts: ChannelOptions,
    log: list[dict[str, float]],
) -> float:
    """Bisection on the ratio until the pruned model, timed on this CPU, meets the latency
    target (``target_latency_ms``, or the reference's latency over ``speedup``)."""
    threads = int(opts.threads)
    base, target = _latency_target(reference, example_inputs, opts, log)
    if base <= target:
        return 0.0

    def ms_at(r: float) -> float | None:
        model = prune_at(r)
        if model is None:
            return None
        ms = measured_ms(model, reference, example_inputs, threads, base)
        log.append({"ratio": r, "ms": ms})
        return ms

    hi = 0.95 if opts.scope == "local" else opts.max_ratio
    lowest = ms_at(hi)
    if lowest is None or lowest > target:
        at = f"{lowest:.2f} ms" if lowest is not None else "a model that does not run"
        raise _unreachable(opts, base, target, f"{at} (pruning {hi:.0%} of every group)")
    return _bisect(ms_at, target, hi, steps=7)


def solve_allocation(
    prune_with: Callable[[dict[int, float]], nn.Module | None],
    reference: nn.Module,
    example_inputs: Inputs,
    groups: Sequence[ChannelGroup],
    scores: Mapping[int, torch.Tensor],
    opts: ChannelOptions,
    log: list[dict[str, float]],
) -> dict[int, float]:
    """Per-group ratios for a latency target, allocated by ``budget.allocate`` (least
    importance lost per predicted ms saved, each layer's time measured on this CPU at a grid
    of widths), then corrected until the pruned model, timed against the reference, meets the
    target: the prediction's budget is scaled by target / measured, then bisected between a
    budget that met the target and one that missed (at most 8 timed rounds)."""
    base, target = _latency_target(reference, example_inputs, opts, log)
    if base <= target or not groups:
        return {}
    step = int(opts.round_to or 1)
    shapes = layer_shapes(reference, example_inputs)
    terms = layer_terms(groups, shapes)
    curves = LayerCurves(LatencyTable(int(opts.threads)), shapes, terms, step)
    curves.calibrate(base)
    scale = base / max(curves.full_ms(), 1e-9)  # predicted ms -> measured ms
    steps, floors = {}, {}
    for g in groups:
        s = math.lcm(g.multiple, step if g.size >= 4 * step else 1)
        s *= max(1, math.ceil(g.size / (64 * s)))  # at most ~64 widths per group
        steps[g.atom] = s
        floor = max(1, math.ceil(g.size * (1 - min(opts.max_ratio, _MAX_UNEVEN))))
        floors[g.atom] = min(g.size, math.ceil(floor / s) * s)
    size = {g.atom: g.size for g in groups}
    total = sum(size.values())
    budget, best = target / scale, None
    passed, failed = 0.0, math.inf  # the largest budget that met the target, the least that missed
    last: dict[int, int] = {}
    for _ in range(8):
        keep, predicted = allocate(
            groups, scores, terms, curves.ms, budget, steps=steps, floors=floors
        )
        ratios = {a: (size[a] - k) / size[a] for a, k in keep.items() if k < size[a]}
        model = prune_with(ratios)
        if model is None:  # the Pruner finds the groups that break it, and solves again
            return ratios
        ms = measured_ms(model, reference, example_inputs, int(opts.threads), base)
        removed = sum(size[a] - k for a, k in keep.items()) / total
        log.append({"ratio": removed, "predicted_ms": predicted * scale, "ms": ms})
        if ms <= target:
            if budget >= passed:
                best, passed = ratios, budget
            if ms >= 0.95 * target:
                break
        elif all(k <= floors[a] for a, k in keep.items()):
            break  # nothing left to cut
        else:
            failed = min(failed, budget)
        if passed and failed < math.inf:  # bracketed: halve the gap (geometrically)
            budget = math.sqrt(passed * failed)
        else:  # scale by what the measurement says, further when the plan did not change
            factor = min(max(target / ms, 0.5), 2.0)
            if keep == last:
                factor *= 0.85 if ms > target else 1.15
            budget *= factor
        last = keep
    if best is None:
        raise _unreachable(opts, base, target, f"{log[-1]['ms']:.2f} ms")
    return best


def _bisect(
    cost_at: Callable[[float], float | None], target: float, hi: float, steps: int
) -> float:
    """The smallest ratio in (0, ``hi``] found in ``steps`` halvings whose cost meets the
    target (``hi`` meets it; a None cost, a model that does not run, counts as missing it)."""
    lo = 0.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        cost = cost_at(mid)
        if cost is not None and cost <= target:
            hi = mid
        else:
            lo = mid
    return hi
