"""Pruning that never returns a wrong model: run, verify, and keep exactly what must be kept.

The graph rules see numbers, not the code that made them: a forward may hard-code a width
(``torch.split(x, [16, 16])``, a size stored at construction) or index channels by fixed
positions (a channel shuffle with a fixed group count). So every plan is checked twice:

1. the pruned model must **run** on the example inputs with the original output shapes;
2. its outputs must **equal the zero-consumer reference** (DESIGN.md, oracle 1: the original
   with the consumers' weights of the removed channels set to zero) for the exact groups.

Where a check fails, the groups to blame are found by bisection (keeping a group's channels
and planning again), and only those are kept, each named in a warning with the module, the
op and the error; a whole class of modules is never frozen.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..._forward import Inputs, copy_model, eval_mode, relative_error, run_forward
from ...edit.channels import slice_channels_
from ...edit.log import record_edit
from ...errors import ForwardError, PruneError
from ...graph.groups import ChannelGroup, GroupSet
from ...graph.trace import ModelGraph, trace
from .options import ChannelOptions
from .plan import consumer_positions, conv_groups, plan_groups, tensor_plan
from .solve import DeepCutFails, solve_allocation, solve_latency, solve_ratio

__all__ = ["Pruner", "find_culprits"]

# Removing a channel and zeroing what reads it differ only by float summation order; a rule
# that couples the wrong channels gives errors of order one.
VERIFY_TOLERANCE = 1e-3
_MAX_ROUNDS = 8


def find_culprits(
    candidates: Sequence[int], base: frozenset[int], ok: Callable[[frozenset[int]], bool]
) -> set[int]:
    """A small set ``C`` of candidates with ``ok(base | C)``, given ``ok(base | candidates)``.

    Bisection: a half that suffices on its own is searched alone; otherwise each half is
    searched with the other half's culprits kept.
    """
    if len(candidates) <= 1:
        return set(candidates)
    half = len(candidates) // 2
    first, second = list(candidates[:half]), list(candidates[half:])
    if ok(base | frozenset(first)):
        return find_culprits(first, base, ok)
    if ok(base | frozenset(second)):
        return find_culprits(second, base, ok)
    c1 = find_culprits(first, base | frozenset(second), ok)
    c2 = find_culprits(second, base | frozenset(c1), ok)
    return c1 | c2


@dataclass
class Attempt:
    """One plan carried out on a fresh copy of the model."""

    model: nn.Module
    edit: dict[str, Any]
    config_warnings: list[str]
    groups: list[ChannelGroup]
    keep: dict[int, torch.Tensor]
    ratio: float
    result: ModelGraph | ForwardError


class Pruner:
    """Plans, slices and checks, keeping the channels of the groups that break the model."""

    def __init__(
        self,
        work: nn.Module,
        example_inputs: Inputs,
        graph: ModelGraph,
        gset: GroupSet,
        scores: Mapping[int, torch.Tensor],
        opts: ChannelOptions,
        group_ratio: Mapping[int, float],
        meta: bool,
    ) -> None:
        # ``work`` is never pruned itself: each attempt prunes a fresh copy of it (the copy
        # keeps the recorded spec and log, which live in the module's __dict__).
        self.work, self.x = work, example_inputs
        self.graph, self.gset, self.scores = graph, gset, scores
        self.opts, self.group_ratio, self.meta = opts, group_ratio, meta
        self.groups: list[ChannelGroup] = []
        self._expected: Any = None
        self.latency_log: list[dict[str, float]] = []  # a latency solve's timings

    # -- one plan ---------------------------------------------------------------------------
    def attempt(self, excluded: frozenset[int], ratio: float | None = None) -> Attempt:
        """The plan without the ``excluded`` groups at ``ratio`` (by default the option's, or
        the one solved for ``target_macs``; the deepest cut where that one does not run)."""
        active = [g for g in self.groups if g.atom not in excluded]
        group_ratio = self.group_ratio
        latency = self.opts.target_latency_ms is not None or self.opts.speedup is not None
        if ratio is not None:
            r = ratio
        elif latency and self.opts.allocation == "latency":
            self.latency_log.clear()
            free = [g for g in active if g.atom not in self.group_ratio]
            fixed = self.group_ratio  # the user's per-module ratios stay as given

            def prune_with(ratios: dict[int, float]) -> nn.Module | None:
                return self._runnable_at(active, 0.0, {**fixed, **ratios})

            group_ratio = {**fixed, **solve_allocation(
                prune_with, self.work, self.x, free, self.scores, self.opts, self.latency_log
            )}  # fmt: skip
            sizes = sum(g.size for g in active) or 1
            r = sum(group_ratio.get(g.atom, 0.0) * g.size for g in active) / sizes
        elif latency:
            self.latency_log.clear()
            r = solve_latency(
                functools.partial(self._runnable_at, active, group_ratio=self.group_ratio),
                self.work, self.x, self.opts, self.latency_log,
            )  # fmt: skip
        elif self.opts.target_macs is not None:
            try:
                r = solve_ratio(
                    self.work, self.x, self.gset, active, self.scores, self.opts, self.group_ratio
                )
            except DeepCutFails as deep:
                r = deep.ratio
        else:
            r = float(self.opts.ratio)
        keep = plan_groups(active, self.scores, r, self.opts, group_ratio)
        pruned = copy_model(self.work)
        edit, config_warnings = slice_channels_(
            pruned,
            tensor_plan(self.gset, keep),
            conv_groups(self.gset, keep),
            record=False,  # recorded once it is accepted
            why={"by": "prune_channels", "options": self.opts.to_dict()},
        )
        return Attempt(pruned, edit, config_warnings, active, keep, r, self._check_runs(pruned))

    def _runnable_at(
        self, active: list[ChannelGroup], ratio: float, group_ratio: Mapping[int, float]
    ) -> nn.Module | None:
        """The model pruned at ``ratio`` (``group_ratio`` where given) if it runs (a latency
        solve times it), else None."""
        keep = plan_groups(active, self.scores, ratio, self.opts, group_ratio)
        model = copy_model(self.work)
        slice_channels_(model, tensor_plan(self.gset, keep), conv_groups(self.gset, keep),
                        record=False)  # fmt: skip
        try:
            with eval_mode(model), torch.no_grad():
                run_forward(model, self.x)
        except ForwardError:
            return None
        return model

    def _check_runs(self, model: nn.Module) -> ModelGraph | ForwardError:
        """The pruned model's graph, or the failure of its forward."""
        try:
            new = trace(model, self.x, meta=self.meta)
        except ForwardError as exc:
            return exc
        old_shapes = [self.graph.tensors[t].shape for t in self.graph.outputs]
        new_shapes = [new.tensors[t].shape for t in new.outputs]
        if old_shapes != new_shapes:
            return ForwardError(f"output shapes changed from {old_shapes} to {new_shapes}")
        return new

    # -- the oracle -------------------------------------------------------------------------
    def _pruned_exact(self, att: Attempt) -> list[ChannelGroup]:
        return [g for g in att.groups if g.exact and len(att.keep[g.atom]) < g.size]

    def error(self, att: Attempt) -> float:
        """Relative output error of ``att`` against the zero-consumer reference of its exact
        groups (0.0 when it has none); ``att`` must prune only exact groups."""
        exact = self._pruned_exact(att)
        if not exact:
            return 0.0
        ref = copy_model(self.work)
        tensors = dict(ref.named_parameters(remove_duplicate=False))
        with torch.no_grad():
            for g in exact:
                for name, dims in consumer_positions(g, att.keep[g.atom]).items():
                    for dim, positions in dims.items():
                        tensors[name].index_fill_(int(dim), torch.tensor(positions), 0.0)
        with eval_mode(ref), eval_mode(att.model), torch.no_grad():
            err = relative_error(run_forward(ref, self.x), run_forward(att.model, self.x))
        return 0.0 if math.isnan(err) else err  # outputs that cannot be compared

    def _verifies(self, excluded: frozenset[int]) -> bool:
        inexact = frozenset(g.atom for g in self.groups if not g.exact)
        att = self.attempt(excluded | inexact)
        return not isinstance(att.result, ForwardError) and self.error(att) <= VERIFY_TOLERANCE

    def _runs(self, excluded: frozenset[int], ratio: float | None = None) -> bool:
        return not isinstance(self.attempt(excluded, ratio).result, ForwardError)

    # -- the loop ---------------------------------------------------------------------------
    def run(
        self, groups: list[ChannelGroup], warnings: list[str]
    ) -> tuple[nn.Module, ModelGraph, list[ChannelGroup], dict[int, torch.Tensor], float, dict]:
        self.groups = groups
        excluded: frozenset[int] = frozenset()
        checkable = not _on_meta(self.x)
        for _ in range(_MAX_ROUNDS):
            att = self.attempt(excluded)
            if isinstance(att.result, ForwardError):
                excluded |= self._blame_failure(att, excluded, warnings)
                continue
            if checkable:
                blamed = self._blame_mismatch(att, excluded, warnings)
                if blamed:
                    excluded |= blamed
                    continue
            record_edit(att.model, att.edit, owned=True)
            warnings.extend(att.config_warnings)
            return att.model, att.result, att.groups, att.keep, att.ratio, att.edit
        raise PruneError(
            "internal error: pruning did not converge to a runnable model; please report it, "
            "and pass the failing modules in ignore=[...] to work around it."
        )

    def _blame_failure(
        self, att: Attempt, excluded: frozenset[int], warnings: list[str]
    ) -> frozenset[int]:
        failed = att.result
        assert isinstance(failed, ForwardError)
        pruned = [g for g in att.groups if len(att.keep[g.atom]) < g.size]
        near = [g.atom for g in pruned if _touches(g, failed.module)]
        everything = [g.atom for g in pruned]
        runs = functools.partial(self._runs, ratio=att.ratio)  # the failing plan's cut
        if near and runs(excluded | frozenset(near)):
            candidates = near
        elif everything and runs(excluded | frozenset(everything)):
            candidates = everything
        else:
            raise PruneError(
                f"internal error: the pruned model does not run ({failed}), even with every "
                "group kept. Please report it; pass the failing module in ignore=[...] to work "
                "around it."
            ) from failed
        culprits = find_culprits(candidates, excluded, runs)
        why = str(failed).split(": ", 2)[-1][:160]
        for g in _named(self.groups, culprits):
            warnings.append(
                f"kept channels of {_modules(g)}: the forward of '{failed.module or 'the model'}'"
                f" does not accept them pruned ({why})"
            )
        return frozenset(culprits)

    def _blame_mismatch(
        self, att: Attempt, excluded: frozenset[int], warnings: list[str]
    ) -> frozenset[int]:
        if not self._pruned_exact(att):
            return frozenset()
        inexact = frozenset(g.atom for g in self.groups if not g.exact)
        check = (
            att if not inexact & {g.atom for g in att.groups} else self.attempt(excluded | inexact)
        )
        if isinstance(check.result, ForwardError):
            return frozenset()  # the exact groups alone do not run: the failure loop decides
        err = self.error(check)
        if err <= VERIFY_TOLERANCE:
            return frozenset()
        candidates = [g.atom for g in self._pruned_exact(check)]
        culprits = find_culprits(candidates, excluded, self._verifies)
        for g in _named(self.groups, culprits):
            warnings.append(
                f"kept channels of {_modules(g)}: pruning them changed the model's outputs "
                f"(relative error {err:.2g} against the zero-consumer reference); the code "
                "indexes these channels by fixed numbers (e.g. a channel shuffle with a fixed "
                "group count, or a slice with fixed bounds)"
            )
        return frozenset(culprits)


def _touches(group: ChannelGroup, module: str) -> bool:
    if not module:
        return False
    return any(m.param.startswith(module + ".") for m in group.members) or module in group.modules


def _named(groups: Sequence[ChannelGroup], atoms: set[int]) -> list[ChannelGroup]:
    return [g for g in groups if g.atom in atoms]


def _modules(group: ChannelGroup) -> str:
    names = group.modules[:3]
    more = f" and {len(group.modules) - 3} more" if len(group.modules) > 3 else ""
    return ", ".join(f"'{n}'" for n in names) + more


def _on_meta(x: Any) -> bool:
    from torch.utils._pytree import tree_flatten

    return any(isinstance(t, torch.Tensor) and t.is_meta for t in tree_flatten(x)[0])
