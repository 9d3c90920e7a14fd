"""``prune_channels``: structured pruning that physically removes channels.

Pipeline: trace -> channel groups -> importance -> kept indices per group -> surgery. The
result is a plain, smaller ``nn.Module``; the input model is untouched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from .._forward import Inputs, check_model, eval_mode, split_inputs
from ..errors import ForwardError, PruneError
from ..graph.groups import ChannelGroup, GroupSet, Member, build_groups, member_positions
from ..graph.trace import trace
from ..io.plan import record_edit
from ..io.spec import remember_origin
from ..measure.analyze import count_macs
from ..report.table import format_table, human
from .hf_config import config_updates
from .importance import importance_fn
from .options import ChannelOptions, check_module_names
from .surgery import apply_prune_edit_, module_attrs

__all__ = ["PruneResult", "prune_channels", "plan_groups"]


@dataclass
class PruneResult:
    """What ``prune_channels`` produced.

    Attributes:
        model: the pruned model, a plain ``nn.Module`` with channels removed.
        plan: JSON-serializable record: groups with kept/removed indices, frozen modules with
            reasons, and the edit that ``.slim`` files replay.
        warnings: what was not pruned and why (ops without rules, frozen groups, ...).
        before / after: params and MACs.
    """

    model: nn.Module
    plan: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        rows = [
            (
                k,
                human(self.before[k]),
                human(self.after[k]),
                f"{self.after[k] / max(self.before[k], 1):.2f}x",
            )
            for k in ("params", "macs")
        ]
        return format_table(("", "before", "after", "ratio"), rows)

    def __str__(self) -> str:
        n = len(self.plan["groups"])
        pruned = sum(1 for g in self.plan["groups"] if g["removed"])
        return (
            f"{self.summary()}\n{pruned}/{n} channel groups pruned, {len(self.warnings)} warnings"
        )


def _unwrap(model: nn.Module, warnings: list[str]) -> nn.Module:
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    if isinstance(model, wrappers):
        warnings.append(
            f"unwrapped {type(model).__name__}: pruned its .module; wrap the result again "
            "for multi-device training"
        )
        return model.module
    return model


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    out = dict(model.named_parameters(remove_duplicate=False))
    out.update(model.named_buffers(remove_duplicate=False))
    return out


def _taylor_grads(
    model: nn.Module, batch: Any, loss_fn: Callable | None
) -> dict[str, torch.Tensor]:
    if batch is None or loss_fn is None:
        raise PruneError(
            "importance='taylor' needs a batch and a loss: pass batch=(inputs, targets) and "
            "loss_fn=torch.nn.functional.cross_entropy (or your own loss(output, target))."
        )
    inputs, target = batch
    work = copy.deepcopy(model)
    with eval_mode(work), torch.enable_grad():
        args, kwargs = split_inputs(inputs)
        loss = loss_fn(work(*args, **kwargs), target)
        loss.backward()
    return {n: p.grad for n, p in work.named_parameters() if p.grad is not None}


def _n_keep(n: int, ratio: float, round_to: int | None) -> int:
    keep = n - int(math.floor(n * ratio + 1e-9))
    if round_to and n >= 4 * round_to:
        keep = min(n, int(math.ceil(keep / round_to)) * round_to)
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
        k = _n_keep(g.size, per_ratio[g.atom], round_to)
        top = torch.argsort(scores[g.atom], descending=True, stable=True)[:k]
        keep[g.atom] = torch.sort(top).values
    return keep


def _tensor_plan(
    gset: GroupSet, keep: Mapping[int, torch.Tensor]
) -> dict[str, dict[int, list[int]]]:
    """Kept positions per (tensor, dim) for every tensor a pruned group touches."""
    touched: dict[str, set[int]] = {}
    for g in gset.groups:
        if g.atom in keep and len(keep[g.atom]) < g.size:
            for m in g.members:
                touched.setdefault(m.param, set()).add(m.dim)
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


def _conv_info(gset: GroupSet, keep: Mapping[int, torch.Tensor]) -> dict[str, dict[str, int]]:
    atoms = gset.ctx.atoms
    info = {}
    for module, layout in gset.ctx.conv_groups.items():
        total = 0
        for seg in atoms.expand(layout):
            n = 1
            for a in seg:
                r = atoms.find(a)
                n *= len(keep[r]) if r in keep else atoms.size[r]
            total += n
        info[module] = {"groups": total if total else 1}
    return info


def _surgery(model: nn.Module, gset: GroupSet, keep: Mapping[int, torch.Tensor]) -> dict:
    tensors = _tensor_plan(gset, keep)
    apply_prune_edit_(model, {"tensors": tensors})
    touched = {name.rpartition(".")[0] for name in tensors}
    attrs = module_attrs(model, touched, _conv_info(gset, keep))
    edit = {"op": "prune", "tensors": {}, "attrs": attrs}
    apply_prune_edit_(model, edit)
    config, _ = config_updates(model)
    if config:
        apply_prune_edit_(model, {"tensors": {}, "config": config})
        edit["config"] = config
    edit["tensors"] = {n: {str(d): v for d, v in dims.items()} for n, dims in tensors.items()}
    return edit


def _to_meta(x: Any) -> Any:
    return tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t, x)


def prune_channels(
    model: nn.Module,
    example_inputs: Inputs,
    ratio: float | None = 0.5,
    *,
    target_macs: int | None = None,
    importance: str = "l1",
    scope: str = "local",
    ratios: Mapping[str, float] | None = None,
    ignore: Sequence[str] = (),
    round_to: int | str | None = "auto",
    batch: Any = None,
    loss_fn: Callable | None = None,
) -> PruneResult:
    """Removes channels from every coupled layer and returns a smaller plain model.

    Conv and linear output channels are grouped with everything coupled to them (BN, residual
    adds, concat, grouped and depthwise convs, attention heads, layer scales, embeddings) and
    pruned together. The model's output layer and input are kept. Ops without a dimension
    rule freeze the channels they touch; ``result.warnings`` names them.

    Args:
        model: the trained model (not modified).
        example_inputs: inputs for one traced forward pass, e.g. ``torch.randn(1, 3, 224, 224)``.
        ratio: fraction of channels to remove, in [0, 1).
        target_macs: MACs to reach instead of ``ratio`` (solved for).
        importance: ``l1`` | ``l2`` | ``bn_scale`` | ``taylor`` | ``fpgm`` | ``random``, or
            ``zeroed``: remove exactly the channels whose producing filters are all zero (the
            end of structured weight pruning with ``pattern="rows"``; ``ratio`` is ignored).
        scope: ``local`` (same ratio per group) or ``global`` (rank across groups).
        ratios: per-module overrides, ``{"layer4.0.conv1": 0.7}``.
        ignore: module names whose output channels are kept.
        round_to: round kept channel counts up to this multiple in wide groups; ``"auto"``
            is the CPU's SIMD width in floats (16 with AVX-512, 8 with AVX2).
        batch: ``(inputs, targets)`` for ``taylor``.
        loss_fn: ``loss(output, targets)`` for ``taylor``.

    Returns:
        A ``PruneResult`` (``.model``, ``.plan``, ``.warnings``, ``.before``, ``.after``).

    Example:
        >>> import torchvision
        >>> r = prune_channels(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64), 0.5)
        >>> r.model.conv1.out_channels
        32
    """
    opts = ChannelOptions(
        ratio=ratio,
        target_macs=target_macs,
        importance=importance,
        scope=scope,
        ratios=dict(ratios or {}),
        ignore=tuple(ignore),
        round_to=round_to,
    )
    check_model(model)
    warnings: list[str] = []
    if any(hasattr(m, "parametrizations") for m in model.modules()):
        raise PruneError(
            "the model holds parametrizations (e.g. weight-pruning masks); call "
            "slimtorch.make_permanent_(model) first, then prune channels."
        )
    work = copy.deepcopy(_unwrap(model, warnings))
    remember_origin(work)
    modules = [n for n, _ in work.named_modules()]
    check_module_names(opts.ignore, modules, "ignore")
    check_module_names(opts.ratios, modules, "ratios")

    # Shape-only (meta) tracing wins on large models; per-op overhead loses on small ones.
    meta = sum(p.numel() for p in work.parameters()) > 20_000_000
    graph = trace(work, example_inputs, grad=True, meta=meta)
    before_macs = sum(count_macs(graph).values())
    unused = [n for n, _ in work.named_parameters() if n not in graph.used_params]
    if unused:
        owners = sorted({n.rpartition(".")[0].split(".")[0] for n in unused})
        warnings.append(
            f"{len(unused)} parameters were not used by the traced forward and were not "
            f"adjusted (modules {', '.join(owners[:5])}); they may not fit the pruned "
            "shapes (e.g. auxiliary heads that run only in training)"
        )
    gset = build_groups(work, graph)
    for module, reason in sorted(gset.frozen.items()):
        warnings.append(f"kept channels of '{module}': {reason}")
    ignored = set(opts.ignore)
    groups = [g for g in gset.groups if not ignored.intersection(g.modules)]
    params = _params(work)
    grads = _taylor_grads(work, batch, loss_fn) if opts.importance == "taylor" else {}
    score = importance_fn(opts.importance)
    scores = {g.atom: score(g, params, grads) for g in groups}
    group_ratio = {
        g.atom: opts.ratios[next(m for m in g.modules if m in opts.ratios)]
        for g in groups
        if any(m in opts.ratios for m in g.modules)
    }

    excluded: set[int] = set()
    for _ in range(8):
        active = [g for g in groups if g.atom not in excluded]
        if opts.target_macs is not None:
            r = _solve_ratio(work, example_inputs, gset, active, scores, opts, group_ratio)
        else:
            r = float(opts.ratio)
        keep = plan_groups(active, scores, r, opts, group_ratio)
        # Surgery on the working copy; a retry starts again from the untouched input model.
        pruned = work if not excluded else _fresh_copy(model, work)
        edit = _surgery(pruned, gset, keep)
        failed = _check_runs(pruned, example_inputs, graph, meta)
        if not isinstance(failed, ForwardError):
            break
        # A module whose code does not follow its new shapes (e.g. a size hard-coded in its
        # forward): keep its channels, and those of every module of its class, and plan
        # again, rather than return a model that does not run.
        modules = dict(work.named_modules())
        bad_type = type(modules.get(failed.module)) if failed.module in modules else None
        suspects = {n for n, m in modules.items() if bad_type is not None and type(m) is bad_type}
        blamed = {
            g.atom
            for g in active
            if any(_owned_by(m.param, s) for m in g.members for s in suspects)
        }
        if not failed.module or not blamed:
            raise PruneError(
                f"internal error: the pruned model does not run ({failed}). Please report it; "
                "pass the failing module in ignore=[...] to work around it."
            ) from failed
        excluded |= blamed
        warnings.append(
            f"kept channels around '{failed.module}' and every {bad_type.__name__}: its forward "
            f"did not accept pruned shapes ({str(failed).split(': ', 2)[-1][:120]})"
        )
    else:
        raise PruneError("internal error: pruning did not converge to a runnable model")
    groups = active
    work = pruned
    record_edit(work, edit, owned=True)
    if hasattr(work, "config") and "config" not in edit:
        warnings.extend(config_updates(work)[1])

    after_graph = failed
    after_params = sum(
        p.numel() for n, p in work.named_parameters() if n in after_graph.used_params
    )
    plan = {
        "ratio": r,
        "importance": opts.importance,
        "scope": opts.scope,
        "groups": [
            {
                "modules": g.modules,
                "size": g.size,
                "kept": len(keep[g.atom]),
                "removed": sorted(set(range(g.size)) - set(keep[g.atom].tolist())),
                "exact": g.exact,
                "consumers": _consumer_positions(g, keep[g.atom]),
            }
            for g in groups
        ],
        "frozen": gset.frozen,
        "edit": edit,
    }
    before_params = sum(p.numel() for n, p in model.named_parameters() if n in graph.used_params)
    return PruneResult(
        model=work,
        plan=plan,
        warnings=warnings,
        before={"params": before_params, "macs": before_macs},
        after={"params": after_params, "macs": sum(count_macs(after_graph).values())},
    )


def _consumer_positions(group: ChannelGroup, kept: torch.Tensor) -> dict[str, dict[str, list]]:
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


def _fresh_copy(model: nn.Module, work: nn.Module) -> nn.Module:
    """A new copy of the input model that carries the working copy's recorded spec."""
    fresh = copy.deepcopy(_unwrap(model, []))
    for attr in ("_slimtorch_spec", "_slimtorch_origin_shapes", "_slimtorch_edits"):
        if attr in work.__dict__:
            object.__setattr__(fresh, attr, work.__dict__[attr])
    return fresh


def _owned_by(param: str, module: str) -> bool:
    return param.startswith(module + ".") if module else False


def _check_runs(model: nn.Module, example_inputs: Inputs, graph: Any, meta: bool) -> Any:
    """The pruned model must run and keep the output shapes: returns its graph, or the
    failure."""
    try:
        new = trace(model, example_inputs, meta=meta)
    except ForwardError as exc:
        return exc
    old_shapes = [graph.tensors[t].shape for t in graph.outputs]
    new_shapes = [new.tensors[t].shape for t in new.outputs]
    if old_shapes != new_shapes:
        raise PruneError(
            f"internal error: output shapes changed from {old_shapes} to {new_shapes}; "
            "please report it."
        )
    return new


def _solve_ratio(
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

    def macs_at(r: float) -> int:
        probe = copy.deepcopy(work).to("meta")
        _surgery(probe, gset, plan_groups(groups, scores, r, opts, group_ratio))
        return sum(count_macs(trace(probe, meta_inputs)).values())

    target = int(opts.target_macs)
    hi = 0.95 if opts.scope == "local" else opts.max_ratio
    lowest = macs_at(hi)
    if lowest > target:
        raise PruneError(
            f"target_macs={target:,} cannot be reached: pruning {hi:.0%} of every prunable "
            f"group still leaves {lowest:,} MACs. Raise the target, or remove layers with "
            "prune_layers."
        )
    if macs_at(0.0) <= target:
        return 0.0
    lo = 0.0
    for _ in range(14):
        mid = (lo + hi) / 2
        if macs_at(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi
