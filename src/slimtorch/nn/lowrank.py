"""Low-rank layers: a Linear as two thin Linears, a conv as Tucker-2 (1x1, k x k core, 1x1).

Both are plain compositions of ``nn.Linear`` / ``nn.Conv2d`` children, registered for
``.slim`` plans; ``slimtorch.convert(model, "low_rank")`` initializes them by SVD / HOSVD.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ._args import check_positive, json_pair, pair
from ._registry import register_module

__all__ = ["LowRankLinear", "TuckerConv2d"]


@register_module
class LowRankLinear(nn.Module):
    """``y = up(down(x))``: a rank-``r`` ``out x in`` linear map with ``r*(in+out)`` weights.

    Fewer weights and MACs than ``nn.Linear(in, out)`` when ``r < in*out / (in+out)``.

    Shape:
        ``(*, in_features)`` -> ``(*, out_features)``.

    Example:
        >>> layer = LowRankLinear(384, 1536, rank=64)
        >>> layer(torch.randn(2, 10, 384)).shape
        torch.Size([2, 10, 1536])
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        check_positive(in_features=in_features, out_features=out_features, rank=rank)
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "rank": self.rank,
            "bias": self.up.bias is not None,
        }


@register_module
class TuckerConv2d(nn.Module):
    """Tucker-2 conv: 1x1 (``Cin -> rank_in``), ``k x k`` core (``rank_in -> rank_out``), 1x1.

    The core carries the original stride, padding and dilation; the last 1x1 conv carries the
    bias. A 1x1 kernel has no core: the block is then two 1x1 convs of rank
    ``rank_in == rank_out`` (a truncated SVD).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, bias,
            padding_mode: as in ``nn.Conv2d``.
        rank_in: channels after the first 1x1 conv.
        rank_out: channels out of the core.

    Shape:
        ``(N, Cin, H, W)`` -> ``(N, Cout, H', W')``.

    Example:
        >>> block = TuckerConv2d(64, 128, 3, rank_in=16, rank_out=32, padding=1)
        >>> block(torch.randn(1, 64, 28, 28)).shape
        torch.Size([1, 128, 28, 28])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        rank_in: int,
        rank_out: int,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        check_positive(
            in_channels=in_channels, out_channels=out_channels, rank_in=rank_in, rank_out=rank_out
        )
        kernel = pair(kernel_size, "kernel_size")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.rank_in, self.rank_out = rank_in, rank_out
        conv_args: dict[str, Any] = {
            "stride": pair(stride, "stride"),
            "padding": padding if isinstance(padding, str) else pair(padding, "padding"),
            "dilation": pair(dilation, "dilation"),
            "padding_mode": padding_mode,
        }
        self.first = nn.Conv2d(in_channels, rank_in, 1, bias=False)
        if kernel == (1, 1):
            if rank_in != rank_out:
                raise ConfigError(
                    f"a 1x1 TuckerConv2d has no core, so rank_in={rank_in} must equal "
                    f"rank_out={rank_out}; pass the same rank twice."
                )
            # Stride (and any padding) move to the first 1x1 conv; both commute with it.
            self.first = nn.Conv2d(in_channels, rank_in, 1, bias=False, **conv_args)
            self.core = None
        else:
            self.core = nn.Conv2d(rank_in, rank_out, kernel, bias=False, **conv_args)
        self.last = nn.Conv2d(rank_out, out_channels, 1, bias=bias)
        self.kernel_size = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        if self.core is not None:
            x = self.core(x)
        return self.last(x)

    def config(self) -> dict[str, Any]:
        spatial = self.core if self.core is not None else self.first
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": json_pair(self.kernel_size),
            "rank_in": self.rank_in,
            "rank_out": self.rank_out,
            "stride": json_pair(spatial.stride),
            "padding": json_pair(spatial.padding),
            "dilation": json_pair(spatial.dilation),
            "bias": self.last.bias is not None,
            "padding_mode": spatial.padding_mode,
        }
