"""Removable blocks: the units of a traced model that depth pruning may take out whole.

A unit is a run of children of an ``nn.Sequential`` (a residual block, a transformer layer, or
a conv with the norm and activation that follow it) or one child of an ``nn.ModuleList`` (the
layers a Hugging Face encoder loops over). It is *same-shape* when its first input and first
output have one shape, so that the identity can stand in for it, and *residual* when an add
inside it reads its input (a skip connection: removing it keeps the signal's path).

Which units are offered by default: the residual ones when the model has any (finest first:
blocks, not the stages that hold them), else the same-shape layers of its ``Sequential``
containers. Everything here reads the model's module tree and its trace; nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .trace import ModelGraph

__all__ = ["Block", "BlockSet", "find_blocks"]

_ADDS = frozenset({torch.ops.aten.add, torch.ops.aten.add_})
# Ops that compute (a unit starts at a child that calls one of these).
_COMPUTE = frozenset(
    {
        torch.ops.aten.convolution,
        torch.ops.aten._convolution,
        torch.ops.aten.addmm,
        torch.ops.aten.mm,
        torch.ops.aten.bmm,
        torch.ops.aten.matmul,
        torch.ops.aten.linear,
        torch.ops.aten.baddbmm,
    }
)


@dataclass(frozen=True)
class Block:
    """One removable unit.

    Attributes:
        name: the unit's name: its module, or ``first..last`` for a run of children.
        members: module names removed together, in order.
        container: the ``Sequential`` / ``ModuleList`` holding the members.
        index: position of the first member in the container.
        in_shape / out_shape: shapes of its first input and first output.
        residual: an add inside the unit reads its input.
        in_tid / out_tid: those tensors in the trace (consecutive units chain by them).
        ops: indices of every op called inside the unit (children included).
    """

    name: str
    members: tuple[str, ...]
    container: str
    index: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    residual: bool
    in_tid: int
    out_tid: int
    ops: tuple[int, ...] = ()

    @property
    def same_shape(self) -> bool:
        return self.in_shape == self.out_shape


@dataclass
class BlockSet:
    """Units of a model. ``default`` are offered to depth pruning without being named;
    ``units`` holds every unit found (shape-changing ones too, which a fitted projection can
    replace when named); ``skipped`` says why a container's children are not units."""

    units: list[Block]
    default: list[Block]
    skipped: dict[str, str] = field(default_factory=dict)

    def by_name(self) -> dict[str, Block]:
        out = {}
        for b in self.units:
            out[b.name] = b
            if len(b.members) == 1:
                out[b.members[0]] = b
        return out


def _subtree_ops(graph: ModelGraph) -> dict[str, list[int]]:
    """Op indices per module name, each op counted for its module and every ancestor."""
    out: dict[str, list[int]] = {}
    for node in graph.nodes:
        name = node.module
        while True:
            out.setdefault(name, []).append(node.index)
            if not name:
                break
            name = name.rpartition(".")[0]
    return out


def _runs(
    children: list[str], computes: set[str], keeps: set[str], is_list: bool
) -> list[list[str]]:
    """Children grouped into units: each of a ModuleList alone; in a Sequential, a unit
    starts at each child that computes and takes the same-shape children that follow (norms,
    activations, dropout), so a conv is removed with its batch norm; a pooling ends it."""
    if is_list:
        return [[c] for c in children]
    runs: list[list[str]] = []
    open_run = False
    for child in children:
        if child in computes:
            runs.append([child])
            open_run = True
        elif open_run and child in keeps:
            runs[-1].append(child)
        else:
            open_run = False
    return runs


def _same(graph: ModelGraph, name: str) -> bool:
    call = graph.calls[name]
    if call.in_tid is None or call.out_tid is None:
        return False
    return graph.tensors[call.in_tid].shape == graph.tensors[call.out_tid].shape


def _contains(outer: Block, inner: Block) -> bool:
    return outer is not inner and any(
        i == o or i.startswith(o + ".") for i in inner.members for o in outer.members
    )


def find_blocks(model: nn.Module, graph: ModelGraph) -> BlockSet:
    """The removable units of ``model``, read from its module tree and a trace of it."""
    ops = _subtree_ops(graph)
    units: list[Block] = []
    skipped: dict[str, str] = {}
    for cname, container in model.named_modules():
        if not isinstance(container, nn.Sequential | nn.ModuleList):
            continue
        prefix = f"{cname}." if cname else ""
        names = [prefix + k for k in container._modules]
        called = [n for n in names if n in graph.calls]
        if not called:
            continue
        if any(graph.calls[n].count != 1 for n in called):
            skipped[cname] = "its children run more than once per forward (shared weights)"
            continue
        computes = {
            n for n in called if any(graph.nodes[i].packet in _COMPUTE for i in ops.get(n, ()))
        }
        keeps = {n for n in called if _same(graph, n)}
        for run in _runs(called, computes, keeps, isinstance(container, nn.ModuleList)):
            first, last = graph.calls[run[0]], graph.calls[run[-1]]
            if first.in_tid is None or last.out_tid is None:
                continue
            inside = sorted({i for n in run for i in ops.get(n, ())})
            residual = any(
                graph.nodes[i].packet in _ADDS and first.in_tid in graph.nodes[i].inputs
                for i in inside
            )
            units.append(
                Block(
                    name=run[0] if len(run) == 1 else f"{run[0]}..{run[-1].rpartition('.')[2]}",
                    members=tuple(run),
                    container=cname,
                    index=names.index(run[0]),
                    in_shape=graph.tensors[first.in_tid].shape,
                    out_shape=graph.tensors[last.out_tid].shape,
                    residual=residual,
                    in_tid=first.in_tid,
                    out_tid=last.out_tid,
                    ops=tuple(inside),
                )
            )
    same = [u for u in units if u.same_shape]
    residual = [u for u in same if u.residual]
    # finest residual units (blocks, not the stages holding them)
    residual = [u for u in residual if not any(_contains(u, v) for v in residual)]
    # else the outermost same-shape layers (a conv unit, not the conv inside it)
    default = residual or [u for u in same if not any(_contains(v, u) for v in same)]
    return BlockSet(units, default, skipped)
