"""Shape-only tracing on the ``meta`` device: parameters swapped for meta tensors, and ops
whose output shape is known answered without their (Python) meta kernels."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["meta_shortcut", "meta_tensors", "swapped"]


# Pointwise ops whose result is not the dtype of their inputs: no shape shortcut for them.
_NOT_SAME_DTYPE = frozenset(
    [
        "eq",
        "ne",
        "lt",
        "gt",
        "le",
        "ge",
        "isnan",
        "isinf",
        "isfinite",
        "isposinf",
        "isneginf",
        "signbit",
        "logical_and",
        "logical_or",
        "logical_xor",
        "logical_not",
        "bitwise_and",
        "bitwise_or",
        "bitwise_xor",
        "bitwise_not",
    ]
)
_BATCH_NORMS = frozenset(
    {
        torch.ops.aten.native_batch_norm.default,
        torch.ops.aten._native_batch_norm_legit_no_training.default,
    }
)


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    # empty_like on meta runs a Python decomposition; empty_strided does not
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")


_CONVOLUTION = torch.ops.aten.convolution.default


def _conv_shape(
    x: Any, w: Any, bias: Any, stride: Any, padding: Any, dilation: Any, transposed: Any, *rest: Any
) -> torch.Tensor | None:
    """A contiguous batched, non-transposed convolution's output, from the shape formula."""
    groups = rest[-1] if rest else 1
    if (
        transposed
        or x.dim() != w.dim()
        or x.shape[1] != w.shape[1] * groups
        or not (x.is_contiguous() and w.is_contiguous())
    ):
        return None
    spatial = [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(x.shape[2:], w.shape[2:], stride, padding, dilation)
    ]
    if len(spatial) != x.dim() - 2 or min(spatial, default=1) < 1:
        return None  # let the meta kernel raise its own error
    return torch.empty((x.shape[0], w.shape[0], *spatial), dtype=x.dtype, device="meta")


def meta_shortcut(func: Any, args: tuple, kwargs: dict) -> Any:
    """The result of ``func`` on meta tensors without running its meta kernel, or None.

    Meta kernels of batch norm and of pointwise ops are Python decompositions that cost about
    as much as the real arithmetic of a small model. Their outputs are the input's shape and
    dtype, which is all a shape-only trace needs: batch norm, and pointwise ops whose tensor
    arguments all share one floating shape and dtype (in-place ones return their input).
    """
    kind = _KINDS.get(func)
    if kind is None:
        kind = _KINDS[func] = _shortcut_kind(func)
    if kind == "":
        return None
    if kind == "batch_norm":
        x = args[0]
        stats = (torch.empty((x.shape[1],), dtype=x.dtype, device="meta") for _ in range(2))
        return _meta_like(x), *stats
    if kind == "convolution":
        return _conv_shape(*args)
    if kwargs and set(kwargs) - {"alpha"}:
        return None
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    first = tensors[0] if tensors else None
    if (
        first is None
        or not first.is_floating_point()
        or any(t.shape != first.shape or t.dtype != first.dtype for t in tensors[1:])
        or any(isinstance(a, list | tuple) for a in args)
    ):
        return None
    if kind == "inplace":
        return args[0] if args[0] is first else None
    return _meta_like(first)


_KINDS: dict[Any, str] = {}  # op overload -> its shortcut ("" for none), decided once


def _shortcut_kind(func: Any) -> str:
    if func in _BATCH_NORMS:
        return "batch_norm"
    if func is _CONVOLUTION:
        return "convolution"
    tags = func.tags
    if (
        torch.Tag.pointwise not in tags
        or func.__name__.split(".")[0].rstrip("_") in _NOT_SAME_DTYPE
    ):
        return ""
    return "inplace" if torch.Tag.inplace in tags else "pointwise"


def meta_tensors(
    named: list[tuple[str, nn.Module]],
) -> tuple[dict[int, torch.Tensor], dict[int, tuple[str, str]]]:
    """A meta tensor for every parameter and buffer (tied ones stay one object), by the id
    of the real one, and the qualified name and kind of each meta tensor (the first name
    of a tied one)."""
    meta_of: dict[int, torch.Tensor] = {}
    names: dict[int, tuple[str, str]] = {}
    for prefix, module in named:
        for kind, store in (("param", module._parameters), ("buffer", module._buffers)):
            for key, t in store.items():
                if t is None:
                    continue
                meta_t = meta_of.get(id(t))
                if meta_t is None:
                    meta_t = _meta_like(t)
                    if isinstance(t, nn.Parameter):
                        meta_t = nn.Parameter(meta_t, t.requires_grad)
                    meta_of[id(t)] = meta_t
                    names[id(meta_t)] = (f"{prefix}.{key}" if prefix else key, kind)
    return meta_of, names


@contextlib.contextmanager
def swapped(modules: Iterable[nn.Module], meta_of: dict[int, torch.Tensor]) -> Iterator[None]:
    """Every parameter and buffer slot replaced by its meta tensor, restored afterwards.

    Slot by slot over each module object once: ``torch.func.functional_call`` swaps by name,
    and a module registered under two names (timm's CoaT shares its ConvPosEnc) came back
    holding meta tensors."""
    saved = []
    try:
        for module in modules:
            for store in (module._parameters, module._buffers):
                for key, t in store.items():
                    if t is not None and id(t) in meta_of:
                        saved.append((store, key, t))
                        store[key] = meta_of[id(t)]
        yield
    finally:
        for store, key, t in reversed(saved):
            store[key] = t
