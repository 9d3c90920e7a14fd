"""Folding reparametrized weights into plain tensors (weight_norm, spectral_norm, ...).

Channel surgery slices plain parameters; a weight computed from others (``weight_g`` and
``weight_v`` of weight_norm, the ``original`` tensors of a parametrization) has no one place
to slice. ``fold_parametrizations_`` replaces each by its current value, the way inference
sees it, and records ``{"op": "fold", "tensors": [...]}`` so that ``.slim`` loading folds the
rebuilt model the same way before its weights load. slimtorch's own weight masks are not
folded here: ``slimtorch.make_permanent_`` is their one way out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import FormatError
from .log import record_edit
from .masks import WeightMask

__all__ = ["fold_parametrizations_", "foldable_tensors"]


def _hook_weight_norms(module: nn.Module) -> list[str]:
    from torch.nn.utils.weight_norm import WeightNorm

    return [h.name for h in module._forward_pre_hooks.values() if isinstance(h, WeightNorm)]


def foldable_tensors(model: nn.Module) -> list[str]:
    """``module.tensor`` names computed from other tensors (weight masks excepted)."""
    out = []
    for mname, m in model.named_modules():
        prefix = f"{mname}." if mname else ""
        out += [prefix + t for t in _hook_weight_norms(m)]
        if parametrize.is_parametrized(m):
            for t, plist in m.parametrizations.items():
                if not any(isinstance(p, WeightMask) for p in plist):
                    out.append(prefix + t)
    return out


def _fold(model: nn.Module, name: str) -> None:
    mname, _, tname = name.rpartition(".")
    try:
        m = model.get_submodule(mname)
    except AttributeError as exc:
        raise FormatError(f"the plan folds {name!r}, which the model does not have") from exc
    if tname in _hook_weight_norms(m):
        torch.nn.utils.remove_weight_norm(m, tname)
    elif parametrize.is_parametrized(m, tname):
        # torch removes the tensor's property from the module's class, which a deep copy
        # shares with its original: give this module a class of its own first.
        cls = type(m)
        m.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
        parametrize.remove_parametrizations(m, tname, leave_parametrized=True)
    else:
        raise FormatError(f"the plan folds {name!r}, which is not reparametrized in this model")


def fold_parametrizations_(model: nn.Module, *, record: bool = True) -> list[str]:
    """Replaces every reparametrized tensor by its current value, in place; records it.

    Returns the folded ``module.tensor`` names (empty when there were none).
    """
    names = foldable_tensors(model)
    with torch.no_grad():
        for name in names:
            _fold(model, name)
    if names and record:
        record_edit(model, {"op": "fold", "tensors": names}, owned=True)
    return names


def replay_fold_(model: nn.Module, edit: Mapping[str, Any]) -> None:
    names = edit.get("tensors")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise FormatError("a fold edit needs a list of tensor names")
    with torch.no_grad():
        for name in names:
            _fold(model, name)
