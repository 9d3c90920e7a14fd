"""Tracing: one real forward pass recorded as a list of ATen ops.

The trace runs the model on the example inputs under a ``TorchDispatchMode`` and records every
ATen op with its input and output tensors, the module that called it (from forward hooks) and
which inputs are parameters or buffers (by object identity). Running the real forward handles
Python control flow; tensors on the ``meta`` device work too, which makes counting MACs of a
large model nearly free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from .._forward import (
    Inputs,
    ModuleStack,
    check_model,
    eval_mode,
    forward_error,
    run_forward,
    split_inputs,
)
from ..errors import ForwardError
from ._meta import meta_shortcut, meta_tensors, swapped

__all__ = ["ModelGraph", "ModuleCall", "OpNode", "TensorInfo", "TensorRef", "needs_grad", "trace"]


@dataclass(frozen=True, slots=True)
class TensorRef:
    """Stands for a traced tensor inside an op's recorded arguments."""

    tid: int


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor value of the trace (in-place ops make a new value)."""

    tid: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    kind: str  # "input", "param", "buffer", "const" or "act"
    name: str | None = None  # qualified name of a parameter or buffer
    producer: int | None = None  # index of the op that made it


@dataclass(slots=True)
class OpNode:
    """One recorded ATen op."""

    index: int
    op: Any  # torch._ops.OpOverload
    args: tuple[Any, ...]  # tensors replaced by TensorRef
    kwargs: dict[str, Any]
    inputs: list[int]  # tids of tensor inputs, in argument order
    outputs: list[int]  # tids of tensor outputs
    module: str  # innermost calling module ("" is the root)

    @property
    def name(self) -> str:
        """Short op name such as ``convolution`` or ``add.Tensor``."""
        return str(self.op).removeprefix("aten.").removesuffix(".default")

    @property
    def packet(self) -> Any:
        return self.op.overloadpacket


@dataclass
class ModuleCall:
    """What a module received and returned the first time it ran.

    ``in_tid`` / ``out_tid`` are the first tensor of its inputs / outputs (None if there is
    none); ``count`` is how many times it ran; ``ops`` are the ops it called itself
    (innermost module), not those of its children.
    """

    name: str
    type: str
    in_shapes: Any
    out_shapes: Any
    ops: list[int] = field(default_factory=list)
    in_tid: int | None = None
    out_tid: int | None = None
    count: int = 0


@dataclass
class ModelGraph:
    """The recorded forward pass of a model.

    Attributes:
        nodes: ATen ops in execution order.
        tensors: every tensor value by id.
        inputs: tids of the example inputs, in order (flattened).
        outputs: tids of the model's outputs (flattened).
        calls: modules that ran, in first-call order.
        used_params: qualified names of parameters the forward read.
    """

    nodes: list[OpNode]
    tensors: dict[int, TensorInfo]
    inputs: list[int]
    outputs: list[int]
    calls: dict[str, ModuleCall]
    used_params: set[str]
    module_types: dict[str, str]

    def consumers(self) -> dict[int, list[int]]:
        """Map from tid to the indices of the ops that read it."""
        out: dict[int, list[int]] = {}
        for node in self.nodes:
            for tid in node.inputs:
                out.setdefault(tid, []).append(node.index)
        return out

    def op_kinds(self) -> set[str]:
        return {str(n.op.overloadpacket) for n in self.nodes}

    def arg(self, node: OpNode, i: int, default: Any = None) -> Any:
        """The ``i``-th positional argument of a node, resolved to TensorInfo if a tensor."""
        value = node.args[i] if i < len(node.args) else default
        return self.tensors[value.tid] if isinstance(value, TensorRef) else value


def _is_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


class _Recorder(TorchDispatchMode):
    def __init__(
        self, stack: ModuleStack, params: dict[int, tuple[str, str]], meta: bool = False
    ) -> None:
        super().__init__()
        self.stack = stack
        self.meta = meta
        self.params = params
        self.nodes: list[OpNode] = []
        self.tensors: dict[int, TensorInfo] = {}
        self.tid_of: dict[int, int] = {}  # id(tensor object) -> current tid
        self.alive: list[torch.Tensor] = []  # keeps ids from being reused while tracing
        self.calls: dict[str, ModuleCall] = {}

    def ref(self, t: torch.Tensor, kind: str = "const") -> int:
        tid = self.tid_of.get(id(t))
        if tid is not None:
            return tid
        name = None
        if id(t) in self.params:
            name, kind = self.params[id(t)]
        return self._new(t, kind, name, None)

    def _new(self, t: torch.Tensor, kind: str, name: str | None, producer: int | None) -> int:
        tid = len(self.tensors)
        self.tensors[tid] = TensorInfo(tid, tuple(t.shape), t.dtype, kind, name, producer)
        self.tid_of[id(t)] = tid
        self.alive.append(t)
        return tid

    def _record(self, x: Any, inputs: list[int]) -> Any:
        """Replaces tensors by TensorRef (ATen args nest at most one list deep)."""
        if isinstance(x, torch.Tensor):
            tid = self.ref(x)
            inputs.append(tid)
            return TensorRef(tid)
        if type(x) is list or type(x) is tuple:
            if all(type(v) is int for v in x):  # sizes, strides, dims
                return x
            return type(x)(self._record(v, inputs) for v in x)
        return x

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = meta_shortcut(func, args, kwargs) if self.meta else None
        if out is None:
            out = func(*args, **kwargs)
        if func is torch.ops.aten.detach.default:
            # Autograd bookkeeping, not part of the model's computation.
            tid = self.tid_of.get(id(args[0]))
            if tid is not None:
                self.tid_of[id(out)] = tid
                self.alive.append(out)
            return out
        inputs: list[int] = []
        r_args = tuple(self._record(a, inputs) for a in args)
        r_kwargs = {k: self._record(v, inputs) for k, v in kwargs.items()}
        index = len(self.nodes)
        outs = out if isinstance(out, tuple | list) else (out,)
        outputs = [self._new(t, "act", None, index) for t in outs if _is_tensor(t)]
        module = self.stack.current
        self.nodes.append(OpNode(index, func, r_args, r_kwargs, inputs, outputs, module))
        return out


def _param_ids(model: nn.Module) -> dict[int, tuple[str, str]]:
    ids: dict[int, tuple[str, str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        ids.setdefault(id(p), (name, "param"))
    for name, b in model.named_buffers(remove_duplicate=False):
        ids.setdefault(id(b), (name, "buffer"))
    return ids


def _shape_of(x: Any) -> Any:
    return tuple(x.shape) if _is_tensor(x) else None


def _shapes(value: Any) -> Any:
    # a hook's (args, kwargs) is nearly always (tensors, {}): skip the pytree walk for it
    if isinstance(value, tuple) and len(value) == 2 and value[1] == {}:
        args = value[0]
        if isinstance(args, tuple) and all(_is_tensor(a) for a in args):
            return tuple(tuple(a.shape) for a in args), {}
    if _is_tensor(value):
        return tuple(value.shape)
    return tree_map(_shape_of, value)


def _first_tid(rec: _Recorder, value: Any) -> int | None:
    """The tid of the first tensor in a module's (nested) inputs or outputs."""
    if _is_tensor(value):  # the usual cases first: a tensor, or (tensors, {}) from a hook
        return rec.tid_of.get(id(value))
    head = value[0] if isinstance(value, tuple) and value else None
    if isinstance(head, tuple) and head and _is_tensor(head[0]):
        return rec.tid_of.get(id(head[0]))
    first = next((t for t in tree_flatten(value)[0] if _is_tensor(t)), None)
    return None if first is None else rec.tid_of.get(id(first))


# Modules whose eval-mode forward takes a fused kernel when autograd is off, hiding the
# projections that pruning edits (nn.MultiheadAttention's fast path, the encoder layer's).
_FUSED_WITHOUT_GRAD: tuple[type, ...] = (
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerEncoder,
)


def needs_grad(model: nn.Module) -> bool:
    """Whether ``model`` must be traced with ``grad=True`` to see every op it runs: it holds
    a module whose forward takes a fused path when autograd is off. Tracing without autograd
    is faster; a fused op that is traced anyway freezes the dims it touches."""
    return any(isinstance(m, _FUSED_WITHOUT_GRAD) for m in model.modules())


def trace(
    model: nn.Module,
    example_inputs: Inputs,
    *,
    grad: bool = False,
    eval: bool = True,
    meta: bool = False,
) -> ModelGraph:
    """Records one forward pass of ``model`` on ``example_inputs`` as ATen ops.

    Args:
        model: any ``nn.Module``; it is run, not modified.
        example_inputs: a tensor, a tuple of positional inputs or a dict of keyword inputs.
        grad: trace with autograd on. Eval-mode ``nn.MultiheadAttention`` then takes its
            unfused path, so its projections appear as separate ops.
        eval: run the model in eval mode (restoring each module's flag afterwards).
        meta: record shapes only: parameters and inputs are swapped for ``meta`` tensors
            (``torch.func.functional_call``), so no arithmetic runs. A forward that needs
            real values (data-dependent control flow, CPU-made tensors) is retraced for real.

    Returns:
        The ``ModelGraph``.

    Example:
        >>> g = trace(torch.nn.Linear(4, 2), torch.randn(3, 4))
        >>> [n.name for n in g.nodes]
        ['t', 'addmm']
    """
    check_model(model)
    if meta:
        try:
            return _trace(model, example_inputs, grad, eval, meta=True)
        except ForwardError:
            pass  # needs real values: fall through to a real forward
    try:
        return _trace(model, example_inputs, grad, eval, meta=False)
    except ForwardError as exc:
        raise _with_keywords(model, example_inputs, grad, eval, exc) from exc.__cause__


def _with_keywords(
    model: nn.Module, example_inputs: Inputs, grad: bool, eval: bool, exc: ForwardError
) -> ForwardError:
    """The error of a failed trace as a plain forward reports it: its per-module hooks see
    the keyword inputs of the failing module too (the trace's global hooks do not)."""
    try:
        with eval_mode(model) if eval else contextlib.nullcontext(), torch.set_grad_enabled(grad):
            run_forward(model, example_inputs)
    except ForwardError as plain:
        return plain
    except Exception:  # not a ForwardError: the trace's own error stands
        return exc
    return exc  # runs without the recorder: the trace's error stands


def _trace(
    model: nn.Module, example_inputs: Inputs, grad: bool, eval: bool, meta: bool
) -> ModelGraph:
    args, kwargs = split_inputs(example_inputs)
    calls: dict[str, ModuleCall] = {}
    rec: _Recorder

    def pre(module: nn.Module, a: Any, k: Any) -> None:
        # global hooks: no keyword inputs here (k is None); a module called with keywords
        # only gets its input tid and shapes from them in post
        name = stack.names.get(id(module), "?")
        if name not in calls:
            calls[name] = ModuleCall(name, type(module).__name__, _shapes((a, {})), None)
            calls[name].in_tid = _first_tid(rec, (a, {})) if a else None
        calls[name].count += 1

    def post(module: nn.Module, a: Any, out: Any, k: Any = None) -> None:
        call = calls.get(stack.names.get(id(module), "?"))
        if call is not None and call.out_shapes is None:
            call.out_shapes = _shapes(out)
            call.out_tid = _first_tid(rec, out)
            if k:
                call.in_shapes = _shapes((a, k))
                if call.in_tid is None:
                    call.in_tid = _first_tid(rec, ((), k))

    stack = ModuleStack(model, pre, post, global_hooks=True)
    modules = list({id(m): m for _, m in stack.named}.values())
    if meta:
        meta_of, names = meta_tensors(stack.named)
        args, kwargs = tree_map(lambda x: x.to("meta") if _is_tensor(x) else x, (args, kwargs))
    else:
        meta_of, names = {}, _param_ids(model)
    rec = _Recorder(stack, names, meta)
    rec.calls = calls
    types = {n: type(m).__name__ for n, m in stack.named}
    in_flat = [t for t in tree_flatten((args, kwargs))[0] if _is_tensor(t)]
    try:
        mode = eval_mode(model) if eval else contextlib.nullcontext()
        with mode, torch.set_grad_enabled(grad), rec:
            input_tids = [rec.ref(t, "input") for t in in_flat]
            if meta:
                with swapped(modules, meta_of):
                    out = model(*args, **kwargs)
            else:
                out = model(*args, **kwargs)
    except Exception as exc:
        raise forward_error(model, stack, exc) from exc
    finally:
        stack.close()
    output_tids = [rec.tid_of[id(t)] for t in tree_flatten(out)[0] if _is_tensor(t)]
    for node in rec.nodes:
        call = rec.calls.get(node.module)
        if call is not None:
            call.ops.append(node.index)
    used = {rec.tensors[t].name for n in rec.nodes for t in n.inputs}
    used.discard(None)
    return ModelGraph(rec.nodes, rec.tensors, input_tids, output_tids, rec.calls, used, types)


def iter_params(graph: ModelGraph) -> Iterator[TensorInfo]:
    """Parameter and buffer values read by the forward pass."""
    return (t for t in graph.tensors.values() if t.kind in ("param", "buffer"))
