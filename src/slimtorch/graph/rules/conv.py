"""Dimension rules: convolution (grouped and depthwise included)."""

from __future__ import annotations

import torch

from ..trace import OpNode, TensorRef
from .engine import DimContext, register_rule

aten = torch.ops.aten


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
    # gi / go: channels in / out as groups x per group; i / o: one group's channels
    if groups == 1:  # the common case: the channel layouts themselves
        gi, go = i, o = ctx.L(x, 1), ctx.L(out, 1)
    else:
        i, o = [(ctx.new_atom(cin // groups),)], [(ctx.new_atom(cout // groups),)]
        gi, go = [(g_atom, *i[0])], [(g_atom, *o[0])]
        ctx.unify(ctx.L(x, 1), gi)
        ctx.unify(ctx.L(out, 1), go)
    if transposed:  # weight [Cin, Cout/groups, k...]
        ctx.unify(ctx.L(w, 0), gi)
        ctx.unify(ctx.L(w, 1), o)
        ctx.role(w, 0, "contract")
        ctx.role(w, 1, "produce")
    else:  # weight [Cout, Cin/groups, k...]
        ctx.unify(ctx.L(w, 0), go)
        ctx.unify(ctx.L(w, 1), i)
        ctx.role(w, 0, "produce")
        ctx.role(w, 1, "contract")
        if cin // groups == 1:  # depthwise: a group is a channel
            ctx.atoms.flag(g_atom, "produce")
    if isinstance(bias, TensorRef):
        ctx.unify(ctx.L(bias, 0), ctx.L(out, 1))
    ctx.conv_groups.setdefault(node.module, [(g_atom,)])
