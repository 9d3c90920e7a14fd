"""Planning channel removal: pure functions from scores and groups to kept positions.

Nothing here changes a model: ``slimtorch.edit.slice_channels_`` applies what these compute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ...graph.groups import ChannelGroup, GroupSet, Member, member_positions
from .options import ChannelOptions

__all__ = ["consumer_positions", "conv_groups", "group_rows", "plan_groups", "tensor_plan"]


def _n_keep(n: int, ratio: float, round_to: int | None, multiple: int = 1) -> int:
    keep = n - int(math.floor(n * ratio + 1e-9))
    if round_to and n >= 4 * round_to:
        keep = min(n, int(math.ceil(keep / round_to)) * round_to)
    if multiple > 1 and n % multiple == 0:  # an op that needs aligned widths
        keep = min(n, int(math.ceil(keep / multiple)) * multiple)
    return max(1, keep)


def plan_groups(
    groups: Sequence[ChannelGroup],
    scores: Mapping[int, torch.Tensor],
    ratio: float,
    opts: ChannelOptions,
    group_ratio: Mapping[int, float],
) -> dict[int, torch.Tensor]:
    """Kept indices (sorted) per group atom; a pure function of the scores."""
    keep: dict[int, torch.Tensor] = {}
    if opts.scope == "global" and not group_ratio:
        normed = {g.atom: scores[g.atom] / scores[g.atom].mean().clamp_min(1e-12) for g in groups}
        total = sum(g.size for g in groups)
        flat = torch.cat([normed[g.atom] for g in groups])
        owner = torch.cat([torch.full((g.size,), i) for i, g in enumerate(groups)])
        order = torch.argsort(flat, stable=True)
        removed = [0] * len(groups)
        budget = int(round(ratio * total))
        for j in order.tolist():
            if budget <= 0:
                break
            i = int(owner[j])
            if removed[i] < math.floor(groups[i].size * opts.max_ratio):
                removed[i] += 1
                budget -= 1
        per_ratio = {g.atom: removed[i] / g.size for i, g in enumerate(groups)}
    elif opts.importance == "zeroed":  # drop exactly the all-zero channels
        per_ratio = {g.atom: float((scores[g.atom] == 0).sum()) / g.size for g in groups}
    else:
        per_ratio = {g.atom: group_ratio.get(g.atom, ratio) for g in groups}
    round_to = None if opts.importance == "zeroed" else opts.round_to
    for g in groups:
        k = _n_keep(g.size, per_ratio[g.atom], round_to, g.multiple)
        top = torch.argsort(scores[g.atom], descending=True, stable=True)[:k]
        keep[g.atom] = torch.sort(top).values
    return keep


def tensor_plan(
    gset: GroupSet, keep: Mapping[int, torch.Tensor]
) -> dict[str, dict[int, list[int]]]:
    """Kept positions per (tensor, dim) for every tensor a pruned group touches."""
    touched = tensor_plan_dims(gset, keep)
    atoms = gset.ctx.atoms
    out: dict[str, dict[int, list[int]]] = {}
    for name, dims in touched.items():
        out[name] = {}
        for dim in sorted(dims):
            positions, offset = [], 0
            for seg in gset.layout(name, dim):
                factors = tuple(atoms.size[atoms.find(a)] for a in seg)
                pos = next((i for i, a in enumerate(seg) if atoms.find(a) in keep), None)
                if pos is None:
                    positions.append(torch.arange(offset, offset + math.prod(factors)))
                else:
                    m = Member(name, dim, offset, factors, pos, frozenset())
                    positions.append(member_positions(m, keep[atoms.find(seg[pos])]))
                offset += math.prod(factors)
            out[name][dim] = torch.cat(positions).tolist()
    return out


def conv_groups(gset: GroupSet, keep: Mapping[int, torch.Tensor]) -> dict[str, dict[str, Any]]:
    """What module surgery needs beyond the sliced tensors: a conv's new group count, and
    for each pruned weight the factors of each segment of its dims as ``[[size, kept], ...]``
    (an attention
    module reads its head count and head_dim off its projections')."""
    atoms = gset.ctx.atoms
    info: dict[str, dict[str, Any]] = {}
    for name, dims in tensor_plan_dims(gset, keep).items():
        module, _, attr = name.rpartition(".")
        if attr != "weight":
            continue
        factors = {}
        for dim in dims:
            factors[dim] = [
                [[atoms.size[r], len(keep[r]) if r in keep else atoms.size[r]] for r in rs]
                for rs in ([atoms.find(a) for a in seg] for seg in gset.layout(name, dim))
            ]
        info.setdefault(module, {})["factors"] = factors
    for module, layout in gset.ctx.conv_groups.items():
        total = 0
        for seg in atoms.expand(layout):
            n = 1
            for a in seg:
                r = atoms.find(a)
                n *= len(keep[r]) if r in keep else atoms.size[r]
            total += n
        info.setdefault(module, {})["groups"] = total if total else 1
    return info


def tensor_plan_dims(gset: GroupSet, keep: Mapping[int, torch.Tensor]) -> dict[str, set[int]]:
    """The (tensor, dims) that pruned groups touch."""
    touched: dict[str, set[int]] = {}
    for g in gset.groups:
        if g.atom in keep and len(keep[g.atom]) < g.size:
            for m in g.members:
                touched.setdefault(m.param, set()).add(m.dim)
    return touched


def consumer_positions(group: ChannelGroup, kept: torch.Tensor) -> dict[str, dict[str, list]]:
    """Positions of removed channels in the weights that read them (summed-over dims).

    Zeroing these in the original model gives the reference that the pruned model equals
    when nothing normalizes across the group (DESIGN.md, oracle 1).
    """
    removed = torch.tensor(sorted(set(range(group.size)) - set(kept.tolist())), dtype=torch.long)
    out: dict[str, dict[str, list]] = {}
    if not len(removed):
        return out
    for m in group.members:
        if "contract" in m.roles:  # a dim may hold the group twice (e.g. cat([x, f(x)]))
            out.setdefault(m.param, {}).setdefault(str(m.dim), []).extend(
                member_positions(m, removed).tolist()
            )
    return out


def group_rows(
    groups: Sequence[ChannelGroup], keep: Mapping[int, torch.Tensor]
) -> list[dict[str, Any]]:
    """The plan's per-group record: modules, sizes, removed indices, consumer positions."""
    return [
        {
            "modules": g.modules,
            "size": g.size,
            "kept": len(keep[g.atom]),
            "removed": sorted(set(range(g.size)) - set(keep[g.atom].tolist())),
            "exact": g.exact,
            "consumers": consumer_positions(g, keep[g.atom]),
        }
        for g in groups
    ]
