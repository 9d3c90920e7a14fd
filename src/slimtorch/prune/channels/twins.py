"""Prunable twins: modules whose code ties their sizes, swapped for equivalent ones first.

``nn.MultiheadAttention`` packs q/k/v and checks its widths in its forward, so pruning could
never shrink it. Before tracing, ``prune_channels`` swaps such modules for exact twins
(``slimtorch.nn.PrunableMultiheadAttention``, ``PrunableWindowAttention`` for torchvision's
Swin) through the edit layer, so the swap is recorded
and ``.slim`` files rebuild it. A swap is kept only if the model's outputs do not change.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..._forward import Inputs, eval_mode, relative_error, run_forward
from ..._registry import Registry
from ...edit.log import record_edit
from ...edit.modules import replace_module_
from ...errors import ConfigError, ForwardError
from ...nn._registry import module_config, module_type_name
from ...nn.attention import PrunableMultiheadAttention
from ...nn.window_attention import PrunableWindowAttention

__all__ = ["TWINS", "register_twin", "swap_twins_"]

Twin = Callable[[nn.Module], nn.Module]


def _swin(module: nn.Module) -> nn.Module:
    return PrunableWindowAttention.from_torch(module)


TWINS: Registry[Twin] = Registry(
    "prunable twin",
    "class",
    inherit="same_forward",
    hint="Register one with @slimtorch.prune.channels.register_twin(MyLayer).",
)
TWINS.add(nn.MultiheadAttention, PrunableMultiheadAttention.from_torch)
TWINS.add("torchvision.models.swin_transformer.ShiftedWindowAttention", _swin)
TWINS.add("torchvision.models.swin_transformer.ShiftedWindowAttentionV2", _swin)

_TOLERANCE = 1e-4


def register_twin(*types: type, override: bool = False) -> Callable[[Twin], Twin]:
    """Registers ``fn(module) -> equivalent module`` that ``prune_channels`` swaps in first."""
    return TWINS.register(*types, override=override)


def swap_twins_(model: nn.Module, example_inputs: Inputs) -> list[str]:
    """Swaps in the twin of every registered module, in place, if the outputs stay the same.

    Returns:
        The names of the swapped modules (each recorded as a ``replace`` edit).
    """
    found = [(n, m) for n, m in model.named_modules() if n and TWINS.lookup(type(m)) is not None]
    if not found:
        return []
    with eval_mode(model), torch.no_grad():
        before = run_forward(model, example_inputs)
    swapped: list[tuple[str, nn.Module, nn.Module]] = []
    for name, module in found:
        try:
            twin = TWINS.get(type(module))(module)
        except ConfigError:
            continue  # a variant without a twin stays as it is (and stays frozen)
        replace_module_(model, name, twin, record=False)
        swapped.append((name, module, twin))
    try:
        with eval_mode(model), torch.no_grad():
            err = relative_error(before, run_forward(model, example_inputs))
    except ForwardError:
        err = float("inf")
    if not err <= _TOLERANCE:
        for name, module, _ in swapped:  # the model calls them in a way the twin does not
            replace_module_(model, name, module, record=False)
        return []
    for name, _, twin in swapped:
        edit = {"op": "replace", "module": name, "type": module_type_name(twin)}
        edit |= {"config": module_config(twin), "why": {"by": "prune_channels", "twin": True}}
        record_edit(model, edit, owned=True)
    return [name for name, _, _ in swapped]
