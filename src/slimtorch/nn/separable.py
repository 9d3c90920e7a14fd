"""Depthwise-separable convolution with ``m`` depthwise filters per input channel.

On x86 CPUs a depthwise conv is fast only in one form: ``groups == in == out`` channels, ideally
on channels-last tensors (oneDNN's jit depthwise kernel). PyTorch's channel-multiplier form
(``groups=Cin``, ``Cin*m`` outputs) misses it for ``m > 1``, so the block can run its depthwise
stage three ways, holding the same factors (``benchmarks/convert_speed.py`` times them):

- ``"separate"`` (default): ``m`` plain depthwise convs, outputs concatenated;
- ``"expand"``: repeat each input channel ``m`` times, one plain depthwise conv with
  ``groups = Cin*m``;
- ``"multiplier"``: one conv with ``groups = Cin`` and ``Cin*m`` outputs.

Measured on a 2-core AVX-512 machine at 1 thread (torch 2.14): the multiplier form is
1.1-3.8x slower than "separate"; "expand" is fastest on small NCHW maps (<= 28x28) but 2-7x
slower than "separate" on 56x56 ones, where oneDNN's NCHW depthwise path is erratic; on
channels-last tensors "separate" is fastest everywhere. Models converted this way run
fastest in channels-last (``model.to(memory_format=torch.channels_last)``).

With ``m = 1`` all three are the same single depthwise conv (a MobileNet block without the
norm and activation between the two convs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ._args import check_positive, json_pair, pair
from ._registry import register_module

__all__ = ["DEPTHWISE_IMPLS", "DepthwiseSeparableConv2d", "repeat_channels"]

DEPTHWISE_IMPLS = ("separate", "expand", "multiplier")


def repeat_channels(x: torch.Tensor, times: int) -> torch.Tensor:
    """``x.repeat_interleave(times, 1)`` that keeps a channels-last input channels-last.

    Example:
        >>> repeat_channels(torch.tensor([[1.0, 2.0]]), 2).tolist()
        [[1.0, 1.0, 2.0, 2.0]]
    """
    if times == 1:
        return x
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        n, c, h, w = x.shape
        y = x.permute(0, 2, 3, 1).unsqueeze(-1).expand(n, h, w, c, times)
        return y.reshape(n, h, w, c * times).permute(0, 3, 1, 2)
    return x.repeat_interleave(times, dim=1)


@register_module
class DepthwiseSeparableConv2d(nn.Module):
    """A depthwise ``k x k`` conv (``multiplier`` filters per input channel), then a 1x1 conv.

    With ``m = multiplier`` it computes ``y[o] = sum_{i,r} P[o, i, r] * (D[i, r] * x[i])``:
    ``Cin*m*k*k + Cin*m*Cout`` weights and MACs per pixel instead of ``Cout*Cin*k*k``.
    ``factors()`` and ``set_factors()`` read and write ``D`` and ``P`` whatever ``impl`` is.

    Args:
        in_channels: ``Cin``.
        out_channels: ``Cout``.
        kernel_size, stride, padding, dilation, padding_mode: of the depthwise conv, as in
            ``nn.Conv2d``.
        bias: a bias on the pointwise conv.
        multiplier: depthwise filters per input channel (the rank of the factorization).
        impl: ``"separate"``, ``"expand"`` or ``"multiplier"`` (module docstring).

    Shape:
        ``(N, Cin, H, W)`` -> ``(N, Cout, H', W')``, ``H'`` and ``W'`` as for ``nn.Conv2d``.

    Example:
        >>> block = DepthwiseSeparableConv2d(32, 64, 3, padding=1, multiplier=2)
        >>> block(torch.randn(1, 32, 56, 56)).shape
        torch.Size([1, 64, 56, 56])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        multiplier: int = 1,
        padding_mode: str = "zeros",
        impl: str = "separate",
    ) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, out_channels=out_channels, multiplier=multiplier)
        if impl not in DEPTHWISE_IMPLS:
            raise ConfigError(f"impl={impl!r} is unknown; use one of {DEPTHWISE_IMPLS}.")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.multiplier, self.impl = multiplier, impl
        c, m = in_channels, multiplier
        conv: dict[str, Any] = {
            "kernel_size": pair(kernel_size, "kernel_size"),
            "stride": pair(stride, "stride"),
            "padding": padding if isinstance(padding, str) else pair(padding, "padding"),
            "dilation": pair(dilation, "dilation"),
            "bias": False,
            "padding_mode": padding_mode,
        }
        self.depthwise: nn.Module
        if impl == "separate" and m > 1:
            self.depthwise = nn.ModuleList(nn.Conv2d(c, c, groups=c, **conv) for _ in range(m))
        else:
            dw_in = c * m if impl == "expand" else c
            self.depthwise = nn.Conv2d(dw_in, c * m, groups=dw_in, **conv)
        self.pointwise = nn.Conv2d(c * m, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.depthwise, nn.ModuleList):
            x = torch.cat([conv(x) for conv in self.depthwise], 1)
        else:
            if self.impl == "expand":
                x = repeat_channels(x, self.multiplier)
            x = self.depthwise(x)
        return self.pointwise(x)

    @property
    def _first(self) -> nn.Conv2d:
        dw = self.depthwise
        return dw[0] if isinstance(dw, nn.ModuleList) else dw

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Depthwise filters ``D (Cin, m, kh, kw)`` and pointwise weights ``P (Cout, Cin, m)``."""
        c, m, cout = self.in_channels, self.multiplier, self.out_channels
        kh, kw = self._first.kernel_size
        pw = self.pointwise.weight.detach()[:, :, 0, 0]
        if isinstance(self.depthwise, nn.ModuleList):  # channel j*Cin + i is filter (i, j)
            d = torch.stack([conv.weight.detach()[:, 0] for conv in self.depthwise], 1)
            return d, pw.view(cout, m, c).transpose(1, 2)
        return self.depthwise.weight.detach().view(c, m, kh, kw), pw.view(cout, c, m)

    @torch.no_grad()
    def set_factors(
        self, depthwise: torch.Tensor, pointwise: torch.Tensor, bias: torch.Tensor | None = None
    ) -> None:
        """Loads ``D (Cin, m, kh, kw)``, ``P (Cout, Cin, m)`` and the pointwise bias."""
        c, m, cout = self.in_channels, self.multiplier, self.out_channels
        if isinstance(self.depthwise, nn.ModuleList):
            for j, conv in enumerate(self.depthwise):
                conv.weight.copy_(depthwise[:, j, None])
            pw = pointwise.transpose(1, 2).reshape(cout, m * c)
        else:
            self.depthwise.weight.copy_(depthwise.reshape(c * m, 1, *depthwise.shape[2:]))
            pw = pointwise.reshape(cout, c * m)
        self.pointwise.weight.copy_(pw[:, :, None, None])
        if bias is not None:
            self.pointwise.bias.copy_(bias)

    def config(self) -> dict[str, Any]:
        dw = self._first
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": json_pair(dw.kernel_size),
            "stride": json_pair(dw.stride),
            "padding": json_pair(dw.padding),
            "dilation": json_pair(dw.dilation),
            "bias": self.pointwise.bias is not None,
            "multiplier": self.multiplier,
            "padding_mode": dw.padding_mode,
            "impl": self.impl,
        }

    def with_impl(self, impl: str) -> DepthwiseSeparableConv2d:
        """The same function with the depthwise stage run as ``impl`` (a new module)."""
        w = self.pointwise.weight
        new = type(self)(**(self.config() | {"impl": impl})).to(w.device, w.dtype)
        new.set_factors(*self.factors(), self.pointwise.bias)
        return new

    def extra_repr(self) -> str:
        return f"multiplier={self.multiplier}, impl={self.impl!r}"
