"""Which layers hold prunable weights: a registry by module type (subclasses included).

The masks themselves are attached and removed by ``slimtorch.edit.masks``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..._registry import Registry
from ...edit.masks import masked_params
from ...errors import PruneError

__all__ = ["PRUNABLE", "prunable_layers", "register_prunable"]

# Module type -> name of the weight whose layout is [out, in, *kernel].
PRUNABLE: Registry[str] = Registry(
    "prunable weight", "class", hint="Register it with slimtorch.register_prunable(MyLayer)."
)
for _cls in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d):
    PRUNABLE.add(_cls, "weight")


def register_prunable(
    cls: type[nn.Module], param: str = "weight", *, override: bool = False
) -> type[nn.Module]:
    """Makes ``prune_weights_`` consider layers of type ``cls`` (and subclasses).

    The parameter must be laid out ``[out, in, *kernel]``: rows are dim 0, columns and N:M
    blocks run along dim 1. Returns ``cls``, so it also works as a class decorator.

    Example:
        >>> register_prunable(torch.nn.Bilinear)  # weight [out, in1, in2]
        <class 'torch.nn.modules.linear.Bilinear'>
    """
    PRUNABLE.add(cls, param, override=override)
    return cls


def prunable_layers(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Layers whose weight ``prune_weights_`` may zero: ``{module name: (module, param)}``.

    Registered types (Conv1d/2d/3d, Linear by default; see ``register_prunable``) and any
    module already carrying a ``WeightMask``. Biases and normalization layers are not listed.

    Example:
        >>> list(prunable_layers(torch.nn.Sequential(torch.nn.Linear(2, 2))))
        ['0']
    """
    out: dict[str, tuple[nn.Module, str]] = {}
    for name, module in model.named_modules():
        param = next(masked_params(module), None) or PRUNABLE.lookup(type(module))
        if param is not None and isinstance(getattr(module, param, None), torch.Tensor):
            out[name] = (module, param)
    return out


def check_unshared(layers: dict[str, tuple[nn.Module, str]]) -> None:
    """Raises PruneError when two layers share one weight tensor (tied weights)."""
    seen: dict[int, str] = {}
    for name, (module, param) in layers.items():
        tensor = (
            module.parametrizations[param].original
            if parametrize.is_parametrized(module, param)
            else getattr(module, param)
        )
        if id(tensor) in seen:
            raise PruneError(
                f"layers {seen[id(tensor)]!r} and {name!r} share one weight tensor (tied "
                f"weights); add one of them to ignore=[...] so it is masked once."
            )
        seen[id(tensor)] = name
