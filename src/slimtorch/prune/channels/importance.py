"""Importance criteria: pure functions ``(group, params) -> scores[group.size]``.

Higher scores mean more important; the lowest are pruned. Register your own with
``@register_importance("name")``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from ..._registry import Registry
from ...graph.groups import ChannelGroup, member_rows

__all__ = ["Importance", "register_importance", "importance_fn", "IMPORTANCES"]

Params = Mapping[str, torch.Tensor]
Importance = Callable[[ChannelGroup, Params, Params], torch.Tensor]
IMPORTANCES: Registry[Importance] = Registry(
    "importance", "name", hint="Register one with @slimtorch.register_importance('name')."
)


def register_importance(name: str, *, override: bool = False) -> Callable[[Importance], Importance]:
    """Registers ``fn(group, params, grads) -> scores``; ``grads`` is empty unless needed."""
    return IMPORTANCES.register(name, override=override)


def importance_fn(name: str) -> Importance:
    return IMPORTANCES.get(name)


def _weight_members(group: ChannelGroup, params: Params):
    """Members that are weight tensors (conv/linear/embedding), producers first."""
    return [
        m for m in group.members if params[m.param].dim() >= 2 and m.roles & {"produce", "contract"}
    ]


def _norm_sum(group: ChannelGroup, params: Params, p: int) -> torch.Tensor:
    scores = torch.zeros(group.size, dtype=torch.float64)
    for m in _weight_members(group, params):
        rows = member_rows(params[m.param], m)
        scores += (rows.abs().sum(1) if p == 1 else rows.pow(2).sum(1)).double()
    return scores if p == 1 else scores.sqrt()


@register_importance("l1")
def l1(group: ChannelGroup, params: Params, grads: Params) -> torch.Tensor:
    """Sum of absolute weights of every coupled layer, per channel (Li et al. 2017)."""
    return _norm_sum(group, params, 1)


@register_importance("l2")
def l2(group: ChannelGroup, params: Params, grads: Params) -> torch.Tensor:
    """L2 norm of the coupled weights per channel."""
    return _norm_sum(group, params, 2)


@register_importance("bn_scale")
def bn_scale(group: ChannelGroup, params: Params, grads: Params) -> torch.Tensor:
    """|gamma| of the group's normalization layers (Network Slimming, Liu et al. 2017).

    Falls back to L1 where a group has no normalization scale.
    """
    scores = torch.zeros(group.size, dtype=torch.float64)
    found = False
    for m in group.members:
        if m.param.endswith(".weight") and params[m.param].dim() == 1 and not m.roles:
            scores += member_rows(params[m.param], m).double().abs().sum(1)
            found = True
    return scores if found else _norm_sum(group, params, 1)


@register_importance("taylor")
def taylor(group: ChannelGroup, params: Params, grads: Params) -> torch.Tensor:
    """First-order Taylor estimate |sum w * dL/dw| per channel (Molchanov et al. 2019)."""
    scores = torch.zeros(group.size, dtype=torch.float64)
    for m in group.members:
        if m.param in grads:
            w = member_rows(params[m.param], m).double()
            g = member_rows(grads[m.param], m).double()
            scores += (w * g).sum(1).abs()
    return scores


@register_importance("fpgm")
def fpgm(group: ChannelGroup, params: Params, grads: Params) -> torch.Tensor:
    """Distance of each filter to the others: filters near the geometric median are
    redundant (He et al. 2019)."""
    scores = torch.zeros(group.size, dtype=torch.float64)
    for m in _weight_members(group, params):
        if "produce" in m.roles:
            rows = member_rows(params[m.param], m).double()
            scores += torch.cdist(rows, rows).sum(1)
    return scores if scores.any() else _norm_sum(group, params, 2)


@register_importance("random")
def random(group: ChannelGroup, params: Params, grads: Params) -> torch.Tensor:
    """Uniform random scores (a baseline)."""
    return torch.rand(group.size, dtype=torch.float64)


@register_importance("zeroed")
def zeroed(group: ChannelGroup, params: Params, grads: Params) -> torch.Tensor:
    """Non-zero producing weights per channel. With this criterion ``prune_channels`` removes
    exactly the channels whose producing filters are all zero (e.g. after
    ``prune_weights_(pattern="rows")`` and ``make_permanent_``), whatever ``ratio`` says."""
    scores = torch.zeros(group.size, dtype=torch.float64)
    for m in _weight_members(group, params):
        if "produce" in m.roles:
            scores += (member_rows(params[m.param], m) != 0).sum(1).double()
    return scores


def _column_weighted(group: ChannelGroup, params: Params, stats: Params) -> torch.Tensor:
    """Sum over the layers that read the group of ``||W[:, c]||^2 * stat[c]`` per channel
    ``c``: what removing the channel costs each consumer's output, for an input statistic
    ``stat`` (variance: the cost after the mean is compensated; mean square: before)."""
    scores = torch.zeros(group.size, dtype=torch.float64)
    found = False
    for m in group.members:
        stat = stats.get(m.param)
        w = params[m.param]
        if stat is None or m.dim != 1 or w.dim() < 2 or stat.numel() != w.shape[1]:
            continue
        weighted = w.detach().double().square() * stat.view(1, -1, *[1] * (w.dim() - 2))
        scores += member_rows(weighted, m).sum(1)
        found = True
    return scores if found else _norm_sum(group, params, 2).square()


@register_importance("activation")
def activation(group: ChannelGroup, params: Params, stats: Params) -> torch.Tensor:
    """Variance of each input channel on calibration data times the squared norm of the
    weights that read it, summed over consumers (FLAP, An et al. 2024): the output error left
    when the channel is removed and its mean is compensated (``compensate=True``). Needs
    ``data=``; groups no dense layer reads fall back to L2 squared."""
    return _column_weighted(group, params, stats)


@register_importance("activation_rms")
def activation_rms(group: ChannelGroup, params: Params, stats: Params) -> torch.Tensor:
    """Mean square of each input channel times the squared norm of the weights that read it
    (Wanda's ``|W| * ||x||`` per channel, squared): the error of removing a channel without
    compensation. Needs ``data=``."""
    return _column_weighted(group, params, stats)
