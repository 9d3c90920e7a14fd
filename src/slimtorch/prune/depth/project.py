"""The cheapest stand-in for a block whose output shape differs from its input's: a 1x1
convolution (strided where the block downsamples) or a linear layer, fitted by ridge least
squares from the block's inputs to its outputs on calibration data."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ...graph.blocks import Block

__all__ = ["fit_projection", "projection_for"]

_MAX_ROWS = 50_000


def _strides(x: tuple[int, ...], y: tuple[int, ...]) -> tuple[int, ...] | None:
    """Per spatial dim, the stride ``s`` of a 1x1 conv that maps size ``x`` to ``y``."""
    out = []
    for a, b in zip(x, y):
        s = max(1, a // b) if b else 0
        if not s or (a - 1) // s + 1 != b:
            return None
        out.append(s)
    return tuple(out)


def projection_for(block: Block, conv: bool) -> nn.Module | None:
    """An untrained layer that maps the block's input shape to its output shape, or None
    where no 1x1 conv / linear can (a change of rank, of batch, of several dims)."""
    x, y = block.in_shape, block.out_shape
    if len(x) != len(y) or x[0] != y[0]:
        return None
    if conv and len(x) in (3, 4):
        strides = _strides(x[2:], y[2:])
        if strides is None:
            return None
        cls = nn.Conv1d if len(x) == 3 else nn.Conv2d
        return cls(x[1], y[1], 1, stride=strides)
    if x[:-1] == y[:-1]:
        return nn.Linear(x[-1], y[-1])
    return None


def _rows(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input rows a 1x1 layer multiplies by its weight (positions x channels)."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    index = (slice(None), slice(None), *(slice(None, None, s) for s in layer.stride))
    return x[index].movedim(1, -1).reshape(-1, x.shape[1])


def _out_rows(layer: nn.Module, y: torch.Tensor) -> torch.Tensor:
    return (
        y.reshape(-1, y.shape[-1])
        if isinstance(layer, nn.Linear)
        else y.movedim(1, -1).reshape(-1, y.shape[1])
    )


@torch.no_grad()
def fit_projection(
    layer: nn.Module, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], ridge: float = 1e-5
) -> float:
    """Fits ``layer`` (from ``projection_for``) in place to map each input to its output;
    returns the relative error of the fit on those pairs."""
    gen = torch.Generator().manual_seed(0)
    gram = cross = None
    energy = 0.0
    for x, y in pairs:
        a, b = _rows(layer, x).double(), _out_rows(layer, y).double()
        if len(a) > _MAX_ROWS:
            pick = torch.randperm(len(a), generator=gen)[:_MAX_ROWS]
            a, b = a[pick], b[pick]
        a = torch.cat([a, a.new_ones(len(a), 1)], 1)
        gram = a.t() @ a if gram is None else gram + a.t() @ a
        cross = a.t() @ b if cross is None else cross + a.t() @ b
        energy += float(b.square().sum())
    assert gram is not None and cross is not None
    d = len(gram) - 1
    reg = torch.full((d + 1,), ridge * float(gram.diagonal()[:d].mean()), dtype=torch.float64)
    reg[d] = 0.0
    theta = torch.linalg.solve(gram + torch.diag(reg + 1e-12), cross)
    w, bias = theta[:d].t(), theta[d]
    layer.weight.copy_(w.reshape(layer.weight.shape).to(layer.weight.dtype))
    layer.bias.copy_(bias.to(layer.bias.dtype))
    sq = float((theta * (gram @ theta)).sum() - 2 * (theta * cross).sum()) + energy
    return (max(sq, 0.0) / max(energy, 1e-30)) ** 0.5
