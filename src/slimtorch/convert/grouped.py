"""``grouped``: a dense conv becomes a grouped conv between two channel permutations.

A grouped conv keeps only the diagonal blocks of the weight (each group's outputs see only
that group's inputs). Which channels share a group is chosen by ``assign_groups``
(``grouping.py``: greedy capacity-bounded merging of the strongest channel pairs, packing,
then improving swaps) to keep the most energy in those blocks: the output energy
``E||W[o, i] * x_i||²`` that input channel ``i`` sends to output ``o`` on the example
inputs, or the weight energy ``||W[o, i]||²`` without them. The input permutation gathers
each group's channels; the output permutation puts every output channel back in its
original place, so the rest of the model is unchanged and it mixes the groups for the next
layer the way a channel shuffle does.

The rewrite is exact when the weight is block-diagonal up to a permutation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._options import Options
from .._validate import check_int
from ..errors import ConfigError, ConvertError
from ..nn.blocks import GroupedConv2d, valid_groups
from ._patches import conv_patches
from .grouping import assign_groups
from .registry import Conversion, LayerRewrite, register_conversion

__all__ = ["Grouped", "GroupedOptions"]


@dataclass(frozen=True)
class GroupedOptions(Options):
    """Options of ``grouped``.

    Attributes:
        groups: groups of the new conv (>= 2); must divide both channel counts.
        permute: search the channel assignment (True) or use contiguous groups (False).
    """

    groups: int = 2
    permute: bool = True

    def __post_init__(self) -> None:
        check_int("groups", self.groups, low=2)
        if not isinstance(self.permute, bool):
            raise ConfigError(f"permute={self.permute!r} is invalid; use True or False.")


@register_conversion
class Grouped(Conversion):
    """Dense ``nn.Conv2d`` -> ``GroupedConv2d`` keeping the strongest diagonal blocks."""

    kind = "grouped"
    Options = GroupedOptions


def _identity(perm: list[int]) -> bool:
    return perm == list(range(len(perm)))


def _energy(conv: nn.Conv2d, x: torch.Tensor | None) -> torch.Tensor:
    """``(Cout, Cin)`` energy each input channel sends to each output channel.

    Without data, ``||W[o, i]||²``; with the layer's input, ``E||W[o, i] * x_i||²`` =
    ``w^T R_i w`` with ``R_i`` the second moment of channel ``i``'s patches, so channels that
    carry little signal count for little.
    """
    w = conv.weight.detach().double().flatten(2)  # (Cout, Cin, k*k)
    if x is None:
        return w.square().sum(2)
    patches = conv_patches(conv, x, 4096).double()  # (M, Cin, k*k)
    moment = torch.einsum("mip,miq->ipq", patches, patches) / max(1, len(patches))
    return torch.einsum("oip,ipq,oiq->oi", w, moment, w).clamp_min(0)


@Grouped.rule(nn.Conv2d)
def _conv2d(
    name: str, conv: nn.Conv2d, options: GroupedOptions, x: torch.Tensor | None
) -> LayerRewrite:
    g, cin, cout = options.groups, conv.in_channels, conv.out_channels
    if conv.groups != 1:
        raise ConvertError(
            f"layer {name!r} already has groups={conv.groups}; 'grouped' rewrites dense convs "
            "(groups=1). Leave it out of layers=."
        )
    if cin % g or cout % g:
        ok = valid_groups(cin, cout)[1:]
        fix = f"use groups in {ok[:8]}" if ok else "no group count > 1 divides both"
        raise ConvertError(
            f"layer {name!r} has in_channels={cin} and out_channels={cout}, not both divisible "
            f"by groups={g}; {fix}, or leave the layer out."
        )
    weight = conv.weight.detach()
    energy = _energy(conv, x)
    if options.permute:
        assignment = assign_groups(energy, g)
        in_perm, out_order, out_perm = assignment.in_perm, assignment.out_order, assignment.out_perm
        kept = assignment.kept
    else:
        in_perm, out_order, out_perm = list(range(cin)), list(range(cout)), list(range(cout))
        same = (torch.arange(cout)[:, None] // (cout // g)) == (torch.arange(cin) // (cin // g))
        kept = float(energy[same].sum() / energy.sum().clamp_min(1e-300))
    kh, kw = conv.kernel_size
    order = torch.tensor(out_order)
    in_index = torch.tensor(in_perm).view(g, cin // g)[torch.arange(cout) // (cout // g)]
    new_weight = weight[order].gather(1, in_index[:, :, None, None].expand(-1, -1, kh, kw))
    new = GroupedConv2d(
        cin,
        cout,
        conv.kernel_size,
        g,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        in_perm=None if _identity(in_perm) else in_perm,
        out_perm=None if _identity(out_perm) else out_perm,
    ).to(weight.device, weight.dtype)
    with torch.no_grad():
        new.conv.weight.copy_(new_weight)
        if conv.bias is not None:
            new.conv.bias.copy_(conv.bias[order])
    what = "input-weighted energy" if x is not None else "energy"
    return LayerRewrite(name, conv, new, {name: new}, note=f"{what} kept {100 * kept:.1f}%")
