"""Dimension rules: normalization, softmax, reductions, pooling and resampling."""

from __future__ import annotations

from typing import Any

import torch

from ..ops import POOLS, RESAMPLES
from ..trace import OpNode, TensorRef
from .engine import DimContext, register_rule

aten = torch.ops.aten


# -- normalization and reductions ---------------------------------------------------------------
@register_rule(
    aten.native_batch_norm,
    aten._native_batch_norm_legit_no_training,
    aten._native_batch_norm_legit,
    aten.batch_norm,
)
def _batch_norm(ctx: DimContext, node: OpNode) -> None:
    x = node.args[0]
    out = node.outputs[0]
    ctx.identity(x, out)
    for p in node.args[1:5]:
        if isinstance(p, TensorRef) and ctx.shape(p) == (ctx.shape(x)[1],):
            ctx.unify(ctx.L(p, 0), ctx.L(x, 1))
    for extra in node.outputs[1:]:
        if ctx.shape(extra) == (ctx.shape(x)[1],):
            ctx.unify(ctx.L(extra, 0), ctx.L(x, 1))


@register_rule(aten.native_layer_norm, aten.layer_norm)
def _layer_norm(ctx: DimContext, node: OpNode) -> None:
    x, normalized = node.args[0], list(node.args[1])
    out = node.outputs[0]
    nd, k = len(ctx.shape(x)), len(normalized)
    for d in range(nd):
        ctx.same(x, d, out, d)
    for p in node.args[2:4]:
        if isinstance(p, TensorRef):
            for i in range(k):
                ctx.same(p, i, x, nd - k + i)
    for d in range(nd - k, nd):
        ctx.role(x, d, "cross")
    for extra in node.outputs[1:]:
        for d in range(nd - k):
            ctx.same(extra, d, x, d)


@register_rule(aten.native_group_norm, aten.group_norm)
def _group_norm(ctx: DimContext, node: OpNode) -> None:
    ctx.freeze_node(node, "group norm: channels are normalized in fixed groups")


@register_rule(aten._softmax, aten._safe_softmax, aten._log_softmax, aten.softmax, aten.log_softmax)
def _softmax(ctx: DimContext, node: OpNode) -> None:
    x, dim = node.args[0], int(node.args[1])
    out = node.outputs[0]
    ctx.identity(x, out)
    ctx.role(x, dim, "cross")


def _reduce(ctx: DimContext, node: OpNode, dims: Any, keepdim: bool) -> None:
    x, out = node.args[0], node.outputs[0]
    nd = len(ctx.shape(x))
    if dims is None or dims == []:
        dims = list(range(nd))
    dims = {int(d) % nd for d in ([dims] if isinstance(dims, int) else dims)}
    o = 0
    for d in range(nd):
        if d in dims:
            if ctx.shape(x)[d] > 1:
                ctx.role(x, d, "cross")
            o += int(keepdim)
            continue
        ctx.same(x, d, out, o)
        o += 1


@register_rule(aten.mean, aten.sum, aten.amax, aten.amin, aten.var, aten.std, aten.prod)
def _reduction(ctx: DimContext, node: OpNode) -> None:
    # Overloads differ (sum.default has no dims, var.correction takes keepdim by keyword):
    # read the schema's named arguments instead of positions.
    named = dict(zip((a.name for a in node.op._schema.arguments), node.args)) | node.kwargs
    dims = named.get("dim")
    _reduce(
        ctx,
        node,
        dims if isinstance(dims, int | list | tuple) else None,
        bool(named.get("keepdim", False)),
    )


@register_rule(
    aten.max.dim, aten.min.dim, aten.max.default, aten.min.default, aten.argmax, aten.argmin
)
def _selecting_reduction(ctx: DimContext, node: OpNode) -> None:
    """max/min along a dim (values and their indices) and argmax/argmin: reductions whose
    outputs share one shape. (``max.other`` is elementwise and not covered here.)"""
    named = dict(zip((a.name for a in node.op._schema.arguments), node.args)) | node.kwargs
    dims = named.get("dim")
    _reduce(ctx, node, dims if isinstance(dims, int) else None, bool(named.get("keepdim", False)))
    values, *rest = node.outputs
    for other in rest:
        for d in range(len(ctx.shape(values))):
            ctx.same(values, d, other, d)


@register_rule(aten.linalg_vector_norm)
def _vector_norm(ctx: DimContext, node: OpNode) -> None:
    dims = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim")
    keep = node.args[3] if len(node.args) > 3 else node.kwargs.get("keepdim", False)
    _reduce(ctx, node, dims, bool(keep))


@register_rule(*POOLS, *RESAMPLES)
def _pool(ctx: DimContext, node: OpNode) -> None:
    x = node.args[0]
    for out in node.outputs:
        ctx.same(x, 0, out, 0)
        if len(ctx.shape(x)) > 2:
            ctx.same(x, 1, out, 1)
