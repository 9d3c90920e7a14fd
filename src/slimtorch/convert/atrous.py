"""The "à trous" trick: remove a stride and dilate what follows, so receptive fields stay.

Removing stride ``f`` from a layer makes every later feature map ``f`` times denser. Scaling
the dilation and padding of every later windowed op (convs, max-pools) by ``f`` restores each
one's receptive field in input pixels, and the outputs at positions that are multiples of
``f`` equal the original outputs exactly (the "retained positions"): DeepLab's dense feature
extraction. Later strides stay as they are; the density ratio stays ``f``.

Ops that mix all positions (global pooling, flatten + linear) see the denser map, so a
classifier's logits change; equality holds for the feature maps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .._forward import Inputs, check_model, eval_mode, run_forward
from .._registry import Registry
from .._validate import check_int
from ..edit.modules import replace_module_
from ..errors import ConfigError, ConvertError, ForwardError
from ..graph.ops import WINDOWED
from ..graph.trace import trace
from ..nn._registry import build_module, module_config
from .api import _check_layers

__all__ = ["dilate_to_restore", "dilator"]

aten = torch.ops.aten


Dilator = Callable[[nn.Module, int, int], nn.Module]
DILATORS: Registry[Dilator] = Registry(
    "dilator",
    "class",
    inherit="same_forward",
    hint="Register one with @slimtorch.convert.dilator(MyLayer).",
)


def dilator(*types: type[nn.Module], override: bool = False) -> Callable[[Dilator], Dilator]:
    """Registers ``fn(module, stride_divisor, dilation_factor) -> new module`` for layer types."""
    return DILATORS.register(*types, override=override)


@dilator(nn.Conv2d)
def _conv(conv: nn.Module, divisor: int, factor: int) -> nn.Module:
    cfg = module_config(conv)
    if factor > 1 and conv.padding_mode != "zeros" and any(conv.padding):
        raise ConvertError(
            f"padding_mode={conv.padding_mode!r} pads a denser map with other values; only "
            "zero padding stays exact under dilation."
        )
    cfg["stride"] = [s // divisor for s in conv.stride]
    cfg["dilation"] = [d * factor for d in conv.dilation]
    if not isinstance(conv.padding, str):
        cfg["padding"] = [p * factor for p in conv.padding]
    new = build_module("Conv2d", cfg).to(conv.weight.device, conv.weight.dtype)
    new.load_state_dict(conv.state_dict())
    return new


@dilator(nn.MaxPool2d)
def _maxpool(pool: nn.Module, divisor: int, factor: int) -> nn.Module:
    def two(v: int | tuple[int, ...]) -> tuple[int, int]:
        return (v, v) if isinstance(v, int) else (v[0], v[1])

    return nn.MaxPool2d(
        two(pool.kernel_size),
        stride=tuple(s // divisor for s in two(pool.stride)),
        padding=tuple(p * factor for p in two(pool.padding)),
        dilation=tuple(d * factor for d in two(pool.dilation)),
        return_indices=pool.return_indices,
        ceil_mode=pool.ceil_mode,
    )


def _stride(module: nn.Module) -> tuple[int, int]:
    s = module.stride
    return (s, s) if isinstance(s, int) else (s[0], s[1])


def dilate_to_restore(
    model: nn.Module,
    layers: str | Sequence[str],
    example_inputs: Inputs,
    factor: int | None = None,
) -> nn.Module:
    """Divides the stride of ``layers`` by ``factor`` and dilates every later windowed op.

    Every conv or max-pool downstream of the named layers (found on the trace) gets its
    dilation and padding multiplied by ``factor``. Name every layer whose stride must go
    together, e.g. a ResNet block's strided conv and its downsample shortcut.

    Args:
        model: the model; it is not modified.
        layers: strided ``nn.Conv2d`` / ``nn.MaxPool2d`` module names.
        example_inputs: inputs to trace the model with.
        factor: stride divisor; default the layers' stride (removing it entirely).

    Returns:
        A new model whose outputs at spatial positions ``::factor`` equal the original
        outputs (for feature maps); its edits are recorded for ``.slim``.

    Example:
        >>> import torchvision
        >>> body = torch.nn.Sequential(*list(torchvision.models.resnet18().children())[:-2])
        >>> dense = dilate_to_restore(body, ["7.0.conv1", "7.0.downsample.0"],
        ...                           torch.randn(1, 3, 64, 64))
        >>> dense(torch.randn(1, 3, 64, 64)).shape[-1]  # 4 instead of 2
        4
    """
    check_model(model)
    names = _check_layers(model, [layers] if isinstance(layers, str) else layers) or []
    if not names:
        raise ConfigError("layers is empty; name the strided layer(s), e.g. ['layer4.0.conv1'].")
    modules = dict(model.named_modules())
    for name in names:
        if DILATORS.lookup(type(modules[name])) is None or _stride(modules[name]) == (1, 1):
            raise ConvertError(
                f"layer {name!r} ({type(modules[name]).__name__}) is not a strided conv or "
                "max-pool; name the layer whose stride should go."
            )
    strides = {_stride(modules[n]) for n in names}
    if factor is None:
        if len(strides) != 1 or len(set(next(iter(strides)))) != 1:
            raise ConfigError(
                f"layers {names} have strides {sorted(strides)}; pass factor= explicitly."
            )
        factor = next(iter(strides))[0]
    check_int("factor", factor, low=2)
    for name in names:
        if any(s % factor for s in _stride(modules[name])):
            raise ConfigError(
                f"layer {name!r} has stride {_stride(modules[name])}, not divisible by "
                f"factor={factor}; use a factor that divides it."
            )
    work = copy.deepcopy(model)
    graph = trace(work, example_inputs)
    dense = {t for n in names for i in graph.calls[n].ops for t in graph.nodes[i].outputs}
    affected: list[str] = []
    for node in graph.nodes:
        if node.module in names or not any(t in dense for t in node.inputs):
            continue
        dense.update(node.outputs)
        if node.op.overloadpacket in WINDOWED and node.module not in affected:
            affected.append(node.module)
    new: dict[str, nn.Module] = {}
    for name in names:
        new[name] = DILATORS.get(type(modules[name]))(work.get_submodule(name), factor, 1)
    for name in affected:
        module = work.get_submodule(name) if name else work
        build = DILATORS.lookup(type(module))
        if build is None or name == "":
            raise ConvertError(
                f"{name or 'the model forward'!r} ({type(module).__name__}) runs a windowed op "
                f"after the removed stride and cannot be dilated; register it with "
                "@slimtorch.convert.dilator or choose an earlier layer."
            )
        try:
            new[name] = build(module, 1, factor)
        except ConvertError as exc:
            raise ConvertError(f"cannot dilate {name!r}: {exc}") from exc
    for name, module in new.items():
        replace_module_(work, name, module)
    try:
        with eval_mode(work), torch.no_grad():
            run_forward(work, example_inputs)
    except ForwardError as exc:
        raise ConvertError(
            f"after dividing the stride of {names} by {factor} the model no longer runs: {exc} "
            "Name parallel strided layers too (e.g. a residual's downsample conv)."
        ) from exc
    return work
