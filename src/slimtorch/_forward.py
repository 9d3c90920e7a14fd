"""Running a user's model on example inputs, with errors that name the failing module."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)
from torch.utils._pytree import tree_flatten

from ._validate import check_int
from .errors import ForwardError, InputError

Inputs = torch.Tensor | Sequence[Any] | Mapping[str, Any]


def split_inputs(example_inputs: Inputs) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Normalizes example inputs to ``(args, kwargs)`` for ``model(*args, **kwargs)``.

    A tensor is one positional argument, a tuple or list is the positional arguments and a
    dict is keyword arguments (the form Hugging Face models take).
    """
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, Sequence) and not isinstance(example_inputs, str):
        if len(example_inputs) == 0:
            raise InputError(
                "example_inputs is an empty sequence; pass a tensor such as "
                "torch.randn(1, 3, 224, 224), a tuple of tensors, or a dict of keyword inputs."
            )
        return tuple(example_inputs), {}
    raise InputError(
        f"example_inputs of type {type(example_inputs).__name__} is not supported; pass a "
        "tensor, a tuple of positional inputs, or a dict of keyword inputs."
    )


def check_model(model: Any) -> nn.Module:
    """Returns the model, or explains what to pass instead."""
    if not isinstance(model, nn.Module):
        raise InputError(
            f"expected a torch.nn.Module, got {type(model).__name__}; load the model first "
            "(for example slimtorch.load_model('torchvision:resnet50'))."
        )
    return model


def check_threads(threads: int | None) -> int:
    """Returns a valid thread count; ``None`` means all threads torch uses now."""
    if threads is None:
        return torch.get_num_threads()
    return check_int(
        "threads", threads, hint="1 stands for a single-core low-power device, None for all cores"
    )


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Puts every module in eval mode and restores each module's own flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    if any(flag for _, flag in flags):  # most models come in eval mode already
        model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            if m.training is not flag:
                m.training = flag


def _shapes(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, list | tuple):
        return type(value)(_shapes(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _shapes(v) for k, v in value.items()}
    return type(value).__name__


class ModuleStack:
    """Forward hooks that keep the stack of modules currently running.

    Knowing the innermost module lets a failing forward be reported by module name, and lets
    a trace attribute each ATen op to the module that called it.

    ``global_hooks=True`` registers two process-wide hooks instead of two per module (a
    trace's hot path: registering is most of the cost on a small model), filtered to this
    model's modules. ``on_pre`` then gets ``None`` for the keyword arguments, which
    ``on_post`` gets as a fourth argument; a failing module is the top of the stack (what has
    not returned), with its positional inputs.
    """

    def __init__(
        self,
        model: nn.Module,
        on_pre: Callable[[nn.Module, Any, Any], None] | None = None,
        on_post: Callable[..., None] | None = None,
        *,
        global_hooks: bool = False,
    ) -> None:
        self.named = list(model.named_modules(remove_duplicate=False))
        self.names = {id(m): n for n, m in self.named}
        self.stack: list[tuple[str, nn.Module, Any]] = []
        self.failed: tuple[str, nn.Module, Any] | None = None
        self._on_pre, self._on_post = on_pre, on_post
        self._handles: list[Any] = []
        if global_hooks:
            self._handles.append(register_module_forward_pre_hook(self._global_pre))
            self._handles.append(register_module_forward_hook(self._global_post, with_kwargs=True))
            return
        for m in {id(m): m for _, m in self.named}.values():
            self._handles.append(m.register_forward_pre_hook(self._pre, with_kwargs=True))
            self._handles.append(m.register_forward_hook(self._post, always_call=True))

    def _global_pre(self, module: nn.Module, args: Any) -> None:
        name = self.names.get(id(module))
        if name is not None:
            self.stack.append((name, module, (args, {})))
            if self._on_pre is not None:
                self._on_pre(module, args, None)

    def _global_post(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if id(module) not in self.names:
            return
        # frames above it are of modules that raised inside it, the error caught by its code
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][1] is module:
                if self._on_post is not None:
                    self._on_post(module, args, output, kwargs)
                del self.stack[i:]
                return

    def _pre(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        self.stack.append((self.names.get(id(module), "?"), module, (args, kwargs)))
        if self._on_pre is not None:
            self._on_pre(module, args, kwargs)

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._on_post is not None and output is not None:
            self._on_post(module, args, output)
        if self.stack and self.stack[-1][1] is module:
            frame = self.stack.pop()
            if self.failed is None and output is None:
                # always_call runs this hook when forward raises too, innermost module first.
                self.failed = frame

    @property
    def current(self) -> str:
        return self.stack[-1][0] if self.stack else ""

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def run_forward(model: nn.Module, example_inputs: Inputs) -> Any:
    """Runs ``model`` once on the inputs; a failure raises ``ForwardError`` naming the module."""
    args, kwargs = split_inputs(example_inputs)
    stack = ModuleStack(model)
    try:
        return model(*args, **kwargs)
    except Exception as exc:
        raise forward_error(model, stack, exc) from exc
    finally:
        stack.close()


def forward_error(model: nn.Module, stack: ModuleStack, exc: Exception) -> ForwardError:
    """Builds the error for a forward that raised, naming the innermost failing module."""
    frame = stack.failed or (stack.stack[-1] if stack.stack else None)
    if frame is None or frame[1] is model:
        where = f"the model's own forward ({type(model).__name__})"
        fargs = None
        module = ""
    else:
        where = f"module '{frame[0]}' ({type(frame[1]).__name__})"
        fargs = frame[2]
        module = frame[0]
    got = ""
    if fargs is not None:
        a, k = fargs
        got = f" with input shapes {_shapes(tuple(a))}" + (f" and {_shapes(k)}" if k else "")
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ForwardError(
        f"the forward pass failed in {where}{got}: {type(exc).__name__}: {detail}. "
        "Check that example_inputs match what the model expects (shape, dtype, number of "
        "inputs), e.g. torch.randn(1, 3, 224, 224) for an ImageNet classifier.",
        module,
    )


def capture_inputs(model: nn.Module, example_inputs: Inputs, names: list[str]) -> dict[str, Any]:
    """The first positional input each named module receives in one eval-mode forward
    (detached; modules not called are missing from the result)."""
    captured: dict[str, Any] = {}
    handles = []
    for name in names:

        def hook(module: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            if name not in captured and args:
                captured[name] = args[0].detach() if isinstance(args[0], torch.Tensor) else args[0]

        handles.append(model.get_submodule(name).register_forward_pre_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            run_forward(model, example_inputs)
    finally:
        for h in handles:
            h.remove()
    return captured


def relative_error(reference: Any, approx: Any) -> float:
    """``||approx - reference|| / ||reference||`` over all tensors of two (nested) outputs."""
    ref = [t for t in tree_flatten(reference)[0] if isinstance(t, torch.Tensor)]
    new = [t for t in tree_flatten(approx)[0] if isinstance(t, torch.Tensor)]
    if not ref or len(ref) != len(new):
        return math.nan  # outputs we cannot compare: say so rather than report 0
    num = sum(float((b.double() - a.double()).square().sum()) for a, b in zip(ref, new))
    den = sum(float(a.double().square().sum()) for a in ref)
    return math.sqrt(num) / max(math.sqrt(den), 1e-30)


def _non_leaf_tensors(value: Any, found: dict[int, torch.Tensor], depth: int = 0) -> None:
    if isinstance(value, torch.Tensor):
        if value.grad_fn is not None:
            found[id(value)] = value
    elif depth < 4 and isinstance(value, dict):
        for v in value.values():
            _non_leaf_tensors(v, found, depth + 1)
    elif depth < 4 and isinstance(value, list | tuple):
        for v in value:
            _non_leaf_tensors(v, found, depth + 1)


def copy_model(model: nn.Module, memo: dict[int, Any] | None = None) -> nn.Module:
    """``copy.deepcopy`` that also copies tensors a forward cached with autograd history
    (timm's LeViT caches its attention biases), which plain deepcopy refuses."""
    memo = dict(memo or {})
    found: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for key, value in module.__dict__.items():
            if key not in ("_parameters", "_buffers", "_modules"):
                _non_leaf_tensors(value, found)
    for key, t in found.items():
        memo.setdefault(key, t.detach().clone())
    return copy.deepcopy(model, memo)


def calibration_batches(data: Any, what: str, limit: int | None = None) -> list[Inputs]:
    """``data`` as a list of model inputs, each given as ``example_inputs`` are (a tensor, a
    tuple of positional inputs or a dict of keyword inputs), at most ``limit`` of them.

    A single tensor or dict is one batch. Raises ``InputError`` naming ``what`` needs it.
    """
    if data is None:
        raise InputError(
            f"{what} needs calibration data: pass data=[batch, ...], each batch as you would "
            "pass example_inputs (e.g. a few (32, 3, 224, 224) tensors from your training "
            "set; for a DataLoader of (x, y) pairs: data=[x for x, _ in loader])."
        )
    if isinstance(data, torch.Tensor | Mapping):
        batches: list[Inputs] = [data]
    else:
        try:
            batches = []
            for batch in data:
                batches.append(batch)
                if limit is not None and len(batches) >= limit:
                    break
        except TypeError as exc:
            raise InputError(
                f"data for {what} must be a list of batches; got {type(data).__name__}"
            ) from exc
    if not batches:
        raise InputError(f"data for {what} holds no batches; give at least one.")
    for i, batch in enumerate(batches):
        try:
            split_inputs(batch)
        except InputError as exc:
            raise InputError(f"batch {i} of data for {what}: {exc}") from None
    return batches
