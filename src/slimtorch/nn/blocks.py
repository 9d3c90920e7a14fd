"""Grouped convolutions and the channel shuffles and permutations that mix their groups.

Each block is a plain ``nn.Module`` made of ``nn.Conv2d`` children and tensor ops that trace,
export to ONNX and rebuild from ``config()`` (they are registered for ``.slim`` plans).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ._args import check_positive, json_pair, pair
from ._registry import register_module

__all__ = [
    "ChannelPermute",
    "ChannelShuffle",
    "GroupedConv2d",
    "valid_groups",
]


def valid_groups(in_channels: int, out_channels: int) -> list[int]:
    """Group counts that divide both channel counts, e.g. ``valid_groups(6, 4) == [1, 2]``."""
    n = min(in_channels, out_channels)
    return [g for g in range(1, n + 1) if not in_channels % g and not out_channels % g]


def _check_groups(in_channels: int, out_channels: int, groups: int) -> None:
    check_positive(groups=groups)
    if in_channels % groups or out_channels % groups:
        raise ConfigError(
            f"groups={groups} must divide both in_channels={in_channels} and "
            f"out_channels={out_channels}; use one of {valid_groups(in_channels, out_channels)}."
        )


@register_module
class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: ``(g, C/g)`` channel blocks transposed to ``(C/g, g)``.

    After a grouped conv, output channel ``j`` of group ``i`` moves to position
    ``j * groups + i``, so the next grouped layer sees channels of every group.

    Shape:
        ``(N, C, *)`` -> ``(N, C, *)`` with ``C`` divisible by ``groups``.

    Example:
        >>> ChannelShuffle(2)(torch.arange(4.0).view(1, 4, 1, 1)).flatten().tolist()
        [0.0, 2.0, 1.0, 3.0]
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        check_positive(groups=groups)
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[1]
        rest = x.shape[2:]
        x = x.reshape(n, self.groups, c // self.groups, *rest).transpose(1, 2)
        return x.reshape(n, c, *rest)

    def config(self) -> dict[str, Any]:
        return {"groups": self.groups}

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


@register_module
class ChannelPermute(nn.Module):
    """Reorders channels: ``y[:, c] = x[:, perm[c]]``.

    Shape:
        ``(N, C, *)`` -> ``(N, C, *)`` with ``C == len(perm)``.

    Example:
        >>> ChannelPermute([2, 0, 1])(torch.tensor([[10.0, 11.0, 12.0]])).tolist()
        [[12.0, 10.0, 11.0]]
    """

    def __init__(self, perm: list[int]) -> None:
        super().__init__()
        perm = [int(p) for p in perm]
        if sorted(perm) != list(range(len(perm))):
            raise ConfigError(
                f"perm={perm[:16]}{'...' if len(perm) > 16 else ''} is not a permutation of "
                f"0..{len(perm) - 1}; every channel index must appear exactly once."
            )
        self.perm = perm
        # Rebuilt from ``perm`` (the config), so it stays out of the state_dict.
        self.register_buffer("index", torch.tensor(perm, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.index)

    def config(self) -> dict[str, Any]:
        return {"perm": list(self.perm)}

    def extra_repr(self) -> str:
        head = ", ".join(map(str, self.perm[:8]))
        return f"channels={len(self.perm)}, perm=[{head}{', ...' if len(self.perm) > 8 else ''}]"


@register_module
class GroupedConv2d(nn.Module):
    """A grouped conv, optionally between channel permutations and before a channel shuffle.

    The input channels are reordered by ``in_perm`` (so each group sees the channels chosen
    for it), the conv runs with ``groups``, its outputs are optionally shuffled
    (``ChannelShuffle``), then reordered by ``out_perm``. The conversion
    ``slimtorch.convert(model, "grouped")`` uses the permutations to keep the original
    channel order on both sides.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, bias,
            padding_mode: as in ``nn.Conv2d``.
        groups: both channel counts must be divisible by it.
        shuffle: apply ``ChannelShuffle(groups)`` to the conv's output.
        in_perm: ``x[:, in_perm]`` is fed to the conv; None keeps the order.
        out_perm: the output is ``y[:, out_perm]``; None keeps the order.

    Shape:
        ``(N, Cin, H, W)`` -> ``(N, Cout, H', W')``.

    Example:
        >>> block = GroupedConv2d(64, 128, 1, groups=4, shuffle=True)
        >>> block(torch.randn(1, 64, 28, 28)).shape
        torch.Size([1, 128, 28, 28])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        groups: int,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        shuffle: bool = False,
        in_perm: list[int] | None = None,
        out_perm: list[int] | None = None,
    ) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, out_channels=out_channels)
        _check_groups(in_channels, out_channels, groups)
        for name, perm, n in (
            ("in_perm", in_perm, in_channels),
            ("out_perm", out_perm, out_channels),
        ):
            if perm is not None and len(perm) != n:
                raise ConfigError(
                    f"{name} has {len(perm)} entries; it needs one per channel ({n})."
                )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.permute_in = ChannelPermute(in_perm) if in_perm is not None else None
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            pair(kernel_size, "kernel_size"),
            stride=pair(stride, "stride"),
            padding=padding if isinstance(padding, str) else pair(padding, "padding"),
            dilation=pair(dilation, "dilation"),
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
        )
        self.shuffle = ChannelShuffle(groups) if shuffle else None
        self.permute_out = ChannelPermute(out_perm) if out_perm is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.permute_in is not None:
            x = self.permute_in(x)
        x = self.conv(x)
        if self.shuffle is not None:
            x = self.shuffle(x)
        if self.permute_out is not None:
            x = self.permute_out(x)
        return x

    def config(self) -> dict[str, Any]:
        c = self.conv
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": json_pair(c.kernel_size),
            "groups": self.groups,
            "stride": json_pair(c.stride),
            "padding": json_pair(c.padding),
            "dilation": json_pair(c.dilation),
            "bias": c.bias is not None,
            "padding_mode": c.padding_mode,
            "shuffle": self.shuffle is not None,
            "in_perm": None if self.permute_in is None else list(self.permute_in.perm),
            "out_perm": None if self.permute_out is None else list(self.permute_out.perm),
        }
