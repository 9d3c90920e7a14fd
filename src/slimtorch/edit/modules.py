"""Module swaps: replace a submodule, or remove a block from the model.

A swap is recorded as ``{"op": "replace", "module": name, "type": ..., "config": {...}}``,
which loading rebuilds with ``slimtorch.nn.build_module`` (registered types only); a removal
as ``{"op": "remove", "module": name}``, which loading repeats.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError
from ..nn._registry import module_config, module_type_name
from .log import record_edit

__all__ = ["delete_block_", "remove_module_", "replace_module_"]


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


def delete_block_(
    model: nn.Module, name: str, *, record: bool = True, why: dict[str, Any] | None = None
) -> None:
    """Takes the block at ``name`` out of the model, in place, and records the edit.

    A child of an ``nn.Sequential`` is deleted (the others keep their names); a child of an
    ``nn.ModuleList`` is deleted and the later ones renumbered, as ``del layers[i]`` does,
    with a Hugging Face ``config.num_hidden_layers`` (and per-layer lists such as
    ``layer_types``) and the layers' ``layer_idx`` kept in step; any other child becomes
    ``nn.Identity``. The block's input must have the shape its output had; ``prune_layers``
    checks that before calling this.
    """
    if not name:
        raise ConfigError("the root module cannot be removed")
    parent, child = _parent(model, name)
    if isinstance(parent, nn.ModuleList):
        count = len(parent)
        index = list(parent._modules).index(child)
        del parent[index]
        _follow_layer_list(model, parent, count, index)
    elif isinstance(parent, nn.Sequential):
        del parent._modules[child]
    else:
        parent._modules[child] = nn.Identity()
    if record:
        edit: dict[str, Any] = {"op": "remove", "module": name}
        if why:
            edit["why"] = why
        record_edit(model, edit, owned=True)


def _follow_layer_list(model: nn.Module, layers: nn.ModuleList, count: int, index: int) -> None:
    """After ``del layers[index]``: the config and layer indices of a Hugging Face model."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "num_hidden_layers", None) == count:
        config.num_hidden_layers = count - 1
        for key in ("layer_types", "block_types"):
            values = getattr(config, key, None)
            if isinstance(values, list) and len(values) == count:
                setattr(config, key, values[:index] + values[index + 1 :])
    for i, layer in enumerate(layers):
        for m in layer.modules():
            if isinstance(getattr(m, "layer_idx", None), int) and m.layer_idx == i + (i >= index):
                m.layer_idx = i
