"""The search space of a model and the policies in it: which blocks go, how wide each stage
stays, which convs are rewritten; and how a policy becomes a model.

A policy is built through the public compression functions only (``convert`` ->
``prune_layers`` -> ``prune_channels``), so every change is an edit of the edit layer and the
chosen model saves and reloads like any pruned model. Rewrites come first (they address the
original module names, which removing blocks renumbers), channel pruning last (its ratios
address the names of the model it prunes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .._forward import Inputs
from ..convert import convert
from ..graph.blocks import find_blocks
from ..graph.trace import trace
from ..prune.channels import prune_channels
from ..prune.depth import prune_layers
from .options import SearchOptions

__all__ = ["Policy", "Space", "build_structure", "prune_width"]


@dataclass(frozen=True)
class Policy:
    """One point of the space. ``width`` holds only the stages whose multiplier is not 1."""

    remove: tuple[str, ...] = ()
    width: tuple[tuple[str, float], ...] = ()
    rewrite: tuple[tuple[str, str], ...] = ()

    @classmethod
    def make(
        cls,
        remove: Any = (),
        width: Mapping[str, float] | None = None,
        rewrite: Mapping[str, str] | None = None,
    ) -> Policy:
        """The canonical form: a rewrite inside a removed block is dropped (it changes
        nothing), so two policies that build the same model have one key."""
        gone = sorted(set(remove))
        inside = lambda n: any(n == b or n.startswith(b + ".") for b in gone)  # noqa: E731
        return cls(
            remove=tuple(gone),
            width=tuple(sorted((k, float(v)) for k, v in (width or {}).items() if v != 1.0)),
            rewrite=tuple(sorted((n, k) for n, k in (rewrite or {}).items() if not inside(n))),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "remove": list(self.remove),
            "width": dict(self.width),
            "rewrite": dict(self.rewrite),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Policy:
        return cls.make(d.get("remove", ()), d.get("width"), d.get("rewrite"))

    @property
    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def describe(self, level: float | None = None) -> str:
        """One line; at channel level 0 the width multipliers change nothing and are left out."""
        parts = []
        if self.remove:
            parts.append(f"-{len(self.remove)} blocks ({', '.join(self.remove)})")
        if self.width and level != 0:
            parts.append("width " + ", ".join(f"{s or '<root>'} x{m:g}" for s, m in self.width))
        if self.rewrite:
            parts.append(f"{len(self.rewrite)} rewritten ({', '.join(n for n, _ in self.rewrite)})")
        return "; ".join(parts) or "uniform width"


@dataclass
class Space:
    """The genes of a model: removable blocks, stages (containers of those blocks), convs
    that can be rewritten."""

    blocks: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    rewritable: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, model: nn.Module, example_inputs: Inputs, opts: SearchOptions) -> Space:
        graph = trace(model, example_inputs, meta=True)
        found = [b for b in find_blocks(model, graph).default if b.same_shape]
        space = cls()
        if "depth" in opts.space:
            space.blocks = [b.name for b in found]
        if "width" in opts.space:
            space.stages = list(dict.fromkeys(b.container for b in found)) or [""]
        if "rewrite" in opts.space and opts.rewrites:
            space.rewritable = [n for n, m in model.named_modules() if _rewritable(n, m, graph)]
        return space

    def genes(self) -> int:
        return len(self.blocks) + len(self.stages) + len(self.rewritable)


def _rewritable(name: str, module: nn.Module, graph: Any) -> bool:
    """Dense k x k convs with enough channels to factor, that ran in the trace."""
    if name not in graph.calls:
        return False
    if isinstance(module, nn.Conv2d):
        return (
            module.groups == 1
            and max(module.kernel_size) > 1
            and min(module.in_channels, module.out_channels) >= 8
        )
    return False


def build_structure(
    model: nn.Module, example_inputs: Inputs, policy: Policy, opts: SearchOptions
) -> nn.Module:
    """The policy's rewrites and block removals applied (a new model; ``model`` untouched)."""
    out = model
    by_kind: dict[str, list[str]] = {}
    for name, kind in policy.rewrite:
        by_kind.setdefault(kind, []).append(name)
    for kind, names in sorted(by_kind.items()):
        out = convert(out, kind, names, example_inputs, **opts.rewrites[kind]).model
    if policy.remove:
        out = prune_layers(out, example_inputs, blocks=list(policy.remove)).model
    return out


def stage_ratios(
    model: nn.Module, policy: Policy, stages: list[str], level: float, max_ratio: float
) -> dict[str, float]:
    """Per-module channel ratios: the level times the multiplier of the module's stage."""
    mult = dict(policy.width)
    ordered = sorted((s for s in stages if s), key=len, reverse=True)
    out = {}
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
            continue
        stage = next((s for s in ordered if name == s or name.startswith(s + ".")), "")
        out[name] = round(min(max_ratio, level * mult.get(stage, 1.0)), 4)
    return out


def prune_width(
    structure: nn.Module,
    example_inputs: Inputs,
    policy: Policy,
    stages: list[str],
    level: float,
    opts: SearchOptions,
) -> nn.Module:
    """Channels pruned from the structure at ``level`` (L1), stage by stage."""
    if level <= 0:
        return structure
    ratios = stage_ratios(structure, policy, stages, level, opts.max_ratio)
    return prune_channels(structure, example_inputs, ratio=level, ratios=ratios).model
