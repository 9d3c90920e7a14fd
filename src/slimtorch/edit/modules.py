"""Module swaps: replace a submodule, or remove a block by replacing it with ``Identity``.

Each swap is recorded as ``{"op": "replace", "module": name, "type": ..., "config": {...}}``,
which loading rebuilds with ``slimtorch.nn.build_module`` (registered types only).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError
from ..nn._registry import module_config, module_type_name
from .log import record_edit

__all__ = ["remove_module_", "replace_module_"]


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
    except AttributeError as exc:
        raise ConfigError(f"the model has no module {parent_name!r} to hold {name!r}") from exc
    if child not in parent._modules:
        raise ConfigError(f"the model has no module {name!r}; use names from model.named_modules()")
    return parent, child


def replace_module_(
    model: nn.Module,
    name: str,
    new: nn.Module,
    *,
    record: bool = True,
    why: dict[str, Any] | None = None,
) -> None:
    """Swaps the submodule at dotted ``name`` for ``new``, in place, and records the edit.

    Args:
        model: the model to change.
        name: a name from ``model.named_modules()`` (not the root: return ``new`` instead).
        new: a module of a type ``.slim`` can rebuild (torch's common layers, slimtorch's
            blocks, or a type registered with ``slimtorch.nn.register_module``).
        record: False only while replaying a log that already holds the edit.
        why: optional JSON data kept with the edit (the conversion and its options).
    """
    if not name:
        raise ConfigError("the root module cannot be replaced in place; use the new module")
    parent, child = _parent(model, name)
    edit = None
    if record:
        edit = {"op": "replace", "module": name, "type": module_type_name(new)}
        edit["config"] = module_config(new)
        if why:
            edit["why"] = why
    parent._modules[child] = new
    if edit is not None:
        record_edit(model, edit, owned=True)


def remove_module_(model: nn.Module, name: str, *, why: dict[str, Any] | None = None) -> None:
    """Removes the block at ``name`` by replacing it with ``nn.Identity`` (recorded).

    The block's input must have the shape its output had (a residual branch, a same-shape
    layer of a ``Sequential``); ``prune_layers`` checks that before calling this.
    """
    replace_module_(model, name, nn.Identity(), why=why)
