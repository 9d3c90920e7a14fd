"""Per-op dimension rules: how indices along an op's output dims map to its inputs' dims.

One registry, one small function per op family. A rule couples layouts through ``ctx`` and
marks roles: ``produce`` on a parameter's output-feature dim (what channel pruning removes),
``contract`` on a parameter dim the op sums over (the consumer side), ``cross`` on a dim that an
op mixes across (normalization, softmax, attention scores: pruning it is not exact). An op
without a rule freezes every dim it touches and the freeze names the op and its module.

Users extend it for their own ops::

    @register_rule(torch.ops.mylib.fused_gelu_linear)
    def _my_rule(ctx, node): ...
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .._registry import Registry
from .dims import Atoms, Layout
from .trace import ModelGraph, OpNode, TensorRef

__all__ = ["DimContext", "Rule", "register_rule", "rule_for"]

aten = torch.ops.aten
Rule = Callable[["DimContext", OpNode], None]
RULES: Registry[Rule] = Registry(
    "dimension rule", "op", hint="Give it one with @slimtorch.register_rule(torch.ops.NS.OP)."
)


def register_rule(*ops: Any, override: bool = False) -> Callable[[Rule], Rule]:
    """Registers a dimension rule for ATen op packets or overloads (an overload's own rule
    wins over its packet's)."""
    return RULES.register(*ops, override=override)


def rule_for(op: Any) -> Rule | None:
    return RULES.lookup(op)


class DimContext:
    """Layouts of every (tensor, dim) of a graph, built by running the rules in order."""

    def __init__(self, graph: ModelGraph) -> None:
        self.graph = graph
        self.atoms = Atoms()
        self.layouts: dict[tuple[int, int], Layout] = {}
        self.roles: dict[tuple[int, int], set[str]] = {}  # (param tid, dim) -> roles
        self.base: dict[int, tuple[int, list[int | None]]] = {}  # view tid -> (param tid, dims)
        self.conv_groups: dict[str, Layout] = {}  # conv module -> layout of its groups
        self.node: OpNode | None = None

    # -- access ----------------------------------------------------------------------------
    def shape(self, t: int | TensorRef) -> tuple[int, ...]:
        return self.graph.tensors[t.tid if isinstance(t, TensorRef) else t].shape

    def L(self, t: int | TensorRef, dim: int) -> Layout:
        tid = t.tid if isinstance(t, TensorRef) else t
        shape = self.graph.tensors[tid].shape
        dim = dim % len(shape)
        key = (tid, dim)
        if key not in self.layouts:
            self.layouts[key] = [(self.atoms.new(shape[dim]),)]
        return self.layouts[key]

    def same(self, a: int | TensorRef, da: int, b: int | TensorRef, db: int) -> None:
        if self.shape(a)[da] == self.shape(b)[db]:
            self.atoms.unify(self.L(a, da), self.L(b, db))

    def unify(self, left: Layout, right: Layout) -> None:
        self.atoms.unify(left, right)

    def new_atom(self, size: int) -> int:
        return self.atoms.new(size)

    def identity(self, a: int | TensorRef, b: int | TensorRef) -> None:
        """Couples every dim of ``a`` with the same dim of ``b`` (same rank)."""
        for d in range(len(self.shape(a))):
            self.same(a, d, b, d)

    def freeze_dim(self, t: int | TensorRef, dim: int, reason: str) -> None:
        self.atoms.freeze_layout(self.atoms.expand(self.L(t, dim)), reason)

    def freeze_tensor(self, t: int | TensorRef, reason: str) -> None:
        for d in range(len(self.shape(t))):
            self.freeze_dim(t, d, reason)

    def freeze_node(self, node: OpNode, why: str) -> None:
        reason = f"{why} (op {node.name} in module '{node.module}')"
        if rule_for(node.op) is None:
            reason += f"; give it one with @slimtorch.register_rule(torch.ops.{_op_path(node)})"
        for tid in (*node.inputs, *node.outputs):
            self.freeze_tensor(tid, reason)

    def role(self, t: int | TensorRef, dim: int, role: str) -> None:
        """Marks a role on the parameter behind ``t`` (through views such as ``t()``)."""
        tid = t.tid if isinstance(t, TensorRef) else t
        dim = dim % len(self.shape(tid))
        info = self.graph.tensors[tid]
        if info.kind in ("param", "buffer"):
            self.roles.setdefault((tid, dim), set()).add(role)
        elif tid in self.base:
            ptid, dims = self.base[tid]
            if dims[dim] is not None:
                self.roles.setdefault((ptid, dims[dim]), set()).add(role)
        if role in ("produce", "cross"):
            for seg in self.atoms.expand(self.L(tid, dim)):
                for a in seg:
                    self.atoms.flag(a, role)

    def alias(self, out: int, src: int, dims: list[int | None]) -> None:
        """Records that ``out`` is a view of a parameter (``dims[i]``: its source dim)."""
        info = self.graph.tensors[src]
        if info.kind in ("param", "buffer"):
            self.base[out] = (src, dims)
        elif src in self.base:
            ptid, pdims = self.base[src]
            self.base[out] = (ptid, [pdims[d] if d is not None else None for d in dims])

    def run(self) -> DimContext:
        for node in self.graph.nodes:
            self.node = node
            rule = rule_for(node.op)
            if rule is None:
                self.freeze_node(node, "no dimension rule")
            else:
                rule(self, node)
        for tid in self.graph.inputs:
            self.freeze_tensor(tid, "dimension of a model input")
        for tid in self.graph.outputs:
            self.freeze_tensor(tid, "dimension of a model output")
        return self


def _op_path(node: OpNode) -> str:
    packet = getattr(node.op, "overloadpacket", node.op)
    name = getattr(packet, "_qualified_op_name", None) or str(packet)
    return name.replace("::", ".")


def _tensors(node: OpNode) -> list[TensorRef]:
    return [a for a in node.args if isinstance(a, TensorRef)]


# -- elementwise and broadcast ----------------------------------------------------------------
def _broadcast(ctx: DimContext, out: int, inputs: list[TensorRef]) -> None:
    oshape = ctx.shape(out)
    for t in inputs:
        shape = ctx.shape(t)
        off = len(oshape) - len(shape)
        for d, n in enumerate(shape):
            if off + d >= 0 and n == oshape[off + d] and n > 1:
                ctx.unify(ctx.L(t, d), ctx.L(out, off + d))


@register_rule(
    aten.add,
    aten.add_,
    aten.sub,
    aten.sub_,
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
            _broadcast(ctx, out, refs)


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


# -- convolution ------------------------------------------------------------------------------
@register_rule(aten.convolution, aten._convolution)
def _convolution(ctx: DimContext, node: OpNode) -> None:
    x, w = node.args[0], node.args[1]
    bias = node.args[2] if len(node.args) > 2 else None
    transposed = bool(node.args[6]) if len(node.args) > 6 else False
    groups = int(node.args[8]) if len(node.args) > 8 else 1
    out = node.outputs[0]
    ctx.same(x, 0, out, 0)
    cin, cout = ctx.shape(x)[1], ctx.shape(out)[1]
    g_atom = ctx.new_atom(groups)
    i_atom = ctx.new_atom(cin // groups)
    o_atom = ctx.new_atom(cout // groups)
    ctx.unify(ctx.L(x, 1), [(g_atom, i_atom)])
    ctx.unify(ctx.L(out, 1), [(g_atom, o_atom)])
    if transposed:  # weight [Cin, Cout/groups, k...]
        ctx.unify(ctx.L(w, 0), [(g_atom, i_atom)])
        ctx.unify(ctx.L(w, 1), [(o_atom,)])
        ctx.role(w, 0, "contract")
        ctx.role(w, 1, "produce")
    else:  # weight [Cout, Cin/groups, k...]
        ctx.unify(ctx.L(w, 0), [(g_atom, o_atom)])
        ctx.unify(ctx.L(w, 1), [(i_atom,)])
        ctx.role(w, 0, "produce")
        ctx.role(w, 1, "contract")
        if cin // groups == 1:  # depthwise: a group is a channel
            ctx.atoms.flag(g_atom, "produce")
    if isinstance(bias, TensorRef):
        ctx.unify(ctx.L(bias, 0), ctx.L(out, 1))
    ctx.conv_groups.setdefault(node.module, [(g_atom,)])


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
        ctx.freeze_dim(
            a,
            da,
            "summed over between two activations (attention scores, head_dim); "
            "whole heads are pruned instead",
        )


def _is_param(ctx: DimContext, t: TensorRef) -> bool:
    return ctx.graph.tensors[t.tid].kind in ("param", "buffer") or t.tid in ctx.base


@register_rule(aten.mm)
def _mm(ctx: DimContext, node: OpNode) -> None:
    _matmul2d(ctx, node, node.args[0], node.args[1])


@register_rule(aten.addmm, aten._addmm_activation)
def _addmm(ctx: DimContext, node: OpNode) -> None:
    bias, a, b = node.args[0], node.args[1], node.args[2]
    _matmul2d(ctx, node, a, b)
    _broadcast(ctx, node.outputs[0], [bias])


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
        _broadcast(ctx, out, [node.args[0]])


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
    ctx.freeze_dim(
        q,
        -1,
        "attention head_dim (q.k scores); whole heads are pruned instead",
    )
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


@register_rule(aten.linalg_vector_norm)
def _vector_norm(ctx: DimContext, node: OpNode) -> None:
    dims = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim")
    keep = node.args[3] if len(node.args) > 3 else node.kwargs.get("keepdim", False)
    _reduce(ctx, node, dims, bool(keep))


@register_rule(
    aten.max_pool2d_with_indices,
    aten.max_pool2d,
    aten.avg_pool2d,
    aten._adaptive_avg_pool2d,
    aten.adaptive_max_pool2d,
    aten.max_pool1d,
    aten.avg_pool1d,
    aten.max_pool3d_with_indices,
    aten.avg_pool3d,
    aten._adaptive_avg_pool3d,
    aten.adaptive_avg_pool1d,
    aten.upsample_nearest2d,
    aten.upsample_bilinear2d,
    aten._upsample_nearest_exact2d,
)
def _pool(ctx: DimContext, node: OpNode) -> None:
    x = node.args[0]
    for out in node.outputs:
        ctx.same(x, 0, out, 0)
        if len(ctx.shape(x)) > 2:
            ctx.same(x, 1, out, 1)


# -- shape ops --------------------------------------------------------------------------------
def _product(ctx: DimContext, t: int | TensorRef, dims: list[int]) -> Layout:
    layout: Layout = [()]
    for d in dims:
        layout = [s + seg for s in layout for seg in ctx.L(t, d)]
    return layout


def _reshape(ctx: DimContext, src: int | TensorRef, out: int) -> None:
    ishape, oshape = list(ctx.shape(src)), list(ctx.shape(out))
    i = o = 0
    while i < len(ishape) or o < len(oshape):
        gi, go = [], []
        pi = po = 1
        while i < len(ishape) and ishape[i] == 1:
            i += 1
        while o < len(oshape) and oshape[o] == 1:
            o += 1
        if i >= len(ishape) or o >= len(oshape):
            break
        gi.append(i), go.append(o)
        pi, po = ishape[i], oshape[o]
        i += 1
        o += 1
        while pi != po:
            if pi < po:
                gi.append(i)
                pi *= ishape[i]
                i += 1
            else:
                go.append(o)
                po *= oshape[o]
                o += 1
        left = _product(ctx, src, [d for d in gi if ishape[d] > 1])
        right = _product(ctx, out, [d for d in go if oshape[d] > 1])
        ctx.unify(left, right)
    src_tid = src.tid if isinstance(src, TensorRef) else src
    if math.prod(ishape) == math.prod(oshape):
        ctx.alias(out, src_tid, _dim_map(ishape, oshape))


def _dim_map(ishape: list[int], oshape: list[int]) -> list[int | None]:
    """For each output dim, the input dim it equals when the reshape keeps it intact."""
    non1 = [d for d, n in enumerate(ishape) if n != 1]
    onon1 = [d for d, n in enumerate(oshape) if n != 1]
    if [ishape[d] for d in non1] == [oshape[d] for d in onon1]:
        mapping = dict(zip(onon1, non1))
        return [mapping.get(d) for d in range(len(oshape))]
    return [None] * len(oshape)


@register_rule(
    aten.view,
    aten._unsafe_view,
    aten.reshape,
    aten.squeeze,
    aten.unsqueeze,
    aten.flatten,
    aten.unflatten,
    aten.squeeze_,
    aten.unsqueeze_,
    aten.view_as,
    aten._reshape_alias,
)
def _view(ctx: DimContext, node: OpNode) -> None:
    _reshape(ctx, node.args[0], node.outputs[0])


@register_rule(aten.expand)
def _expand(ctx: DimContext, node: OpNode) -> None:
    x, out = node.args[0], node.outputs[0]
    _broadcast(ctx, out, [x])
    ishape, oshape = ctx.shape(x), ctx.shape(out)
    off = len(oshape) - len(ishape)
    ctx.alias(
        out,
        x.tid,
        [
            d - off if d >= off and ishape[d - off] == oshape[d] else None
            for d in range(len(oshape))
        ],
    )


@register_rule(aten.permute)
def _permute(ctx: DimContext, node: OpNode) -> None:
    x, dims, out = node.args[0], list(node.args[1]), node.outputs[0]
    nd = len(ctx.shape(x))
    dims = [d % nd for d in dims]
    for o, d in enumerate(dims):
        ctx.unify(ctx.L(out, o), ctx.L(x, d))
    ctx.alias(out, x.tid, dims)


@register_rule(aten.t, aten.transpose, aten.numpy_T)
def _transpose(ctx: DimContext, node: OpNode) -> None:
    x, out = node.args[0], node.outputs[0]
    nd = len(ctx.shape(x))
    if node.op.overloadpacket is aten.transpose:
        d0, d1 = int(node.args[1]) % nd, int(node.args[2]) % nd
    else:
        d0, d1 = 0, max(nd - 1, 0)
    dims = list(range(nd))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    for o, d in enumerate(dims):
        ctx.unify(ctx.L(out, o), ctx.L(x, d))
    ctx.alias(out, x.tid, dims)


@register_rule(aten.cat, aten.concat)
def _cat(ctx: DimContext, node: OpNode) -> None:
    tensors = [t for t in node.args[0] if isinstance(t, TensorRef)]
    dim = int(node.args[1]) if len(node.args) > 1 else int(node.kwargs.get("dim", 0))
    out = node.outputs[0]
    nd = len(ctx.shape(out))
    dim %= nd
    parts: Layout = []
    for t in tensors:
        if len(ctx.shape(t)) != nd or ctx.shape(t)[dim] == 0:
            continue
        for d in range(nd):
            if d != dim:
                ctx.same(t, d, out, d)
        parts.extend(ctx.L(t, dim))
    ctx.unify(ctx.L(out, dim), parts)


@register_rule(aten.split, aten.split_with_sizes, aten.chunk, aten.unbind, aten.unsafe_split)
def _split(ctx: DimContext, node: OpNode) -> None:
    x = node.args[0]
    packet = node.op.overloadpacket
    dim = int(node.args[2]) if len(node.args) > 2 else int(node.kwargs.get("dim", 0))
    if packet is aten.unbind:
        dim = int(node.args[1]) if len(node.args) > 1 else 0
    nd = len(ctx.shape(x))
    dim %= nd
    parts: Layout = []
    for out in node.outputs:
        oshape = ctx.shape(out)
        if packet is aten.unbind:
            for d in range(nd):
                if d != dim:
                    ctx.same(x, d, out, d - (d > dim))
            parts.append((ctx.new_atom(1),))
            continue
        for d in range(nd):
            if d != dim:
                ctx.same(x, d, out, d)
        if oshape[dim]:
            parts.extend(ctx.L(out, dim))
    ctx.unify(ctx.L(x, dim), parts)
    sizes = [ctx.shape(o)[dim] for o in node.outputs] if packet is not aten.unbind else []
    if len(set(sizes)) == 1:
        # Equal parts (chunk, or a split size the module recomputes): the code will cut the
        # pruned tensor into equal parts again, so every part must keep the same indices.
        for o in node.outputs[1:]:
            ctx.unify(ctx.L(node.outputs[0], dim), ctx.L(o, dim))
    elif packet is not aten.unbind:
        reason = f"split into fixed unequal sizes {sizes} in '{node.module}'"
        ctx.freeze_dim(x, dim, reason)


@register_rule(aten.slice)
def _slice(ctx: DimContext, node: OpNode) -> None:
    x, out = node.args[0], node.outputs[0]
    nd = len(ctx.shape(x))
    dim = int(node.args[1]) % nd if len(node.args) > 1 else 0
    n = ctx.shape(x)[dim]
    start = node.args[2] if len(node.args) > 2 and node.args[2] is not None else 0
    end = node.args[3] if len(node.args) > 3 and node.args[3] is not None else n
    step = node.args[4] if len(node.args) > 4 else 1
    start = max(0, min(n, start + n if start < 0 else start))
    end = max(start, min(n, end + n if end < 0 else end))
    for d in range(nd):
        if d != dim:
            ctx.same(x, d, out, d)
    if step != 1:
        ctx.freeze_dim(x, dim, f"strided slice in '{node.module}'")
        ctx.freeze_dim(out, dim, "strided slice")
        return
    parts: Layout = []
    if start:
        parts.append((ctx.new_atom(start),))
    if end > start:
        parts.extend(ctx.L(out, dim))
    if n - end:
        parts.append((ctx.new_atom(n - end),))
    ctx.unify(ctx.L(x, dim), parts)
    ctx.alias(
        out,
        x.tid,
        list(range(nd)) if (start, end) == (0, n) else [d if d != dim else None for d in range(nd)],
    )


@register_rule(aten.select)
def _select(ctx: DimContext, node: OpNode) -> None:
    x, out = node.args[0], node.outputs[0]
    nd = len(ctx.shape(x))
    dim = int(node.args[1]) % nd
    n = ctx.shape(x)[dim]
    index = int(node.args[2]) % n
    for d in range(nd):
        if d != dim:
            ctx.same(x, d, out, d - (d > dim))
    parts: Layout = []
    if index:
        parts.append((ctx.new_atom(index),))
    parts.append((ctx.new_atom(1),))
    if n - index - 1:
        parts.append((ctx.new_atom(n - index - 1),))
    ctx.unify(ctx.L(x, dim), parts)


@register_rule(aten.index)
def _index(ctx: DimContext, node: OpNode) -> None:
    x, indices, out = node.args[0], list(node.args[1]), node.outputs[0]
    nd = len(ctx.shape(x))
    used = [i for i, ix in enumerate(indices) if ix is not None]
    if used != list(range(len(used))) or not used:
        ctx.freeze_node(node, "advanced indexing pattern")
        return
    idx_rank = max(len(ctx.shape(indices[i])) for i in used)
    for d in used:
        ctx.freeze_dim(x, d, "indexed dimension")
    for d in range(len(used), nd):
        ctx.same(x, d, out, idx_rank + d - len(used))


@register_rule(aten.index_select)
def _index_select(ctx: DimContext, node: OpNode) -> None:
    x, dim = node.args[0], int(node.args[1])
    out = node.outputs[0]
    nd = len(ctx.shape(x))
    dim %= nd
    for d in range(nd):
        if d != dim:
            ctx.same(x, d, out, d)
    # A gather along a dim (e.g. a fixed channel permutation): its positions are constants.
    reason = f"index_select with a fixed index in '{node.module}'"
    ctx.freeze_dim(x, dim, reason)
    ctx.freeze_dim(out, dim, reason)


@register_rule(aten.embedding)
def _embedding(ctx: DimContext, node: OpNode) -> None:
    w, idx, out = node.args[0], node.args[1], node.outputs[0]
    for d in range(len(ctx.shape(idx))):
        ctx.same(idx, d, out, d)
    ctx.same(w, 1, out, -1)
    ctx.role(w, 1, "produce")


@register_rule(aten.as_strided_, aten.as_strided)
def _as_strided(ctx: DimContext, node: OpNode) -> None:
    x, out = node.args[0], node.outputs[0]
    if ctx.shape(x) == ctx.shape(out) and node.op.overloadpacket is aten.as_strided_:
        # ATen kernels restride a fresh output to a memory format before writing it.
        ctx.identity(x, out)
    else:
        ctx.freeze_node(node, "as_strided reinterprets memory")


@register_rule(aten.roll, aten.constant_pad_nd, aten.flip)
def _spatial_shift(ctx: DimContext, node: OpNode) -> None:
    """Ops that move elements along some dims: those dims are frozen, the others pass."""
    x, out = node.args[0], node.outputs[0]
    nd = len(ctx.shape(x))
    packet = node.op.overloadpacket
    if packet is aten.constant_pad_nd:
        pad = list(node.args[1])
        moved = {nd - 1 - i // 2 for i, p in enumerate(pad) if p}
    elif packet is aten.roll:
        dims = node.args[2] if len(node.args) > 2 else []
        moved = {int(d) % nd for d in (dims if isinstance(dims, list | tuple) else [dims])}
        moved = moved or set(range(nd))
    else:
        moved = {int(d) % nd for d in node.args[1]}
    for d in range(nd):
        if d in moved:
            ctx.freeze_dim(x, d, f"{node.name} moves it")
        else:
            ctx.same(x, d, out, d)
