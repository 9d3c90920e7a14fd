"""Dimension rules: elementwise and broadcasting ops, and tensor creation."""

from __future__ import annotations

import torch

from ..trace import OpNode, TensorRef
from .engine import DimContext, register_rule

aten = torch.ops.aten


# -- elementwise and broadcast ----------------------------------------------------------------
@register_rule(
    aten.add,
    aten.add_,
    aten.sub,
    aten.sub_,
    aten.rsub,
    aten.mul,
    aten.mul_,
    aten.div,
    aten.div_,
    aten.relu,
    aten.relu_,
    aten.gelu,
    aten.gelu_,
    aten.silu,
    aten.silu_,
    aten.sigmoid,
    aten.sigmoid_,
    aten.tanh,
    aten.tanh_,
    aten.hardswish,
    aten.hardswish_,
    aten.hardsigmoid,
    aten.hardsigmoid_,
    aten.hardtanh,
    aten.hardtanh_,
    aten.leaky_relu,
    aten.leaky_relu_,
    aten.elu,
    aten.elu_,
    aten.clamp,
    aten.clamp_,
    aten.clamp_min,
    aten.clamp_min_,
    aten.clamp_max,
    aten.clamp_max_,
    aten.clone,
    aten.contiguous,
    aten.alias,
    aten.detach,
    aten.exp,
    aten.log,
    aten.sqrt,
    aten.rsqrt,
    aten.pow,
    aten.neg,
    aten.abs,
    aten.where,
    aten.masked_fill,
    aten.masked_fill_,
    aten.eq,
    aten.ne,
    aten.lt,
    aten.gt,
    aten.le,
    aten.ge,
    aten.copy_,
    aten.zero_,
    aten.fill_,
    aten.native_dropout,
    aten.dropout,
    aten._to_copy,
    aten.to,
    aten.erf,
    aten.mish,
    aten.softplus,
    aten.sin,
    aten.cos,
    aten.reciprocal,
    aten.logical_not,
    aten.bitwise_not,
    aten.lift_fresh,
    aten.square,
    aten.minimum,
    aten.maximum,
    aten.hardshrink,
    aten.relu6,
    aten.sign,
    aten.round,
    aten.floor,
    aten.ceil,
    aten.addcmul,
    aten.addcdiv,
    aten.lerp,
    aten.fill,
)
def _elementwise(ctx: DimContext, node: OpNode) -> None:
    ins = [ctx.graph.tensors[t] for t in node.inputs]
    refs = [TensorRef(t.tid) for t in ins]
    for out in node.outputs:
        if ctx.shape(out) == ctx.shape(node.outputs[0]):
            ctx.broadcast(out, refs)


@register_rule(
    aten.empty,
    aten.zeros,
    aten.ones,
    aten.full,
    aten.arange,
    aten.scalar_tensor,
    aten.new_zeros,
    aten.new_ones,
    aten.new_empty,
    aten.new_full,
    aten.randn,
    aten.rand,
    aten.empty_like,
    aten.zeros_like,
    aten.ones_like,
    aten.full_like,
    aten.linspace,
    aten._assert_async,
    aten.sym_size,
    aten.lift_fresh_copy,
    aten.empty_strided,
)
def _creation(ctx: DimContext, node: OpNode) -> None:
    """New tensors: nothing is coupled (``*_like`` copies a shape, not indices)."""
