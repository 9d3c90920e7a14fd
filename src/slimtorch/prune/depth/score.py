"""Scoring blocks on calibration data: what each one changes, and what skipping it costs.

Both work with forward hooks on the unmodified model: one records each block's first input
and first output; the other makes a block return its input (or a fitted projection of it)
instead of its output, so any candidate removal is evaluated without copying the model.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..._forward import Inputs, eval_mode, relative_error, split_inputs
from ...graph.blocks import Block

__all__ = ["angular_scores", "influence_scores", "loss_scores", "skipping"]

Stand = Callable[[torch.Tensor], torch.Tensor]  # what replaces a skipped block's output


def _first(value: Any) -> torch.Tensor | None:
    return next((t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)), None)


def _with_first(value: Any, new: torch.Tensor) -> Any:
    """``value`` with its first tensor replaced by ``new`` (a tuple or dict stays one)."""
    if isinstance(value, torch.Tensor):
        return new
    leaves, spec = tree_flatten(value)
    i = next(j for j, t in enumerate(leaves) if isinstance(t, torch.Tensor))
    leaves[i] = new
    return tree_unflatten(leaves, spec)


def _run(model: nn.Module, batch: Inputs) -> Any:
    args, kwargs = split_inputs(batch)
    return model(*args, **kwargs)


@contextlib.contextmanager
def _hooks(handles: list[Any]) -> Iterator[None]:
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def skipping(
    model: nn.Module, blocks: Sequence[Block], stand: dict[str, Stand] | None = None
) -> Iterator[None]:
    """Within the context, each block returns its input (or ``stand[name](input)``)."""
    modules = dict(model.named_modules())
    stand = stand or {}
    handles: list[Any] = []
    for b in blocks:
        stash: dict[str, torch.Tensor] = {}
        fn = stand.get(b.name)

        def pre(m: nn.Module, args: Any, kwargs: Any, stash: dict = stash) -> None:
            stash["x"] = _first((args, kwargs))

        def post(m: nn.Module, args: Any, out: Any, stash: dict = stash, fn: Any = fn) -> Any:
            x = stash.pop("x")
            return _with_first(out, x if fn is None else fn(x))

        handles.append(modules[b.members[0]].register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(modules[b.members[-1]].register_forward_hook(post))
    with _hooks(handles):
        yield


def _feature_dim(block: Block, x: torch.Tensor, convs: set[str]) -> int:
    """Channels of a conv feature map (dim 1), else the last dim (tokens x features)."""
    return 1 if block.name in convs and x.dim() > 2 else -1


def _pairs(
    model: nn.Module, batches: list[Inputs], firsts: dict[str, Block], lasts: dict[str, Block]
) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """Per batch: the first input of the blocks in ``firsts`` and the first output of those
    in ``lasts`` (both by block name)."""
    modules = dict(model.named_modules())
    ins: dict[str, torch.Tensor] = {}
    outs: dict[str, torch.Tensor] = {}
    handles = []
    for b in firsts.values():

        def pre(m: nn.Module, args: Any, kwargs: Any, name: str = b.name) -> None:
            ins[name] = _first((args, kwargs))

        handles.append(modules[b.members[0]].register_forward_pre_hook(pre, with_kwargs=True))
    for b in lasts.values():

        def post(m: nn.Module, args: Any, out: Any, name: str = b.name) -> None:
            outs[name] = _first(out)

        handles.append(modules[b.members[-1]].register_forward_hook(post))
    with _hooks(handles), eval_mode(model), torch.no_grad():
        for batch in batches:
            ins.clear()
            outs.clear()
            _run(model, batch)
            yield ins, outs


def _cos(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    return F.cosine_similarity(a.double(), b.double(), dim=dim, eps=1e-12)


def influence_scores(
    model: nn.Module,
    batches: list[Inputs],
    blocks: Sequence[Block],
    convs: set[str],
    stand: dict[str, Stand],
) -> dict[str, float]:
    """ShortGPT's block influence, 1 - cos(what stands in for the block, its output), averaged
    over positions (tokens, pixels) and batches: a block that changes little scores low."""
    by = {b.name: b for b in blocks}
    total = dict.fromkeys(by, 0.0)
    for ins, outs in _pairs(model, batches, by, by):
        for name, b in by.items():
            x, y = ins[name], outs[name]
            x = stand[name](x) if name in stand else x
            total[name] += float((1 - _cos(x, y, _feature_dim(b, y, convs))).mean())
    return {k: v / len(batches) for k, v in total.items()}


def angular_scores(
    model: nn.Module, batches: list[Inputs], chains: list[list[Block]], convs: set[str]
) -> list[float]:
    """Angular distance arccos(cos(x_in, x_out)) / pi between the input of each chain's first
    block and the output of its last (Gromov et al.): the chain whose span changes the
    representation least is removed."""
    firsts = {c[0].name: c[0] for c in chains}
    lasts = {c[-1].name: c[-1] for c in chains}
    total = [0.0] * len(chains)
    for ins, outs in _pairs(model, batches, firsts, lasts):
        for i, chain in enumerate(chains):
            x, y = ins[chain[0].name], outs[chain[-1].name]
            c = _cos(x, y, _feature_dim(chain[0], y, convs)).clamp(-1, 1)
            total[i] += float(torch.arccos(c).mean()) / math.pi
    return [t / len(batches) for t in total]


def loss_scores(
    model: nn.Module, batches: list[Inputs], blocks: Sequence[Block], stand: dict[str, Stand]
) -> dict[str, float]:
    """How far the model's outputs move (relative error over all output tensors) with each
    block skipped alone, averaged over the batches."""
    with eval_mode(model), torch.no_grad():
        refs = [_run(model, b) for b in batches]
        out = {}
        for block in blocks:
            with skipping(model, [block], stand):
                errs = [relative_error(r, _run(model, b)) for r, b in zip(refs, batches)]
            out[block.name] = sum(errs) / len(errs)
    return out
