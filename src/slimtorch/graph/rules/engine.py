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

from collections.abc import Callable
from typing import Any

import torch

from ..._registry import Registry
from ..dims import Atoms, Layout
from ..trace import ModelGraph, OpNode, TensorRef

__all__ = ["RULES", "DimContext", "Rule", "register_rule", "rule_for", "tensor_args"]

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
        # modules whose splits read their sizes from their own parameters, so that the
        # parts of a split may keep different numbers of channels
        self.sized_splits: set[str] = set()
        self.node: OpNode | None = None

    # -- access ----------------------------------------------------------------------------
    def shape(self, t: int | TensorRef) -> tuple[int, ...]:
        return self.graph.tensors[t.tid if isinstance(t, TensorRef) else t].shape

    def L(self, t: int | TensorRef, dim: int) -> Layout:
        key = self._key(t, dim)
        if key not in self.layouts:
            self.layouts[key] = [(self.atoms.new(self.graph.tensors[key[0]].shape[key[1]]),)]
        return self.layouts[key]

    def same(self, a: int | TensorRef, da: int, b: int | TensorRef, db: int) -> None:
        if self.shape(a)[da] == self.shape(b)[db]:
            self._couple(a, da, b, db)

    def _couple(self, a: int | TensorRef, da: int, b: int | TensorRef, db: int) -> None:
        # Two dims of one size become one index space. A dim not seen yet (an op's fresh
        # output, nearly always) takes the other's layout as it is: the same as unifying it
        # with fresh atoms, without making and joining them.
        kb = self._key(b, db)
        if kb not in self.layouts:
            self.layouts[kb] = self.L(a, da)
            return
        ka = self._key(a, da)
        if ka not in self.layouts:
            self.layouts[ka] = self.layouts[kb]
            return
        self.atoms.unify(self.layouts[ka], self.layouts[kb])

    def _key(self, t: int | TensorRef, dim: int) -> tuple[int, int]:
        tid = t.tid if isinstance(t, TensorRef) else t
        return tid, dim % len(self.graph.tensors[tid].shape)

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

    def flag_dim(self, t: int | TensorRef, dim: int, name: str) -> None:
        for seg in self.atoms.expand(self.L(t, dim)):
            for a in seg:
                self.atoms.flag(a, name)

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

    def broadcast(self, out: int, inputs: list[TensorRef]) -> None:
        """Couples each input dim with the output dim it broadcasts to (sizes > 1 only)."""
        oshape = self.shape(out)
        for t in inputs:
            shape = self.shape(t)
            off = len(oshape) - len(shape)
            for d, n in enumerate(shape):
                if off + d >= 0 and n == oshape[off + d] and n > 1:
                    self._couple(t, d, out, off + d)

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


def tensor_args(node: OpNode) -> list[TensorRef]:
    """The tensor arguments of an op, in order."""
    return [a for a in node.args if isinstance(a, TensorRef)]
