"""``depthwise_separable``: a dense k x k conv becomes depthwise + pointwise by per-channel SVD.

For each input channel ``i`` the ``Cout x (kh*kw)`` slice ``W[:, i]`` is factored by a
truncated SVD with ``rank`` terms: ``W[o, i] ≈ sum_r P[o, i, r] * D[i, r]``. The ``D`` filters
form a depthwise conv with ``rank`` filters per input channel, ``P`` the pointwise conv.
``rank = min(kh*kw, Cout)`` ("full") is exact; the output error shrinks as ``rank`` grows.
``fit="data"`` weights each channel's SVD by its input patches' second moment (smooth inputs
make the low-frequency directions matter most), which on trained models lowers the error a
lot at the same rank.

The depthwise stage is emitted as ``rank`` plain depthwise convs (``groups = in = out =
Cin``) whose outputs are concatenated (``DepthwiseSeparableConv2d(impl="separate")``):
PyTorch's channel-multiplier form (``groups=Cin``, ``Cin*rank`` outputs) falls off the CPU's
fast depthwise path for ``rank > 1``; ``benchmarks/convert_speed.py`` measures the forms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._options import Options
from ..errors import ConfigError, ConvertError
from ..nn.separable import DEPTHWISE_IMPLS, DepthwiseSeparableConv2d
from ._patches import conv_patches
from .factorize import depthwise_separable_factors, patch_factors
from .options import RankSpec, check_rank, resolve_rank
from .registry import Conversion, LayerRewrite, register_conversion

__all__ = ["DepthwiseSeparable", "DepthwiseSeparableOptions"]


@dataclass(frozen=True)
class DepthwiseSeparableOptions(Options):
    """Options of ``depthwise_separable``.

    Attributes:
        rank: depthwise filters per input channel: an int, a share of the full rank
            ``min(kh*kw, Cout)``, or "full" (exact).
        impl: how the depthwise stage runs: "separate" (default, plain depthwise convs, the
            CPU's fast path), "expand" or "multiplier" (see ``DepthwiseSeparableConv2d``).
        fit: "weight" (SVD of each input channel's kernels) or "data" (the same SVD weighted
            by the second moment of that channel's input patches on the example inputs, so
            each channel's contribution to the output is the best rank-``rank`` one).
    """

    rank: RankSpec = 1
    impl: str = "separate"
    fit: str = "weight"

    def __post_init__(self) -> None:
        check_rank(self.rank)
        if self.impl not in DEPTHWISE_IMPLS:
            raise ConfigError(f"impl={self.impl!r} is unknown; use one of {DEPTHWISE_IMPLS}.")
        if self.fit not in ("weight", "data"):
            raise ConfigError(f"fit={self.fit!r} is unknown; use 'weight' or 'data'.")


@register_conversion
class DepthwiseSeparable(Conversion):
    """Dense ``nn.Conv2d`` -> ``DepthwiseSeparableConv2d`` initialized by per-channel SVD."""

    kind = "depthwise_separable"
    Options = DepthwiseSeparableOptions


@DepthwiseSeparable.rule(nn.Conv2d)
def _conv2d(
    name: str, conv: nn.Conv2d, options: DepthwiseSeparableOptions, x: torch.Tensor | None
) -> LayerRewrite:
    if conv.groups != 1:
        raise ConvertError(
            f"layer {name!r} has groups={conv.groups}; 'depthwise_separable' rewrites dense "
            "convs (groups=1). Leave it out of layers=."
        )
    kh, kw = conv.kernel_size
    if kh * kw == 1:
        raise ConvertError(
            f"layer {name!r} is a 1x1 conv, already pointwise; 'depthwise_separable' needs a "
            "kernel larger than 1x1. Use 'low_rank' or 'grouped' for 1x1 convs."
        )
    full = min(kh * kw, conv.out_channels)
    rank = resolve_rank(options.rank, full, name, f"min(kh*kw={kh * kw}, Cout={conv.out_channels})")
    chol = None
    if options.fit == "data":
        if x is None:
            raise ConfigError(
                f"fit='data' needs the input of layer {name!r}: pass example_inputs to "
                "convert(), or use fit='weight'."
            )
        chol = patch_factors(conv_patches(conv, x, 20_000))
    depthwise, pointwise = depthwise_separable_factors(conv.weight.detach(), rank, chol)
    new = DepthwiseSeparableConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        multiplier=rank,
        padding_mode=conv.padding_mode,
        impl=options.impl,
    ).to(conv.weight.device, conv.weight.dtype)
    new.set_factors(
        depthwise.view(conv.in_channels, rank, kh, kw),
        pointwise.view(conv.out_channels, conv.in_channels, rank),
        None if conv.bias is None else conv.bias.detach(),
    )
    note = f"rank {rank}/{full}" + (", fit data" if chol is not None else "")
    return LayerRewrite(name, conv, new, {name: new}, note=note)
