"""What slimtorch remembers on a model: its spec, its original shapes, and its edit log.

A ``.slim`` plan is the original model's spec plus the edit log. Each edit is plain JSON
data with an ``"op"`` (``"prune"``, ``"replace"``, ``"remove"``, ``"sparsify"``,
``"prune_weights"``); ``slimtorch.edit.replay`` knows how to apply each one again.

The records live in the model's ``__dict__`` (not as submodules or buffers), so
``copy.deepcopy`` keeps them and ``state_dict`` ignores them. This is the only module that
spells their attribute names.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

__all__ = ["META_KEYS", "carry_metadata", "edits_of", "get_meta", "record_edit", "set_meta"]

_ATTRS = {
    "spec": "_slimtorch_spec",
    "origin_shapes": "_slimtorch_origin_shapes",
    "edits": "_slimtorch_edits",
}
META_KEYS = tuple(_ATTRS)


def get_meta(model: nn.Module, key: str, default: Any = None) -> Any:
    """The record ``key`` (one of ``META_KEYS``) kept on ``model``."""
    return model.__dict__.get(_ATTRS[key], default)


def set_meta(model: nn.Module, key: str, value: Any) -> None:
    """Keeps ``value`` as record ``key`` on ``model`` (never as a submodule or buffer)."""
    object.__setattr__(model, _ATTRS[key], value)


def carry_metadata(src: nn.Module, dst: nn.Module) -> nn.Module:
    """Copies every record of ``src`` onto ``dst`` (e.g. onto a fresh copy of the input)."""
    for key, attr in _ATTRS.items():
        if attr in src.__dict__:
            set_meta(dst, key, copy.deepcopy(src.__dict__[attr]))
    return dst


def edits_of(model: nn.Module) -> list[dict[str, Any]]:
    """The edits recorded on ``model`` so far (a copy)."""
    return copy.deepcopy(get_meta(model, "edits", []))


def record_edit(model: nn.Module, edit: dict[str, Any], *, owned: bool = False) -> None:
    """Appends a JSON-serializable edit to the model's log (copied unless ``owned``).

    The list is replaced, not appended to in place, so copies made earlier keep their own.
    """
    edits = list(get_meta(model, "edits", []))
    edits.append(edit if owned else copy.deepcopy(edit))
    set_meta(model, "edits", edits)
