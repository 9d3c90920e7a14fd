"""Receptive field of convolution and pooling stacks, computed on the traced graph.

Each spatial tensor carries ``(size, jump)`` per spatial dimension: the extent of input pixels
one of its elements sees and the input distance between neighbouring elements. A convolution
or pooling window with kernel ``k``, dilation ``d`` and stride ``s`` maps it to
``size + (k - 1) * d * jump`` and ``jump * s``. Where branches meet (residual adds, concat) the
largest field wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..graph.ops import CONVOLUTIONS, POOLS
from ..graph.trace import ModelGraph, OpNode

__all__ = ["ReceptiveField", "receptive_fields"]

aten = torch.ops.aten


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one tensor, per spatial dimension, in input pixels."""

    size: tuple[int, ...]
    jump: tuple[int, ...]
    module: str = ""

    def __str__(self) -> str:
        return "x".join(map(str, self.size)) + " (stride " + "x".join(map(str, self.jump)) + ")"


def _window(graph: ModelGraph, node: OpNode) -> tuple[list[int], list[int], list[int]] | None:
    """Kernel, stride and dilation of a windowed op, or None."""
    packet = node.op.overloadpacket
    if packet in CONVOLUTIONS:
        w = graph.arg(node, 1).shape
        nd = len(w) - 2
        stride, dilation = list(graph.arg(node, 3)), list(graph.arg(node, 5))
        if graph.arg(node, 6, False):  # transposed convs widen the field without striding
            return list(w[2:]), [1] * nd, dilation
        return list(w[2:]), stride, dilation
    if packet in POOLS:
        kernel = list(graph.arg(node, 1))
        stride = list(graph.arg(node, 2, None) or kernel)
        nd = len(graph.tensors[node.outputs[0]].shape) - 2
        kernel = kernel * nd if len(kernel) == 1 else kernel
        stride = stride * nd if len(stride) == 1 else stride
        dil = graph.arg(node, 4, [1]) if "max_pool" in str(packet) else [1]
        dil = list(dil) * nd if len(dil) == 1 else list(dil)
        return kernel, stride, dil
    return None


def receptive_fields(graph: ModelGraph) -> dict[int, ReceptiveField]:
    """Receptive field of every spatial tensor (rank >= 3) reachable from the inputs.

    Global pooling and flattening end the spatial stack: their outputs get no entry.
    """
    fields: dict[int, ReceptiveField] = {}
    for tid in graph.inputs:
        shape = graph.tensors[tid].shape
        if len(shape) >= 3:
            nd = len(shape) - 2
            fields[tid] = ReceptiveField((1,) * nd, (1,) * nd)
    for node in graph.nodes:
        ins = [fields[t] for t in node.inputs if t in fields]
        if not ins:
            continue
        base = max(ins, key=lambda f: f.size)
        window = _window(graph, node)
        if window is not None:
            kernel, stride, dilation = window
            size = tuple(
                r + (k - 1) * d * j for r, k, d, j in zip(base.size, kernel, dilation, base.jump)
            )
            jump = tuple(j * s for j, s in zip(base.jump, stride))
            new = ReceptiveField(size, jump, node.module)
        else:
            new = base
        for out in node.outputs:
            shape = graph.tensors[out].shape
            if len(shape) == len(base.size) + 2 and all(s > 1 for s in shape[2:]):
                fields[out] = new
    return fields
