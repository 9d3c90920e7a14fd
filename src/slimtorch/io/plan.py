"""The structural edits a model went through, recorded on the model for ``.slim`` files.

A ``.slim`` plan is the original model's spec plus this list. Each edit is plain JSON data:

- ``{"op": "replace", "module": "features.3", "type": "DepthwiseSeparableConv2d",
  "config": {...}}``: the submodule was swapped for ``build_module(type, config)``.
- ``{"op": "prune", ...}``: channels were removed (written by the channel pruner's surgery).

Copies made with ``copy.deepcopy`` keep the list; functions that return a new model append to
the copy's list only.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

__all__ = ["edits_of", "record_edit", "replace_module"]

_EDITS_ATTR = "_slimtorch_edits"


def edits_of(model: nn.Module) -> list[dict[str, Any]]:
    """The edits recorded on ``model`` so far (a copy)."""
    return copy.deepcopy(getattr(model, _EDITS_ATTR, []))


def record_edit(model: nn.Module, edit: dict[str, Any], *, owned: bool = False) -> None:
    """Appends a JSON-serializable edit to the model's record (copied unless ``owned``)."""
    edits = list(getattr(model, _EDITS_ATTR, []))
    edits.append(edit if owned else copy.deepcopy(edit))
    object.__setattr__(model, _EDITS_ATTR, edits)


def replace_module(model: nn.Module, name: str, new: nn.Module, *, record: bool = True) -> None:
    """Swaps the submodule at dotted ``name`` for ``new`` and records the edit."""
    from ..nn._registry import module_config, module_type_name

    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
    if record:
        edit = {
            "op": "replace",
            "module": name,
            "type": module_type_name(new),
            "config": module_config(new),
        }
        record_edit(model, edit)
