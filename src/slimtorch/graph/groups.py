"""Channel groups: the sets of (parameter, dim, positions) that must be pruned together.

Built from the layouts of ``rules``: every leaf atom that some layer produces (a conv's or
linear's output features, an embedding's features) and that is not frozen is one group. Its
members are all parameters and buffers whose dims contain it: the producing layers, their
norms and biases, residual partners, and the consumers that read it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .._registry import Registry
from .dims import Layout
from .rules import DimContext
from .trace import ModelGraph

__all__ = [
    "Member",
    "ChannelGroup",
    "GroupSet",
    "build_groups",
    "register_constraint",
    "register_sized_split",
]


@dataclass(frozen=True)
class Member:
    """Where a group's indices sit in one parameter dim.

    Index ``i`` of the group covers, in ``param``'s dim ``dim``, the positions
    ``offset + ravel((..., i at factor pos, ...), factors)`` for every value of the other
    factors: ``factors`` is the row-major product this dim is made of at that offset.
    """

    param: str
    dim: int
    offset: int
    factors: tuple[int, ...]
    pos: int
    roles: frozenset[str]


@dataclass
class ChannelGroup:
    """One prunable index space and every place it appears."""

    atom: int
    size: int
    members: list[Member]
    exact: bool  # no normalization/softmax/reduction mixes across it
    modules: list[str] = field(default_factory=list)  # modules that produce it
    multiple: int = 1  # kept counts must be a multiple of this (an op's alignment)

    def describe(self) -> str:
        names = ", ".join(self.modules[:3]) + (" ..." if len(self.modules) > 3 else "")
        return f"{self.size} channels of {names}"


@dataclass
class GroupSet:
    """The groups of a model, the frozen ones with their reasons, and the layouts."""

    groups: list[ChannelGroup]
    frozen: dict[str, str]  # module -> why its output channels are not pruned
    ctx: DimContext
    param_tids: dict[str, int]

    def layout(self, param: str, dim: int) -> Layout:
        return self.ctx.atoms.expand(self.ctx.L(self.param_tids[param], dim))


Constraint = Callable[[nn.Module, str, DimContext, dict[str, int]], None]
CONSTRAINTS: Registry[Constraint] = Registry("pruning constraint", "class")


def register_constraint(
    *types: type | str, override: bool = False
) -> Callable[[Constraint], Constraint]:
    """Registers a hook ``fn(module, name, ctx, param_tids)`` that freezes what a module
    type cannot hold after pruning (called once per module instance). Types may be classes
    or ``"package.module.ClassName"`` strings, so optional libraries need not be imported;
    subclasses inherit the hook of their nearest registered base."""
    return CONSTRAINTS.register(*types, override=override)


SIZED_SPLITS: Registry[bool] = Registry("sized split", "class", inherit="same_forward")


def register_sized_split(*types: type | str, override: bool = False) -> None:
    """Declares that these modules split tensors by sizes read off their own parameters
    (e.g. one BatchNorm per part), so each part of a split may keep its own count.
    A split into fixed unequal sizes elsewhere is frozen, since the code would cut the
    pruned tensor at the old positions."""
    for t in types:
        SIZED_SPLITS.add(t, True, override=override)


def _constraint(module: nn.Module) -> Constraint | None:
    return CONSTRAINTS.lookup(type(module))


def freeze_module(
    module: nn.Module, name: str, ctx: DimContext, tids: dict[str, int], reason: str
) -> None:
    """Freezes every dim of every parameter of ``module``."""
    for pname, _ in module.named_parameters(prefix=name):
        if pname in tids:
            ctx.freeze_tensor(tids[pname], reason)


@register_constraint(nn.MultiheadAttention)
def _mha(module: nn.Module, name: str, ctx: DimContext, tids: dict[str, int]) -> None:
    # nn.MultiheadAttention needs embed_dim == q/k/v width == its input width, so neither its
    # heads nor the hidden size it sits on can shrink independently.
    freeze_module(
        module, name, ctx, tids, f"nn.MultiheadAttention '{name}' ties heads to its embed_dim"
    )


@register_constraint("torchvision.models.swin_transformer.ShiftedWindowAttention")
def _swin(module: nn.Module, name: str, ctx: DimContext, tids: dict[str, int]) -> None:
    # Its forward derives head_dim as C // num_heads from the input width C.
    freeze_module(
        module,
        name,
        ctx,
        tids,
        f"'{name}' derives head_dim from its input width (torchvision Swin)",
    )


def _module_of(param: str) -> str:
    return param.rpartition(".")[0]


def build_groups(model: nn.Module, graph: ModelGraph, factor: str = "outer") -> GroupSet:
    """Runs the dimension rules over ``graph`` and collects the channel groups.

    Where one dim is a product of several candidate factors, ``factor`` says which one is
    pruned: ``"outer"`` (heads, groups) or ``"inner"`` (head_dim, channels per group)."""
    ctx = DimContext(graph)
    ctx.sized_splits = {
        n for n, m in model.named_modules() if SIZED_SPLITS.lookup(type(m)) is not None
    }
    ctx.run()
    atoms = ctx.atoms
    tids = {}
    for t in graph.tensors.values():
        if t.kind in ("param", "buffer") and t.name is not None:
            tids.setdefault(t.name, t.tid)
    for name, module in model.named_modules():
        hook = _constraint(module)
        if hook is not None:
            hook(module, name, ctx, tids)

    def leaves(a: int) -> list[int]:
        r = atoms.find(a)
        if r in atoms.refine:
            return [x for c in atoms.refine[r][1] for x in leaves(c)]
        return [r]

    # Atoms left whole inside a product (an interleaved split) cannot be pruned piecewise.
    entries: list[tuple[str, int, int, tuple[int, ...]]] = []
    for name, tid in tids.items():
        for dim in range(len(graph.tensors[tid].shape)):
            offset = 0
            for seg in atoms.expand(ctx.L(tid, dim)):
                roots = tuple(atoms.find(a) for a in seg)
                for a in roots:
                    if a in atoms.refine:
                        for leaf in leaves(a):
                            atoms.freeze(leaf, "interleaved channel split (e.g. a shuffle)")
                entries.append((name, dim, offset, roots))
                offset += atoms.seg_size(seg)

    def candidate(a: int) -> bool:
        r = atoms.find(a)
        return (
            atoms.has(r, "produce")
            and r not in atoms.frozen
            and r not in atoms.refine
            and atoms.size[r] > 1
        )

    if factor == "outer":
        for r in [r for r, names in atoms.flags.items() if "score" in names]:
            if atoms.find(r) == r:
                atoms.freeze(
                    r,
                    "summed over between two activations (attention head_dim of q.k); "
                    "whole heads are pruned, factor='inner' prunes head_dim",
                )

    # Where one dim is a product of several candidates (heads x head_dim, groups x channels
    # per group), prune one factor only, so that ratios do not compound: by default the
    # outermost (whole heads or groups, which code that reshapes by a fixed head_dim or
    # group width still accepts), with factor="inner" the innermost.
    for _, _, _, roots in entries:
        cands = [a for a in roots if candidate(a)]
        rest = cands[1:] if factor == "outer" else cands[:-1]
        for a in rest:
            atoms.freeze(
                a,
                f"{'inner' if factor == 'outer' else 'outer'} factor of a product "
                f"(heads x head_dim, groups x channels) with factor={factor!r}",
            )

    members: dict[int, list[Member]] = {}
    for name, dim, offset, roots in entries:
        factors = tuple(atoms.size[atoms.find(a)] for a in roots)
        roles = frozenset(ctx.roles.get((tids[name], dim), ()))
        for pos, a in enumerate(roots):
            r = atoms.find(a)
            if candidate(r):
                members.setdefault(r, []).append(Member(name, dim, offset, factors, pos, roles))

    groups = []
    for r, mem in members.items():
        producers = sorted({_module_of(m.param) for m in mem if "produce" in m.roles})
        if not producers:
            continue
        exact = not atoms.has(r, "cross")
        multiple = math.lcm(
            1, *(int(f.split(":")[1]) for f in atoms.flags.get(r, ()) if f.startswith("multiple:"))
        )
        groups.append(ChannelGroup(r, atoms.size[r], mem, exact, producers, multiple))
    frozen = _frozen_reasons(ctx, tids, graph)
    return GroupSet(groups, frozen, ctx, tids)


def _frozen_reasons(ctx: DimContext, tids: dict[str, int], graph: ModelGraph) -> dict[str, str]:
    """For each producing module whose output channels are frozen, the first reason."""
    out: dict[str, str] = {}
    atoms = ctx.atoms
    for (tid, dim), roles in ctx.roles.items():
        if "produce" not in roles:
            continue
        name = graph.tensors[tid].name or ""
        for seg in atoms.expand(ctx.L(tid, dim)):
            for a in seg:
                r = atoms.find(a)
                if r in atoms.frozen and atoms.size[r] > 1:
                    out.setdefault(_module_of(name), atoms.frozen[r])
    return out


def member_positions(member: Member, keep: torch.Tensor) -> torch.Tensor:
    """Positions in the member's dim that survive when the group keeps indices ``keep``."""
    grids = [torch.arange(f) for f in member.factors]
    grids[member.pos] = keep
    mesh = torch.meshgrid(*grids, indexing="ij")
    flat = torch.zeros_like(mesh[0])
    for g, f in zip(mesh, member.factors):
        flat = flat * f + g
    return member.offset + flat.reshape(-1)


def member_rows(param: torch.Tensor, member: Member) -> torch.Tensor:
    """The member's slice of ``param`` as ``[group size, everything else]``."""
    seg = param.detach().narrow(member.dim, member.offset, math.prod(member.factors))
    seg = seg.movedim(member.dim, 0).reshape(*member.factors, -1)
    return seg.movedim(member.pos, 0).reshape(member.factors[member.pos], -1)
