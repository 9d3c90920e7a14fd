"""Families of ATen ops that several analyses share (one list each, not one per analysis)."""

from __future__ import annotations

import torch

__all__ = ["CONVOLUTIONS", "POOLS", "RESAMPLES", "WINDOWED"]

aten = torch.ops.aten

CONVOLUTIONS = frozenset({aten.convolution, aten._convolution})
# Pooling with a sliding window (kernel, stride, padding; max pools also dilation).
POOLS = frozenset(
    {
        aten.max_pool1d,
        aten.max_pool2d,
        aten.max_pool2d_with_indices,
        aten.max_pool3d_with_indices,
        aten.avg_pool1d,
        aten.avg_pool2d,
        aten.avg_pool3d,
    }
)
# Ops that keep batch and channels and change only the spatial size.
RESAMPLES = frozenset(
    {
        aten._adaptive_avg_pool2d,
        aten._adaptive_avg_pool3d,
        aten.adaptive_avg_pool1d,
        aten.adaptive_max_pool2d,
        aten.upsample_nearest2d,
        aten.upsample_bilinear2d,
        aten._upsample_nearest_exact2d,
    }
)
# Ops whose output position reads a window of input positions (receptive field, dilation).
WINDOWED = CONVOLUTIONS | POOLS
