"""Dimension rules of shape ops: views, expand, permutes, cat/split, slicing, indexing, gathers."""

from __future__ import annotations

import math

import torch

from ..dims import Layout
from ..trace import OpNode, TensorRef
from .engine import DimContext, register_rule

aten = torch.ops.aten


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
    ctx.broadcast(out, [x])
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


@register_rule(aten.stack)
def _stack(ctx: DimContext, node: OpNode) -> None:
    """``stack`` of same-shape tensors: each input dim is the output dim it lands on (the
    inputs share their index spaces, as in a sum); the new dim indexes the inputs."""
    tensors = [t for t in node.args[0] if isinstance(t, TensorRef)]
    out = node.outputs[0]
    nd = len(ctx.shape(out))
    dim = int(node.args[1]) if len(node.args) > 1 else int(node.kwargs.get("dim", 0))
    dim %= nd
    for t in tensors:
        for d in range(nd - 1):
            ctx.same(t, d, out, d if d < dim else d + 1)
    ctx.freeze_dim(out, dim, "indexes the tensors of a stack (one per input)")


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
    elif packet is not aten.unbind and node.module not in ctx.sized_splits:
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
    for d in range(nd):
        if d != dim:
            ctx.same(x, d, out, d)
    if step != 1:
        ctx.freeze_dim(x, dim, f"strided slice in '{node.module}'")
        ctx.freeze_dim(out, dim, "strided slice")
        return
    lo = max(0, min(n, start + n if start < 0 else start))
    hi = max(lo, min(n, end + n if end < 0 else end))
    if (lo, hi) == (0, n):
        ctx.identity(x, out)
        ctx.alias(out, x.tid, list(range(nd)))
        return
    # The bounds are numbers in the model's code: a bound >= 0 fixes how many channels come
    # before it, a negative one how many come after it. Those regions keep their size.
    keep_prefix = start > 0 or (0 <= end < n)
    keep_segment = start < 0 or (0 <= end < n)
    keep_suffix = start < 0 or end < 0
    _bounded(ctx, node, x, dim, out, (lo, hi, n), (keep_prefix, keep_segment, keep_suffix))
    ctx.alias(out, x.tid, [d if d != dim else None for d in range(nd)])


def _bounded(
    ctx: DimContext,
    node: OpNode,
    x: TensorRef,
    dim: int,
    out: int | None,
    bounds: tuple[int, int, int],
    keep: tuple[bool, bool, bool],
) -> None:
    """Splits ``x``'s dim into prefix | segment | suffix; the segment is ``out``'s dim (or a
    new atom when ``out`` is None) and the regions in ``keep`` are frozen."""
    lo, hi, n = bounds
    reason = f"sliced at fixed positions in '{node.module}' (op {node.name})"
    regions: list[Layout] = [
        [(ctx.new_atom(lo),)] if lo else [],
        (ctx.L(out, dim) if out is not None else [(ctx.new_atom(hi - lo),)]) if hi > lo else [],
        [(ctx.new_atom(n - hi),)] if n - hi else [],
    ]
    ctx.unify(ctx.L(x, dim), [seg for region in regions for seg in region])
    for region, frozen in zip(regions, keep):
        if frozen and region:
            ctx.atoms.freeze_layout(ctx.atoms.expand(region), reason)


@register_rule(aten.select)
def _select(ctx: DimContext, node: OpNode) -> None:
    x, out = node.args[0], node.outputs[0]
    nd = len(ctx.shape(x))
    dim = int(node.args[1]) % nd
    n = ctx.shape(x)[dim]
    index = int(node.args[2])
    for d in range(nd):
        if d != dim:
            ctx.same(x, d, out, d - (d > dim))
    i = index % n
    keep = (index >= 0, True, index < 0)
    _bounded(ctx, node, x, dim, None, (i, i + 1, n), keep)


@register_rule(aten.index)
def _index(ctx: DimContext, node: OpNode) -> None:
    x, indices, out = node.args[0], list(node.args[1]), node.outputs[0]
    nd = len(ctx.shape(x))
    used = [i for i, ix in enumerate(indices) if ix is not None]
    if used != list(range(len(used))) or not used:
        ctx.freeze_node(node, "advanced indexing pattern")
        return
    # A boolean mask consumes as many dims as it has; an integer index one.
    tensors = ctx.graph.tensors
    consumed = sum(
        len(ctx.shape(indices[i])) if tensors[indices[i].tid].dtype == torch.bool else 1
        for i in used
    )
    rest = nd - consumed
    lead = len(ctx.shape(out)) - rest  # the output's dims made by the indices
    if rest < 0 or lead < 0 or ctx.shape(x)[consumed:] != ctx.shape(out)[lead:]:
        ctx.freeze_node(node, "advanced indexing pattern")
        return
    for d in range(consumed):
        ctx.freeze_dim(x, d, "indexed dimension")
    for d in range(rest):
        ctx.same(x, consumed + d, out, lead + d)


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


@register_rule(aten.gather)
def _gather(ctx: DimContext, node: OpNode) -> None:
    """``x.gather(dim, index)``: the output has the index's shape; along other dims index
    ``i`` of the output reads index ``i`` of ``x`` where their sizes agree."""
    x, dim, index = node.args[0], int(node.args[1]), node.args[2]
    out = node.outputs[0]
    nd = len(ctx.shape(x))
    dim %= nd
    reason = f"gathered dimension in '{node.module}'"
    for d in range(nd):
        if d == dim:
            continue
        if ctx.shape(index)[d] == ctx.shape(x)[d]:
            ctx.same(x, d, out, d)
            ctx.same(index, d, out, d)
        else:  # a prefix of x's positions: which ones is fixed by the sizes
            ctx.freeze_dim(x, d, reason)
            ctx.freeze_dim(out, d, reason)
    ctx.freeze_dim(x, dim, reason)
    ctx.freeze_dim(out, dim, reason)


@register_rule(aten.topk, aten.sort)
def _topk(ctx: DimContext, node: OpNode) -> None:
    """Values and indices of the top k (or all, sorted) along a dim: that dim is reordered,
    the others pass through."""
    x = node.args[0]
    nd = len(ctx.shape(x))
    named = dict(zip((a.name for a in node.op._schema.arguments), node.args)) | node.kwargs
    dim = int(named.get("dim", -1)) % nd
    reason = f"dimension ranked by {node.op.overloadpacket.__name__} in '{node.module}'"
    ctx.freeze_dim(x, dim, reason)
    for out in node.outputs:
        for d in range(nd):
            if d != dim:
                ctx.same(x, d, out, d)
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
