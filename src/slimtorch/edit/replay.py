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

import torch
from torch import nn

from .._registry import Registry
from ..errors import ConfigError, FormatError
from ..nn._registry import build_module
from .channels import apply_prune_edit_
from .fold import replay_fold_
from .modules import delete_block_, replace_module_
from .sparse import sparsify_module_

__all__ = ["EDIT_OPS", "EditOp", "check_edits", "replay_"]

Phase = Literal["structure", "after_weights", "record"]


@dataclass(frozen=True)
class EditOp:
    """How to replay one kind of edit.

    Attributes:
        phase: when it runs (see the module docstring).
        apply: ``fn(model, edit)``, in place; raises ``FormatError`` for an invalid edit.
        keys: the keys such an edit may hold.
        cost: ``fn(edit) -> bytes`` of new tensors it allocates (0 for edits that only
            shrink), so a plan cannot ask for more memory than its weights describe.
    """

    phase: Phase
    apply: Callable[[nn.Module, Mapping[str, Any]], None]
    keys: frozenset[str] = frozenset()
    cost: Callable[[Mapping[str, Any]], int] = lambda edit: 0


EDIT_OPS: Registry[EditOp] = Registry("edit op", "name")


def _module_name(edit: Mapping[str, Any]) -> str:
    name = edit.get("module")
    if not isinstance(name, str) or not name:
        raise FormatError(f"edit {edit.get('op')!r} names no module")
    return name


def _replace_args(edit: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    config = edit.get("config")
    if not isinstance(config, dict) or not isinstance(edit.get("type"), str):
        raise FormatError("a replace edit needs a module type and a config")
    return edit["type"], config


def _replace_cost(edit: Mapping[str, Any]) -> int:
    """Bytes of the replacement's tensors, measured by building it on the meta device."""
    with torch.device("meta"):
        probe = build_module(*_replace_args(edit))
    return sum(t.numel() * t.element_size() for t in [*probe.parameters(), *probe.buffers()])


def _replace(model: nn.Module, edit: Mapping[str, Any]) -> None:
    new = build_module(*_replace_args(edit))
    try:
        replace_module_(model, _module_name(edit), new, record=False)
    except (AttributeError, ValueError) as exc:
        raise FormatError(f"cannot replace {edit.get('module')!r}: {exc}") from exc


def _remove(model: nn.Module, edit: Mapping[str, Any]) -> None:
    try:
        delete_block_(model, _module_name(edit), record=False)
    except ConfigError as exc:
        raise FormatError(f"cannot remove {edit.get('module')!r}: {exc}") from exc


def _sparsify(model: nn.Module, edit: Mapping[str, Any]) -> None:
    sparsify_module_(model, _module_name(edit), record=False)


EDIT_OPS.add("fold", EditOp("structure", replay_fold_, frozenset({"op", "tensors"})))
_PRUNE = frozenset({"op", "tensors", "attrs", "config", "why"})
EDIT_OPS.add("prune", EditOp("structure", apply_prune_edit_, _PRUNE))
EDIT_OPS.add(
    "replace",
    EditOp(
        "structure", _replace, frozenset({"op", "module", "type", "config", "why"}), _replace_cost
    ),
)
EDIT_OPS.add("remove", EditOp("structure", _remove, frozenset({"op", "module", "why"})))
EDIT_OPS.add("sparsify", EditOp("after_weights", _sparsify, frozenset({"op", "module"})))
EDIT_OPS.add(
    "prune_weights", EditOp("record", lambda model, edit: None, frozenset({"op", "options"}))
)


def _entry(edit: Any) -> EditOp:
    op = edit.get("op") if isinstance(edit, dict) else None
    entry = EDIT_OPS.lookup(op) if isinstance(op, str) else None
    if entry is None:
        raise FormatError(
            f"unknown edit {str(op)[:40]!r} in plan.json (this slimtorch knows "
            f"{EDIT_OPS.list()}); the file may come from a newer slimtorch: upgrade it."
        )
    if entry.keys and set(edit) - entry.keys:
        raise FormatError(
            f"a {op!r} edit holds {sorted(set(edit) - entry.keys)[:5]}; it may hold only "
            f"{sorted(entry.keys)}"
        )
    return entry


def check_edits(edits: list[Any], limit_bytes: int | None = None) -> None:
    """Checks every edit's op and keys, and that the new tensors the edits allocate stay
    within ``limit_bytes`` (``FormatError`` otherwise), before anything is applied."""
    total = 0
    for edit in edits:
        entry = _entry(edit)
        if limit_bytes is not None:
            total += entry.cost(edit)
            if total > limit_bytes:
                raise FormatError(
                    f"the plan's edits would allocate over {limit_bytes:,} bytes, more than its "
                    "weights describe"
                )


def replay_(model: nn.Module, edits: list[Any], phase: Phase) -> None:
    """Applies the edits of one phase in order; once every phase ran, the loader sets the
    model's log to ``edits`` so that the reloaded model saves again as it was."""
    for edit in edits:
        entry = _entry(edit)
        if entry.phase == phase:
            entry.apply(model, edit)
