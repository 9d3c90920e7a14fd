"""Weight masks: attach and detach the parametrization that zeros weights.

The mask lives in ``torch.nn.utils.parametrize``: ``module.weight`` is computed as
``where(mask, original, 0)`` on every access, so optimizer steps cannot revive a zeroed weight
(its gradient is zero too) and the mask is a bool buffer that ``state_dict`` saves and loads.
Masks change values, not the architecture: ``.slim`` files store the masked weights (packed
as a bitmask plus non-zeros), so no edit has to be replayed for them.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import PruneError

__all__ = [
    "WeightMask",
    "attach_mask_",
    "mask_of",
    "masked_params",
    "remove_mask_",
    "remove_masks_",
]


class WeightMask(nn.Module):
    """Parametrization ``weight -> where(mask, weight, 0)`` with the mask as a bool buffer.

    Args:
        mask: bool tensor of the weight's shape; True keeps a weight.
    """

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool).clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, weight, 0)

    def extra_repr(self) -> str:
        kept = int(self.mask.sum())
        return f"kept={kept}/{self.mask.numel()}"


def mask_of(module: nn.Module, param: str = "weight") -> WeightMask | None:
    """The ``WeightMask`` parametrizing ``module.<param>``, or None."""
    if not parametrize.is_parametrized(module, param):
        return None
    return next((p for p in module.parametrizations[param] if isinstance(p, WeightMask)), None)


def masked_params(module: nn.Module) -> Iterator[str]:
    if parametrize.is_parametrized(module):
        for name in module.parametrizations:
            if mask_of(module, name) is not None:
                yield name


def attach_mask_(module: nn.Module, param: str, keep: torch.Tensor) -> None:
    """Zeros ``module.<param>`` where ``keep`` is False, composing with an existing mask.

    A module pruned again keeps a single ``WeightMask`` (``mask &= keep``), never a growing
    chain. Where the mask is the only parametrization, the stored original is zeroed too, so
    the zeros are real in ``state_dict`` and not only in the computed weight.
    """
    existing = mask_of(module, param)
    with torch.no_grad():
        if existing is not None:
            existing.mask &= keep.to(existing.mask.device)
        else:
            weight = getattr(module, param)
            parametrize.register_parametrization(module, param, WeightMask(keep.to(weight.device)))
            _copies_get_own_class(type(module))
            existing = mask_of(module, param)
        plist = module.parametrizations[param]
        if len(plist) == 1:
            plist.original.masked_fill_(~existing.mask, 0)


def remove_mask_(module: nn.Module, param: str) -> None:
    """Removes the mask, leaving its zeros in a plain parameter."""
    plist = module.parametrizations[param]
    others = [type(p).__name__ for p in plist if not isinstance(p, WeightMask)]
    if others:
        raise PruneError(
            f"{type(module).__name__}.{param} also has parametrizations {others}; removing "
            "the mask alone is not possible. Remove those first with "
            "torch.nn.utils.parametrize.remove_parametrizations(module, "
            f"{param!r}, leave_parametrized=True)."
        )
    _own_class_(module)
    parametrize.remove_parametrizations(module, param, leave_parametrized=True)


def _copies_get_own_class(cls: type) -> None:
    """Makes ``copy.deepcopy`` give each copy of a parametrized module its own class.

    ``parametrize`` injects one class per module, but its ``__deepcopy__`` reuses that class
    for the copy, and ``remove_parametrizations`` on the copy deletes the weight property from
    the shared class: the original breaks. Any code that copies a masked model and removes
    the parametrizations (``make_permanent_`` on a copy, a saver) is safe with this.
    """
    if cls.__dict__.get("_slimtorch_own_class"):
        return
    base_deepcopy = cls.__deepcopy__

    def __deepcopy__(self: nn.Module, memo: dict) -> nn.Module:
        replica = base_deepcopy(self, memo)
        _own_class_(replica)
        return replica

    cls.__deepcopy__ = __deepcopy__
    cls._slimtorch_own_class = True


def _own_class_(module: nn.Module) -> None:
    """Gives a parametrized module a class of its own before parametrizations are removed.

    ``copy.deepcopy`` keeps the class that ``parametrize`` injected, shared by the original
    and the copy, and ``remove_parametrizations`` deletes the weight property from that class:
    without this, making a copy permanent would break the original.
    """
    cls = type(module)
    skip = {"__dict__", "__weakref__"}
    attrs = {k: v for k, v in cls.__dict__.items() if k not in skip}
    module.__class__ = type(cls.__name__, cls.__bases__, attrs)


def remove_masks_(model: nn.Module) -> list[str]:
    """Removes every ``WeightMask`` of ``model``, leaving the zeros in plain weights.

    Returns:
        Names of the modules that had masks.
    """
    done = []
    for name, module in model.named_modules():
        for param in list(getattr(module, "parametrizations", {}) or {}):
            if mask_of(module, param) is not None:
                remove_mask_(module, param)
                done.append(name)
    return done
