"""``dilated``: a k x k conv (k odd, >= 5) becomes a 3x3 conv with dilation (k - 1) / 2.

The 3x3 dilated kernel spans the same k x k window (same receptive field, same padding and
output size) with 9 instead of k*k taps per channel pair. Two fits:

- ``fit="data"``: least squares on the layer's real input: the new weights (and bias) minimize
  ``||conv3x3_dilated(x) - conv_kxk(x)||²`` over the output positions of the example inputs
  (a ridge-regularized linear regression per group on the 9 tap positions; the input's
  spatial correlations let the 9 taps stand in for the dropped ones).
- ``fit="kernel"``: kernel-space least squares, ``min ||W' - W||_F`` over kernels supported on
  the 9 taps, which is simply keeping those taps of ``W``.

Both are exact when ``W`` is zero outside the taps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._options import Options
from .._validate import check_int, check_number
from ..errors import ConfigError, ConvertError
from ._patches import conv_patches
from .registry import Conversion, LayerRewrite, register_conversion

__all__ = ["Dilated", "DilatedOptions", "fit_dilated_kernel", "tap_positions"]

FITS = ("auto", "data", "kernel")


@dataclass(frozen=True)
class DilatedOptions(Options):
    """Options of ``dilated``.

    Attributes:
        fit: "data" (least squares on the example inputs), "kernel" (keep the kernel's taps)
            or "auto" (data when example inputs are given).
        ridge: Tikhonov regularization of the data fit, relative to the mean feature energy.
        max_positions: output positions used by the data fit (a seeded random subset).
    """

    fit: str = "auto"
    ridge: float = 1e-6
    max_positions: int = 20_000

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ConfigError(f"fit={self.fit!r} is unknown; use one of {FITS}.")
        check_number("ridge", self.ridge, low=0)
        check_int("max_positions", self.max_positions)


@register_conversion
class Dilated(Conversion):
    """``nn.Conv2d`` with an odd kernel >= 5 -> 3x3 ``nn.Conv2d`` with dilation (k - 1) / 2."""

    kind = "dilated"
    Options = DilatedOptions


def tap_positions(kernel_size: int) -> list[int]:
    """Kernel rows (or columns) a 3x3 dilated kernel keeps: ``[0, (k-1)/2, k-1]``."""
    return [0, (kernel_size - 1) // 2, kernel_size - 1]


def fit_dilated_kernel(
    conv: nn.Conv2d, x: torch.Tensor, *, ridge: float = 1e-6, max_positions: int = 20_000
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Least-squares 3x3 dilated kernel reproducing ``conv`` on input ``x``.

    Args:
        conv: a conv with an odd ``k x k`` kernel.
        x: its input, ``(N, Cin, H, W)``.
        ridge: regularization relative to the mean diagonal of the normal matrix.
        max_positions: output positions used (seeded random subset).

    Returns:
        ``weight (Cout, Cin/groups, 3, 3)`` and ``bias (Cout,)`` (None when ``conv`` has none).
    """
    kh, kw = conv.kernel_size
    g, cout = conv.groups, conv.out_channels
    cin_g, cout_g = conv.in_channels // g, cout // g
    cols = conv_patches(conv, x, max_positions)
    taps = [r * kw + c for r in tap_positions(kh) for c in tap_positions(kw)]
    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else None
    new_w = torch.empty(cout, cin_g, 9, dtype=torch.float64)
    new_b = torch.empty(cout, dtype=torch.float64) if bias is not None else None
    for j in range(g):
        full = cols[:, j * cin_g : (j + 1) * cin_g].double()  # (M, cin_g, k*k)
        outs = slice(j * cout_g, (j + 1) * cout_g)
        target = full.flatten(1) @ weight[outs].flatten(1).T  # bias is refit below
        feats = full[:, :, taps].flatten(1)
        if bias is not None:
            feats = torch.cat([feats, torch.ones(len(feats), 1, dtype=feats.dtype)], 1)
        gram = feats.T @ feats
        gram.diagonal().add_(ridge * float(gram.diagonal().mean()) + 1e-300)
        theta = torch.linalg.solve(gram, feats.T @ target)  # (features, cout_g)
        new_w[outs] = theta[: cin_g * 9].T.reshape(cout_g, cin_g, 9)
        if bias is not None and new_b is not None:
            new_b[outs] = theta[-1] + bias[outs]
    dtype = conv.weight.dtype
    out_b = new_b.to(dtype) if new_b is not None else None
    return new_w.view(cout, cin_g, 3, 3).to(dtype), out_b


@Dilated.rule(nn.Conv2d)
def _conv2d(
    name: str, conv: nn.Conv2d, options: DilatedOptions, x: torch.Tensor | None
) -> LayerRewrite:
    kh, kw = conv.kernel_size
    if kh < 5 or kw < 5 or kh % 2 == 0 or kw % 2 == 0:
        raise ConvertError(
            f"layer {name!r} has kernel_size {conv.kernel_size}, too small or even for "
            "'dilated': it needs an odd kernel >= 5 in both dims (a 3x3 conv with dilation "
            "(k - 1) / 2 then spans the same window). Leave the layer out."
        )
    fit = options.fit
    if fit == "auto":
        fit = "data" if x is not None else "kernel"
    if fit == "data" and x is None:
        raise ConfigError(
            f"fit='data' needs the layer's input: pass example_inputs to convert(), or use "
            f"fit='kernel' for layer {name!r}."
        )
    dilation = (conv.dilation[0] * (kh - 1) // 2, conv.dilation[1] * (kw - 1) // 2)
    new = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        3,
        stride=conv.stride,
        padding=conv.padding,
        dilation=dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device, conv.weight.dtype)
    if fit == "data":
        assert x is not None
        weight, bias = fit_dilated_kernel(
            conv, x, ridge=options.ridge, max_positions=options.max_positions
        )
    else:
        rows, cols = tap_positions(kh), tap_positions(kw)
        weight = conv.weight.detach()[:, :, rows][:, :, :, cols]
        bias = conv.bias.detach() if conv.bias is not None else None
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return LayerRewrite(name, conv, new, {name: new}, note=f"dilation {dilation[0]}, fit {fit}")
