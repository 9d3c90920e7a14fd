"""Dimension rules of matrix products and attention: linear, mm, addmm, bmm, grouped mm,
sdpa, fused MHA."""

from __future__ import annotations

import torch

from ..trace import OpNode, TensorRef
from .engine import DimContext, register_rule

aten = torch.ops.aten


# -- matrix products --------------------------------------------------------------------------
def _matmul2d(ctx: DimContext, node: OpNode, a: TensorRef, b: TensorRef) -> None:
    out = node.outputs[0]
    ctx.same(a, 0, out, 0)
    ctx.same(b, 1, out, 1)
    ctx.same(a, 1, b, 0)
    _contract(ctx, a, 1, b, 0)
    ctx.role(b, 1, "produce")
    ctx.role(a, 0, "produce")


def _contract(ctx: DimContext, a: TensorRef, da: int, b: TensorRef, db: int) -> None:
    """Marks the summed-over dims; between two activations it is an attention score."""
    a_param = _is_param(ctx, a)
    b_param = _is_param(ctx, b)
    if a_param:
        ctx.role(a, da, "contract")
    if b_param:
        ctx.role(b, db, "contract")
    if not a_param and not b_param:
        ctx.role(a, da, "cross")
        ctx.flag_dim(a, da, "score")  # head_dim of q.k: pruned only with factor="inner"


def _is_param(ctx: DimContext, t: TensorRef) -> bool:
    return ctx.graph.tensors[t.tid].kind in ("param", "buffer") or t.tid in ctx.base


@register_rule(aten.mm)
def _mm(ctx: DimContext, node: OpNode) -> None:
    _matmul2d(ctx, node, node.args[0], node.args[1])


@register_rule(aten.addmm, aten._addmm_activation)
def _addmm(ctx: DimContext, node: OpNode) -> None:
    bias, a, b = node.args[0], node.args[1], node.args[2]
    _matmul2d(ctx, node, a, b)
    ctx.broadcast(node.outputs[0], [bias])


@register_rule(aten.bmm, aten.baddbmm)
def _bmm(ctx: DimContext, node: OpNode) -> None:
    a, b = (node.args[0], node.args[1]) if node.op.overloadpacket is aten.bmm else node.args[1:3]
    out = node.outputs[0]
    ctx.same(a, 0, b, 0)
    ctx.same(a, 0, out, 0)
    ctx.same(a, 1, out, 1)
    ctx.same(b, 2, out, 2)
    ctx.same(a, 2, b, 1)
    _contract(ctx, a, 2, b, 1)
    if node.op.overloadpacket is aten.baddbmm:
        ctx.broadcast(out, [node.args[0]])


@register_rule(aten._grouped_mm)
def _grouped_mm(ctx: DimContext, node: OpNode) -> None:
    """Mixture-of-experts products: rows of ``a`` (M, K) grouped by expert times ``b`` (E, K, N)
    gives (M, N); with ``a`` (E, M, K) it is a batched mm. The expert dim is never pruned."""
    a, b = node.args[0], node.args[1]
    out = node.outputs[0]
    ra, rb = len(ctx.shape(a)), len(ctx.shape(b))
    if (ra, rb) not in ((2, 3), (3, 3)):
        ctx.freeze_node(node, "grouped mm of this rank")
        return
    for d in range(ra - 1):
        ctx.same(a, d, out, d)
    if ra == 3:
        ctx.same(a, 0, b, 0)
    ctx.same(a, -1, b, 1)
    ctx.same(b, 2, out, -1)
    _contract(ctx, a, -1, b, 1)
    ctx.role(b, 2, "produce")
    ctx.freeze_dim(b, 0, "the experts of a grouped mm")
    # its kernels need rows of 16 bytes: pruned widths stay multiples of that
    align = max(1, 16 // ctx.graph.tensors[b.tid].dtype.itemsize)
    ctx.flag_dim(b, 1, f"multiple:{align}")
    ctx.flag_dim(b, 2, f"multiple:{align}")
    bias = node.args[3] if len(node.args) > 3 else node.kwargs.get("bias")
    if isinstance(bias, TensorRef):
        ctx.same(bias, -1, out, -1)


@register_rule(aten.linear)
def _linear(ctx: DimContext, node: OpNode) -> None:
    x, w = node.args[0], node.args[1]
    out = node.outputs[0]
    for d in range(len(ctx.shape(x)) - 1):
        ctx.same(x, d, out, d)
    ctx.same(x, -1, w, 1)
    ctx.same(w, 0, out, -1)
    ctx.role(w, 1, "contract")
    ctx.role(w, 0, "produce")
    if len(node.args) > 2 and isinstance(node.args[2], TensorRef):
        ctx.unify(ctx.L(node.args[2], 0), ctx.L(out, -1))


@register_rule(
    aten.scaled_dot_product_attention,
    aten._scaled_dot_product_attention_math,
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_efficient_attention,
    aten._scaled_dot_product_flash_attention,
)
def _sdpa(ctx: DimContext, node: OpNode) -> None:
    q, k, v = node.args[:3]
    out = node.outputs[0]
    nd = len(ctx.shape(q))
    for d in range(nd - 2):
        ctx.same(q, d, out, d)
        ctx.same(k, d, v, d)
        nq, nk = ctx.shape(q)[d], ctx.shape(k)[d]
        if nq == nk:
            ctx.same(q, d, k, d)
        elif nk > 1 and nq % nk == 0:
            # Grouped-query attention (enable_gqa): query heads = kv heads x repeats.
            ctx.unify(ctx.L(q, d), [(*seg, ctx.new_atom(nq // nk)) for seg in ctx.L(k, d)])
    ctx.same(q, -2, out, -2)
    ctx.same(k, -2, v, -2)
    ctx.same(q, -1, k, -1)
    ctx.same(v, -1, out, -1)
    ctx.role(q, -1, "cross")
    ctx.role(k, -2, "cross")
    ctx.flag_dim(q, -1, "score")  # head_dim of q.k: pruned only with factor="inner"
    mask = node.args[3] if len(node.args) > 3 else node.kwargs.get("attn_mask")
    if isinstance(mask, TensorRef):
        _broadcast_to_scores(ctx, mask, q, k)


def _broadcast_to_scores(ctx: DimContext, mask: TensorRef, q: TensorRef, k: TensorRef) -> None:
    mshape, qshape = ctx.shape(mask), ctx.shape(q)
    off = len(qshape) - len(mshape)
    for d, n in enumerate(mshape):
        od = off + d
        if od < 0 or n == 1:
            continue
        if od == len(qshape) - 1:
            ctx.same(mask, d, k, -2)
        elif n == qshape[od]:
            ctx.same(mask, d, q, od)


@register_rule(aten._native_multi_head_attention, aten._transformer_encoder_layer_fwd)
def _fused_attention(ctx: DimContext, node: OpNode) -> None:
    ctx.freeze_node(node, "fused attention kernel hides its projections; trace with grad=True")
