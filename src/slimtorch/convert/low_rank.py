"""``low_rank``: a Linear becomes two thin Linears (truncated SVD); a conv becomes Tucker-2.

- ``nn.Linear(in, out)`` -> ``LowRankLinear`` with ``W ≈ U_r S_r V_r^T`` (Eckart-Young: the
  best rank-r approximation in Frobenius and spectral norm).
- ``nn.Conv2d`` (groups=1, k x k) -> ``TuckerConv2d``: 1x1 (``Cin -> rank_in``), k x k core
  (``rank_in -> rank_out``), 1x1 (``rank_out -> Cout``), by truncated HOSVD of the kernel's
  input and output modes. A 1x1 conv is factored by a truncated SVD instead (no core).

The rank is an int, a ratio of the full rank, ``"full"`` (exact), or chosen per layer as the
smallest rank keeping ``energy`` of the squared singular values (per mode for Tucker-2).
The kernel-space error shrinks monotonically as ranks grow.

``fit="data"`` factors Linears and 1x1 convs to minimize the *output* error on the example
inputs instead (truncated SVD of ``W L`` with ``L L^T = X^T X``, activation-aware SVD): on
trained models the inputs' few dominant directions then get the rank. k x k convs keep HOSVD.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._options import Options
from ..errors import ConfigError, ConvertError
from ..nn.lowrank import LowRankLinear, TuckerConv2d
from .factorize import (
    data_aware_svd,
    input_factor,
    mode_singular_values,
    rank_for_energy,
    singular_values,
    truncated_svd,
    tucker2,
)
from .options import RankSpec, check_fraction, check_rank, resolve_rank
from .registry import Conversion, LayerRewrite, register_conversion

__all__ = ["LowRank", "LowRankOptions"]

FITS = ("weight", "data")


@dataclass(frozen=True)
class LowRankOptions(Options):
    """Options of ``low_rank``: give exactly one of ``rank`` and ``energy``.

    Attributes:
        rank: an int (terms kept), a float in (0, 1] (share of the full rank, rounded up) or
            "full" (exact). For Tucker-2 it applies to both the input and output modes.
        energy: keep the smallest rank whose squared singular values reach this share of the
            total, e.g. 0.9 (of ``W L`` with ``fit="data"``).
        fit: "weight" (truncated SVD / HOSVD of the weights) or "data" (minimize the output
            error of Linears and 1x1 convs on the example inputs).
    """

    rank: RankSpec | None = None
    energy: float | None = None
    fit: str = "weight"

    def __post_init__(self) -> None:
        if (self.rank is None) == (self.energy is None):
            raise ConfigError(
                f"low_rank got rank={self.rank!r} and energy={self.energy!r}; pass exactly "
                "one: rank=16, rank=0.25, rank='full', or energy=0.9."
            )
        if self.rank is not None:
            check_rank(self.rank)
        if self.energy is not None:
            check_fraction(self.energy, "energy")
        if self.fit not in FITS:
            raise ConfigError(f"fit={self.fit!r} is unknown; use one of {FITS}.")


@register_conversion
class LowRank(Conversion):
    """``nn.Linear`` -> ``LowRankLinear``; ``nn.Conv2d`` -> ``TuckerConv2d``."""

    kind = "low_rank"
    Options = LowRankOptions


def _rank(options: LowRankOptions, s: torch.Tensor | None, full: int, layer: str, what: str) -> int:
    if options.energy is not None:
        assert s is not None
        return min(full, rank_for_energy(s, options.energy))
    assert options.rank is not None
    return resolve_rank(options.rank, full, layer, what)


def _factor_matrix(
    weight: torch.Tensor,
    rows: torch.Tensor | None,
    options: LowRankOptions,
    name: str,
    what: str,
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(left, right, note)`` for an ``(out, in)`` matrix; ``rows`` are its ``(M, in)`` inputs."""
    full = min(weight.shape)
    if options.fit == "data":
        if rows is None:
            raise ConfigError(
                f"fit='data' needs the input of layer {name!r}: pass example_inputs to "
                "convert(), or use fit='weight'."
            )
        chol = input_factor(rows)
        s = singular_values(weight.double() @ chol) if options.energy is not None else None
        rank = _rank(options, s, full, name, what)
        left, right = data_aware_svd(weight, chol, rank)
        return left, right, f"rank {rank}/{full}, fit data"
    s = singular_values(weight) if options.energy is not None else None
    rank = _rank(options, s, full, name, what)
    left, right = truncated_svd(weight, rank)
    return left, right, f"rank {rank}/{full}"


@LowRank.rule(nn.Linear)
def _linear(
    name: str, linear: nn.Linear, options: LowRankOptions, x: torch.Tensor | None
) -> LayerRewrite:
    weight = linear.weight.detach()
    rows = x.detach().reshape(-1, linear.in_features) if x is not None else None
    what = f"min(in_features={linear.in_features}, out_features={linear.out_features})"
    left, right, note = _factor_matrix(weight, rows, options, name, what)
    rank = left.shape[1]
    new = LowRankLinear(linear.in_features, linear.out_features, rank, bias=linear.bias is not None)
    new = new.to(weight.device, weight.dtype)
    with torch.no_grad():
        new.down.weight.copy_(right)
        new.up.weight.copy_(left)
        if linear.bias is not None:
            new.up.bias.copy_(linear.bias)
    return LayerRewrite(name, linear, new, {name: new}, note=note)


@LowRank.rule(nn.Conv2d)
def _conv2d(
    name: str, conv: nn.Conv2d, options: LowRankOptions, x: torch.Tensor | None
) -> LayerRewrite:
    if conv.groups != 1:
        raise ConvertError(
            f"layer {name!r} has groups={conv.groups}; 'low_rank' factors dense convs "
            "(groups=1). Leave it out of layers=."
        )
    weight = conv.weight.detach()
    cout, cin = weight.shape[:2]
    if conv.kernel_size == (1, 1):
        return _pointwise(name, conv, options, x)
    if options.energy is not None:
        s_out, s_in = mode_singular_values(weight)
    else:
        s_out = s_in = None
    # A mode's rank is bounded by the other dims too: W.flatten(1) is Cout x (Cin*k*k).
    taps = conv.kernel_size[0] * conv.kernel_size[1]
    full_in, full_out = min(cin, cout * taps), min(cout, cin * taps)
    rank_in = _rank(options, s_in, full_in, name, f"min(Cin={cin}, Cout*kh*kw={cout * taps})")
    rank_out = _rank(options, s_out, full_out, name, f"min(Cout={cout}, Cin*kh*kw={cin * taps})")
    new = _tucker_module(conv, rank_in, rank_out)
    first, core, last = tucker2(weight, rank_in, rank_out)
    with torch.no_grad():
        new.first.weight.copy_(first[:, :, None, None])
        assert new.core is not None
        new.core.weight.copy_(core)
        new.last.weight.copy_(last[:, :, None, None])
        if conv.bias is not None:
            new.last.bias.copy_(conv.bias)
    note = f"ranks {rank_in}x{rank_out}" + (", HOSVD" if options.fit == "data" else "")
    return LayerRewrite(name, conv, new, {name: new}, note=note)


def _tucker_module(conv: nn.Conv2d, rank_in: int, rank_out: int) -> TuckerConv2d:
    return TuckerConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        rank_in,
        rank_out,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device, conv.weight.dtype)


def _pointwise(
    name: str, conv: nn.Conv2d, options: LowRankOptions, x: torch.Tensor | None
) -> LayerRewrite:
    """A 1x1 conv is a Linear over pixels: two 1x1 convs by (data-aware) truncated SVD."""
    rows = None
    if x is not None:
        sh, sw = conv.stride
        rows = x.detach()[:, :, ::sh, ::sw].permute(0, 2, 3, 1).reshape(-1, conv.in_channels)
    what = f"min(Cin={conv.in_channels}, Cout={conv.out_channels})"
    left, right, note = _factor_matrix(conv.weight.detach().flatten(1), rows, options, name, what)
    rank = left.shape[1]
    new = _tucker_module(conv, rank, rank)
    with torch.no_grad():
        new.first.weight.copy_(right[:, :, None, None])
        new.last.weight.copy_(left[:, :, None, None])
        if conv.bias is not None:
            new.last.bias.copy_(conv.bias)
    return LayerRewrite(name, conv, new, {name: new}, note=note)
