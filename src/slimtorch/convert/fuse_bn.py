"""``fuse_bn``: fold an eval-mode BatchNorm into the conv or linear layer that feeds it.

Pairs are found on the trace (``slimtorch.trace``): a BatchNorm module whose input tensor is
produced by an op of a foldable module ``X`` (Conv1d/2d/3d, Linear, or a type registered with
``@foldable``) is folded into ``X`` when

- that tensor is used by nothing but the BatchNorm (not by another op, not a model output),
- ``X`` and the BatchNorm each run once per forward,
- the BatchNorm normalizes ``X``'s output channels (dim 1, ``num_features == Cout``) and
  keeps running statistics.

``X`` is replaced by the same layer type with the folded weights and a bias, the BatchNorm by
``nn.Identity``. The rewrite is exact for the model in eval mode (it uses running statistics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._options import Options
from .._registry import Registry
from ..errors import ConvertError
from ..graph.trace import ModelGraph, TensorRef
from ..nn._registry import build_module, module_config, module_type_name
from .factorize import fold_batchnorm
from .registry import Conversion, LayerRewrite, register_conversion

__all__ = ["FuseBN", "FuseBNOptions", "bn_pairs", "foldable"]

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

Builder = Callable[[nn.Module, torch.Tensor, torch.Tensor], nn.Module]
FOLDABLE: Registry[Builder] = Registry(
    "BN-folding builder",
    "class",
    inherit="same_forward",
    hint="Register one with @slimtorch.convert.foldable(MyLayer).",
)


def foldable(*types: type[nn.Module], override: bool = False) -> Callable[[Builder], Builder]:
    """Registers how to rebuild a layer type whose weight dim 0 is its output channels.

    The builder gets ``(module, folded_weight, folded_bias)`` and returns the new module.
    Subclasses that keep the registered type's ``forward`` use it too.
    """
    return FOLDABLE.register(*types, override=override)


@foldable(nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
def _rebuild_with_bias(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    new = build_module(module_type_name(module), module_config(module) | {"bias": True})
    new = new.to(weight.device, weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(bias)
    return new


@dataclass(frozen=True)
class FuseBNOptions(Options):
    """``fuse_bn`` has no options."""


def _runs(graph: ModelGraph, module: str, tensor_name: str) -> int:
    """How many ops of ``module`` read its parameter or buffer ``tensor_name``."""
    ops = graph.calls[module].ops if module in graph.calls else []
    return sum(
        1 for i in ops if any(graph.tensors[t].name == tensor_name for t in graph.nodes[i].inputs)
    )


def _pair_of(
    model: nn.Module, graph: ModelGraph, bn_name: str, consumers: dict[int, list[int]]
) -> tuple[str | None, str]:
    """The layer BatchNorm ``bn_name`` folds into, or None and why not."""
    modules = dict(model.named_modules())
    bn = modules[bn_name]
    if bn.running_mean is None or bn.running_var is None:
        return None, f"BatchNorm {bn_name!r} keeps no running statistics"
    if _runs(graph, bn_name, f"{bn_name}.running_mean") != 1:
        return None, f"BatchNorm {bn_name!r} runs more than once per forward"
    first = next(
        (
            graph.nodes[i]
            for i in graph.calls[bn_name].ops
            if graph.nodes[i].args and isinstance(graph.nodes[i].args[0], TensorRef)
        ),
        None,
    )
    if first is None:
        return None, f"no op of BatchNorm {bn_name!r} reads a tensor"
    src = graph.tensors[first.args[0].tid]
    if src.producer is None:
        return None, f"the input of BatchNorm {bn_name!r} is not produced by a layer"
    layer = graph.nodes[src.producer].module
    module = modules.get(layer)
    if FOLDABLE.lookup(type(module)) is None:
        kind = type(module).__name__ if module is not None else "the model's own forward"
        return None, f"the input of {bn_name!r} comes from {layer!r} ({kind}), not a conv/linear"
    users = {graph.nodes[i].module for i in consumers.get(src.tid, [])}
    if users != {bn_name} or src.tid in graph.outputs:
        others = sorted(users - {bn_name}) + (
            ["(model output)"] if src.tid in graph.outputs else []
        )
        return None, f"the output of {layer!r} is also used by {others}; folding would change it"
    if _runs(graph, layer, f"{layer}.weight") != 1:
        return None, f"layer {layer!r} runs more than once per forward"
    if (
        len(src.shape) < 2
        or src.shape[1] != bn.num_features
        or module.weight.shape[0] != bn.num_features
    ):
        return None, f"{bn_name!r} does not normalize the output channels of {layer!r}"
    return layer, ""


def bn_pairs(model: nn.Module, graph: ModelGraph) -> tuple[dict[str, str], dict[str, str]]:
    """Foldable ``{layer: batchnorm}`` pairs of a traced model, and ``{batchnorm: why not}``.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        >>> bn_pairs(m, slimtorch.trace(m, torch.randn(1, 3, 8, 8)))[0]
        {'0': '1'}
    """
    consumers = graph.consumers()
    pairs: dict[str, str] = {}
    problems: dict[str, str] = {}
    for name, module in model.named_modules():
        if isinstance(module, NORMS) and name in graph.calls:
            layer, why = _pair_of(model, graph, name, consumers)
            if layer is None:
                problems[name] = why
            else:
                pairs[layer] = name
    return pairs, problems


@register_conversion
class FuseBN(Conversion):
    """Conv/Linear followed by BatchNorm -> one Conv/Linear (and ``nn.Identity``)."""

    kind = "fuse_bn"
    Options = FuseBNOptions
    needs_inputs = True

    def __init__(self) -> None:
        self._cache: tuple[int, dict[str, str], dict[str, str]] | None = None

    def _pairs(self, model: nn.Module, graph: ModelGraph | None) -> tuple[dict, dict]:
        assert graph is not None, "fuse_bn needs a trace"
        if self._cache is None or self._cache[0] != id(graph):
            self._cache = (id(graph), *bn_pairs(model, graph))
        return self._cache[1], self._cache[2]

    def targets(self, model: nn.Module, graph: ModelGraph | None) -> Iterator[str]:
        pairs, problems = self._pairs(model, graph)
        for name, _ in model.named_modules():
            if name in pairs or name in problems:
                yield name

    def rewrite(
        self,
        model: nn.Module,
        name: str,
        options: Any,
        graph: ModelGraph | None,
        x: torch.Tensor | None,
    ) -> LayerRewrite:
        pairs, problems = self._pairs(model, graph)
        if name in problems:
            raise ConvertError(f"cannot fold {name!r}: {problems[name]}.")
        layer = {bn: lay for lay, bn in pairs.items()}.get(name, name)
        if layer not in pairs:
            raise ConvertError(
                f"layer {name!r} is not directly followed by a BatchNorm that only it feeds; "
                f"foldable layers here: {sorted(pairs) or 'none'}."
            )
        module, bn = model.get_submodule(layer), model.get_submodule(pairs[layer])
        weight, bias = fold_batchnorm(
            module.weight.detach(),
            None if module.bias is None else module.bias.detach(),
            bn.running_mean,
            bn.running_var,
            None if bn.weight is None else bn.weight.detach(),
            None if bn.bias is None else bn.bias.detach(),
            bn.eps,
        )
        new = FOLDABLE.get(type(module))(module, weight, bias)
        replacements = {layer: new, pairs[layer]: nn.Identity()}
        before = nn.Sequential(module, bn)
        return LayerRewrite(layer, before, new, replacements, note=f"+ {pairs[layer]}")
