"""Multiply-accumulate counts of ATen ops: one small function per op family, in a registry.

Counts follow the convention torchvision uses for its published ``_ops``: convolutions,
matrix products and attention (fused kernels included); elementwise ops, normalization and
bias additions are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .._registry import Registry
from ..graph.trace import ModelGraph, OpNode

__all__ = ["MacRule", "node_macs", "register_macs"]

aten = torch.ops.aten

MacRule = Callable[[ModelGraph, OpNode], int]
MAC_RULES: Registry[MacRule] = Registry("MAC counter", "op")


def register_macs(*ops: object, override: bool = False) -> Callable[[MacRule], MacRule]:
    """Registers a MAC counter for ATen op packets (``aten.mm``) or overloads.

    Example:
        >>> @register_macs(torch.ops.aten.mm)
        ... def _mm(graph, node): ...
    """

    return MAC_RULES.register(*ops, override=override)


def node_macs(graph: ModelGraph, node: OpNode) -> int:
    """MACs of one recorded op; 0 for ops that do no multiply-accumulate work."""
    rule = MAC_RULES.lookup(node.op)
    return int(rule(graph, node)) if rule is not None else 0


def _shape(graph: ModelGraph, node: OpNode, i: int) -> tuple[int, ...]:
    return graph.arg(node, i).shape


def _out(graph: ModelGraph, node: OpNode) -> tuple[int, ...]:
    return graph.tensors[node.outputs[0]].shape


@register_macs(aten.convolution, aten._convolution, aten.convolution_overrideable)
def _conv(graph: ModelGraph, node: OpNode) -> int:
    x, w = _shape(graph, node, 0), _shape(graph, node, 1)
    transposed = bool(graph.arg(node, 6, False))
    kernel = math.prod(w[2:])
    if transposed:  # weight is [Cin, Cout/groups, k...]: every input element fans out
        return math.prod(x) * w[1] * kernel
    return math.prod(_out(graph, node)) * w[1] * kernel


@register_macs(aten.mm)
def _mm(graph: ModelGraph, node: OpNode) -> int:
    a, b = _shape(graph, node, 0), _shape(graph, node, 1)
    return a[0] * a[1] * b[1]


@register_macs(aten.addmm, aten._addmm_activation)
def _addmm(graph: ModelGraph, node: OpNode) -> int:
    a, b = _shape(graph, node, 1), _shape(graph, node, 2)
    return a[0] * a[1] * b[1]


@register_macs(aten.bmm)
def _bmm(graph: ModelGraph, node: OpNode) -> int:
    a, b = _shape(graph, node, 0), _shape(graph, node, 1)
    return a[0] * a[1] * a[2] * b[2]


@register_macs(aten.baddbmm)
def _baddbmm(graph: ModelGraph, node: OpNode) -> int:
    a, b = _shape(graph, node, 1), _shape(graph, node, 2)
    return a[0] * a[1] * a[2] * b[2]


@register_macs(aten._grouped_mm)
def _grouped_mm(graph: ModelGraph, node: OpNode) -> int:
    # each output element sums over the contracted K of its own expert
    return math.prod(_out(graph, node)) * _shape(graph, node, 0)[-1]


@register_macs(aten.linear)
def _linear(graph: ModelGraph, node: OpNode) -> int:
    w = _shape(graph, node, 1)
    return math.prod(_out(graph, node)) * w[1]


@register_macs(
    aten.scaled_dot_product_attention,
    aten._scaled_dot_product_attention_math,
    aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_efficient_attention,
    aten._scaled_dot_product_cudnn_attention,
)
def _sdpa(graph: ModelGraph, node: OpNode) -> int:
    q, k, v = (_shape(graph, node, i) for i in range(3))
    # Q K^T then softmax(.) V.
    return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def _attention_macs(batch: int, lq: int, lk: int, embed: int) -> int:
    projections = lq * embed * embed + 2 * lk * embed * embed + lq * embed * embed
    return batch * (projections + 2 * lq * lk * embed)


@register_macs(aten._native_multi_head_attention)
def _fused_mha(graph: ModelGraph, node: OpNode) -> int:
    # Eval-mode nn.MultiheadAttention without autograd hides its projections in this op.
    q, k = _shape(graph, node, 0), _shape(graph, node, 1)
    embed = int(graph.arg(node, 3))
    batch = math.prod(q[:-2]) if len(q) > 2 else 1
    return _attention_macs(batch, q[-2], k[-2], embed)


@register_macs(aten._transformer_encoder_layer_fwd)
def _fused_encoder_layer(graph: ModelGraph, node: OpNode) -> int:
    src = _shape(graph, node, 0)
    embed = int(graph.arg(node, 1))
    ffn = _shape(graph, node, 14)[0]
    batch = math.prod(src[:-2]) if len(src) > 2 else 1
    tokens = batch * src[-2]
    return _attention_macs(batch, src[-2], src[-2], embed) + 2 * tokens * embed * ffn
