"""``prune_channels``: structured pruning that physically removes channels.

Pipeline: trace -> channel groups -> importance -> kept indices per group (``plan``) ->
``slimtorch.edit.slice_channels_``. The result is a plain, smaller ``nn.Module``; the input
model is untouched.
"""

from __future__ import annotations

import copy
import warnings as _warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..._forward import (
    Inputs,
    calibration_batches,
    check_model,
    copy_model,
    eval_mode,
    relative_error,
    split_inputs,
)
from ..._validate import check_finite, name_list
from ...edit.fold import fold_parametrizations_
from ...edit.masks import masked_params
from ...edit.refit import CompensationReport, compensate_
from ...errors import PruneError
from ...graph.groups import ChannelGroup, build_groups
from ...graph.trace import ModelGraph, needs_grad, trace
from ...io.spec import remember_origin
from ...measure.activations import input_moments
from ...measure.analyze import count_macs
from ...report.table import format_table, human
from .fallback import Pruner
from .importance import importance_fn
from .options import ChannelOptions, check_module_names
from .plan import group_rows
from .solve import measured_ms
from .twins import swap_twins_

__all__ = ["PruneResult", "prune_channels"]

# The model is traced on meta (shapes only; a forward that needs values is retraced for real).
# Below this size the pruned model's checks run for real, and a config rebuild is compared.
_META_PARAMS = 20_000_000


@dataclass
class PruneResult:
    """What ``prune_channels`` (or ``prune_layers``) produced.

    Attributes:
        model: the pruned model, a plain ``nn.Module`` with channels removed.
        plan: JSON-serializable record: groups with kept/removed indices, frozen modules with
            reasons, and the edit that ``.slim`` files replay (for ``prune_layers``:
            ``plan["layers"]`` with the candidate blocks, their scores and the removed ones).
        warnings: what was not pruned and why (ops without rules, frozen groups, ...).
        before / after: params and MACs.
        compensation: with ``compensate=True``, the refit layers and their output errors.
    """

    model: nn.Module
    plan: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    compensation: CompensationReport | None = None

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
        if "layers" in self.plan:
            gone, found = self.plan["layers"]["removed"], self.plan["layers"]["candidates"]
            return (
                f"{self.summary()}\n{len(gone)}/{len(found)} blocks removed "
                f"({', '.join(gone[:6])}{' ...' if len(gone) > 6 else ''}), "
                f"{len(self.warnings)} warnings"
            )
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


_DATA_IMPORTANCES = ("activation", "activation_rms")


def _column_stats(model: nn.Module, batches: list[Any], importance: str) -> dict[str, torch.Tensor]:
    """Per weight name, the input-channel statistic that ``importance`` weights columns by."""
    moments = input_moments(model, batches)
    return {
        f"{name}.weight": m.var if importance == "activation" else m.mean_sq
        for name, m in moments.items()
    }


def prune_channels(
    model: nn.Module,
    example_inputs: Inputs,
    ratio: float | None = 0.5,
    *,
    target_macs: int | None = None,
    target_latency_ms: float | None = None,
    speedup: float | None = None,
    threads: int = 1,
    importance: str = "l1",
    scope: str = "local",
    ratios: Mapping[str, float] | None = None,
    ignore: Sequence[str] = (),
    round_to: int | str | None = "auto",
    factor: str = "outer",
    batch: Any = None,
    loss_fn: Callable | None = None,
    data: Any = None,
    compensate: bool = False,
    allocation: str = "uniform",
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
        target_latency_ms: latency of one forward on ``example_inputs`` to reach instead,
            measured on this CPU at ``threads`` (bisection on the ratio, each candidate timed
            against the original in interleaved runs); ``plan["latency"]`` has the timings.
        speedup: how many times faster than the original, measured the same way.
        threads: intra-op threads of those timings (1: a single-core low-power device).
        allocation: how a latency target spreads the cuts: ``"uniform"`` (one ratio,
            bisected on measured time) or ``"latency"`` (HALP-style: each group is cut where
            it loses the least importance per millisecond saved, from its layers' times
            measured on this CPU at a grid of widths, then corrected by timing the whole
            model; no group loses more than 75%). On the small CNNs of
            ``benchmarks/latency_accuracy.py`` uniform kept more accuracy at equal speed.
        importance: ``l1`` | ``l2`` | ``bn_scale`` | ``taylor`` | ``fpgm`` | ``random``,
            ``activation`` / ``activation_rms`` (weights weighted by input-channel variance /
            mean square on ``data``: FLAP / Wanda), or ``zeroed``: remove exactly the
            channels whose producing filters are all zero (the end of structured weight
            pruning with ``pattern="rows"``; ``ratio`` is ignored).
        scope: ``local`` (same ratio per group) or ``global`` (rank across groups).
        ratios: per-module overrides, ``{"layer4.0.conv1": 0.7}``.
        ignore: module names whose output channels are kept.
        round_to: round kept channel counts up to this multiple in wide groups; ``"auto"``
            is the CPU's SIMD width in floats (16 with AVX-512, 8 with AVX2).
        factor: in a dim made of heads x head_dim or groups x channels per group,
            ``"outer"`` removes whole heads or groups, ``"inner"`` shrinks each alike.
        batch: ``(inputs, targets)`` for ``taylor``.
        loss_fn: ``loss(output, targets)`` for ``taylor``.
        data: calibration batches (each given as ``example_inputs`` are; a few from the
            training set) for ``importance="activation"`` / ``"activation_rms"`` and for
            ``compensate``.
        compensate: after pruning, refit each dense layer whose inputs shrank by ridge least
            squares on ``data`` (``slimtorch.compensate_``); ``result.compensation`` reports
            each layer's output error before and after.

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
        target_latency_ms=target_latency_ms,
        speedup=speedup,
        threads=threads,
        importance=importance,
        scope=scope,
        ratios=dict(ratios or {}),
        ignore=name_list("ignore", ignore),
        round_to=round_to,
        factor=factor,
        compensate=compensate,
        allocation=allocation,
    )
    batches = (
        calibration_batches(data, f"importance={opts.importance!r}/compensate=True")
        if opts.importance in _DATA_IMPORTANCES or opts.compensate
        else None
    )
    warnings: list[str] = []
    work = _working_copy(model, opts, warnings)
    swapped = swap_twins_(work, example_inputs)
    modules = [n for n, _ in work.named_modules()]  # a twin's parts may be named too
    check_module_names(opts.ignore, modules, "ignore")
    check_module_names(opts.ratios, modules, "ratios")
    meta = sum(p.numel() for p in work.parameters()) > _META_PARAMS
    graph = trace(work, example_inputs, grad=needs_grad(work), meta=True)
    warnings.extend(_unused_params(work, graph))
    gset = build_groups(work, graph, opts.factor)
    warnings.extend(f"kept channels of '{m}': {why}" for m, why in sorted(gset.frozen.items()))
    ignored = set(opts.ignore)
    groups = [g for g in gset.groups if not ignored.intersection(g.modules)]
    if opts.importance == "taylor":
        grads = _taylor_grads(work, batch, loss_fn)
    elif opts.importance in _DATA_IMPORTANCES:
        grads = _column_stats(work, batches, opts.importance)
    else:
        grads = {}
    score = importance_fn(opts.importance)
    params = _params(work)
    scores = {g.atom: score(g, params, grads) for g in groups}
    group_ratio = _group_ratios(groups, opts)

    pruner = Pruner(work, example_inputs, graph, gset, scores, opts, group_ratio, meta)
    pruned, after, groups, keep, r, edit = pruner.run(groups, warnings)
    if edit.get("config") and not meta:
        warnings.extend(_config_rebuild_differs(pruned, example_inputs))
    compensation = compensate_(pruned, work, batches) if opts.compensate else None
    latency = _latency_record(pruned, work, example_inputs, opts, pruner.latency_log, warnings)
    plan = {
        "ratio": r,
        "importance": opts.importance,
        "scope": opts.scope,
        "options": opts.to_dict(),
        "groups": group_rows(groups, keep),
        "frozen": gset.frozen,
        "swapped": swapped,
        "edit": edit,
    }
    if latency:
        plan["latency"] = latency
    used = graph.used_params
    before_macs = sum(count_macs(graph).values())
    if opts.target_macs is not None and before_macs <= opts.target_macs:
        message = (
            f"target_macs={opts.target_macs:,} is already met: the model has {before_macs:,} "
            "MACs, so nothing was pruned; give a lower target."
        )
        warnings.append(message)
        _warnings.warn(message, UserWarning, stacklevel=2)
    return PruneResult(
        model=pruned,
        plan=plan,
        compensation=compensation,
        warnings=warnings,
        before={
            "params": sum(p.numel() for n, p in model.named_parameters() if n in used),
            "macs": before_macs,
        },
        after={
            "params": sum(
                p.numel() for n, p in pruned.named_parameters() if n in after.used_params
            ),
            "macs": sum(count_macs(after).values()),
        },
    )


def _latency_record(
    pruned: nn.Module,
    work: nn.Module,
    example_inputs: Inputs,
    opts: ChannelOptions,
    log: list[dict[str, float]],
    warnings: list[str],
) -> dict[str, Any]:
    """For a latency target: the solve's timings and a final check of the returned model."""
    if not log:
        return {}
    base, target = log[0]["ms"], log[0]["target_ms"]
    final = measured_ms(pruned, work, example_inputs, opts.threads, base)
    if final > 1.05 * target:
        warnings.append(
            f"the pruned model measures {final:.2f} ms against the target {target:.2f} ms "
            f"(the original: {base:.2f} ms) at {opts.threads} thread(s): timings vary on a "
            "busy machine; measure again on a quiet one, or ask for a lower target"
        )
    return {
        "threads": opts.threads,
        "original_ms": base,
        "target_ms": target,
        "measured_ms": final,
        "steps": log[1:],
    }


def _working_copy(model: nn.Module, opts: ChannelOptions, warnings: list[str]) -> nn.Module:
    """A checked deep copy of the input, remembering its origin so that it can be saved."""
    check_model(model)
    check_finite(model, "prune_channels")
    if any(True for m in model.modules() for _ in masked_params(m)):
        raise PruneError(
            "the model holds weight-pruning masks; call slimtorch.make_permanent_(model) "
            "first, then prune channels."
        )
    work = copy_model(_unwrap(model, warnings))
    remember_origin(work)
    folded = fold_parametrizations_(work)
    if folded:
        warnings.append(
            f"folded the reparametrized weights of {len(folded)} tensors (weight_norm, "
            f"spectral_norm, ...: {', '.join(folded[:3])}{' ...' if len(folded) > 3 else ''}) "
            "into plain weights, their values at inference; apply weight_norm again to the "
            "pruned model if you fine-tune with it"
        )
    return work


def _config_rebuild_differs(pruned: nn.Module, example_inputs: Inputs) -> list[str]:
    """A warning if a model built from the updated Hugging Face config and given the pruned
    weights computes something else: a value derived from the config at construction (an
    embedding scale of sqrt(hidden_size)) that ``from_pretrained`` would recompute."""
    try:
        rebuilt = type(pruned)(pruned.config)
        rebuilt.load_state_dict(pruned.state_dict())
        args, kwargs = split_inputs(example_inputs)
        with torch.no_grad(), eval_mode(rebuilt), eval_mode(pruned):
            out, ref = rebuilt(*args, **kwargs), pruned(*args, **kwargs)
        err = relative_error(out, ref)
    except Exception as exc:  # any failure to rebuild is worth the same warning
        err, why = float("inf"), f" ({type(exc).__name__}: {exc})"[:200]
    else:
        why = ""
    if err <= 1e-5:
        return []
    return [
        "a model rebuilt from the updated config (save_pretrained/from_pretrained) computes "
        f"differently from the pruned one (relative error {err:.2g}){why}: the model derives "
        "values from its config at construction (e.g. an embedding scale of "
        "sqrt(hidden_size)); use slimtorch.save/load, which keep the pruned model as it is"
    ]


def _unused_params(work: nn.Module, graph: ModelGraph) -> list[str]:
    unused = [n for n, _ in work.named_parameters() if n not in graph.used_params]
    if not unused:
        return []
    owners = sorted({n.rpartition(".")[0].split(".")[0] for n in unused})
    return [
        f"{len(unused)} parameters were not used by the traced forward and were not "
        f"adjusted (modules {', '.join(owners[:5])}); they may not fit the pruned "
        "shapes (e.g. auxiliary heads that run only in training)"
    ]


def _group_ratios(groups: Sequence[ChannelGroup], opts: ChannelOptions) -> dict[int, float]:
    """Per-module ratio overrides, keyed by the group that holds the module."""
    return {
        g.atom: opts.ratios[next(m for m in g.modules if m in opts.ratios)]
        for g in groups
        if any(m in opts.ratios for m in g.modules)
    }
