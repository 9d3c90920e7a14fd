"""Replaying an edit log: how a ``.slim`` file turns a freshly built model into the saved one.

Each edit op has one replay function in ``EDIT_OPS``, with the phase it runs in:
``"structure"`` edits run before the weights are loaded (they change shapes and modules),
``"after_weights"`` edits after (sparse layers are built from the loaded dense weights), and
``"record"`` entries only note what produced the values (weight masks) and change nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from .._registry import Registry
from ..errors import FormatError
from ..nn._registry import build_module
from .channels import apply_prune_edit_
from .fold import replay_fold_
from .modules import replace_module_
from .sparse import sparsify_module_

__all__ = ["EDIT_OPS", "EditOp", "replay_"]

Phase = Literal["structure", "after_weights", "record"]


@dataclass(frozen=True)
class EditOp:
    phase: Phase
    apply: Callable[[nn.Module, Mapping[str, Any]], None]


EDIT_OPS: Registry[EditOp] = Registry("edit op", "name")


def _module_name(edit: Mapping[str, Any]) -> str:
    name = edit.get("module")
    if not isinstance(name, str) or not name:
        raise FormatError(f"edit {edit.get('op')!r} names no module")
    return name


def _replace(model: nn.Module, edit: Mapping[str, Any]) -> None:
    config = edit.get("config")
    if not isinstance(config, dict) or not isinstance(edit.get("type"), str):
        raise FormatError("a replace edit needs a module type and a config")
    new = build_module(edit["type"], dict(config))
    try:
        replace_module_(model, _module_name(edit), new, record=False)
    except (AttributeError, ValueError) as exc:
        raise FormatError(f"cannot replace {edit.get('module')!r}: {exc}") from exc


def _sparsify(model: nn.Module, edit: Mapping[str, Any]) -> None:
    sparsify_module_(model, _module_name(edit), record=False)


EDIT_OPS.add("fold", EditOp("structure", replay_fold_))
EDIT_OPS.add("prune", EditOp("structure", apply_prune_edit_))
EDIT_OPS.add("replace", EditOp("structure", _replace))
EDIT_OPS.add("sparsify", EditOp("after_weights", _sparsify))
EDIT_OPS.add("prune_weights", EditOp("record", lambda model, edit: None))


def replay_(model: nn.Module, edits: list[Any], phase: Phase) -> None:
    """Applies the edits of one phase in order; once every phase ran, the loader sets the
    model's log to ``edits`` so that the reloaded model saves again as it was."""
    for edit in edits:
        op = edit.get("op") if isinstance(edit, dict) else None
        entry = EDIT_OPS.lookup(op)
        if entry is None:
            raise FormatError(
                f"unknown edit {op!r} in plan.json (this slimtorch knows {EDIT_OPS.list()}); "
                "the file may come from a newer slimtorch: upgrade it."
            )
        if entry.phase == phase:
            entry.apply(model, edit)
