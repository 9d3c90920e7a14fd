"""The input patches a conv multiplies with its kernel (im2col), for data-driven fits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["conv_patches", "padded"]


def padded(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``x`` padded the way ``conv`` pads it (zeros or its ``padding_mode``)."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return x
        pads: list[int] = []
        for k, d in zip(reversed(conv.kernel_size), reversed(conv.dilation)):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
    else:
        ph, pw = conv.padding
        pads = [pw, pw, ph, ph]
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    return F.pad(x, pads, mode=mode)


def conv_patches(conv: nn.Conv2d, x: torch.Tensor, max_positions: int) -> torch.Tensor:
    """Patches under ``conv``'s kernel at (at most ``max_positions``) output positions.

    Args:
        conv: the conv.
        x: its input, ``(N, Cin, H, W)``.
        max_positions: keep a seeded random subset of output positions beyond this.

    Returns:
        ``(M, Cin, kh*kw)``: ``conv(x)`` at a position is ``W.flatten(1) @ patch.flatten()``
        (plus bias).
    """
    kh, kw = conv.kernel_size
    x = x.detach()

    def unfold(t: torch.Tensor) -> torch.Tensor:
        return F.unfold(padded(conv, t), (kh, kw), dilation=conv.dilation, stride=conv.stride)

    per_sample = unfold(x[:1]).shape[-1]
    x = x[: -(-max_positions // per_sample)]  # unfold only as many samples as needed
    cols = unfold(x).view(x.shape[0], conv.in_channels, kh * kw, -1).permute(0, 3, 1, 2)
    cols = cols.reshape(-1, conv.in_channels, kh * kw)
    if cols.shape[0] > max_positions:
        pick = torch.randperm(cols.shape[0], generator=torch.Generator().manual_seed(0))
        cols = cols[pick[:max_positions]]
    return cols
