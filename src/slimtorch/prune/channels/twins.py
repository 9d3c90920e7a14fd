"""Prunable twins: modules whose code ties their sizes, swapped for equivalent ones first.

``nn.MultiheadAttention`` packs q/k/v and checks its widths in its forward, so pruning could
never shrink it. Before tracing, ``prune_channels`` swaps such modules for exact twins
(``slimtorch.nn.PrunableMultiheadAttention``, ``PrunableWindowAttention`` for torchvision's
Swin) through the edit layer, so the swap is recorded
and ``.slim`` files rebuild it. A swap is kept only if the model's outputs do not change.

A twin may also stand for several submodules at once: torchvision's ShuffleNetV2 shuffles
channels across its blocks, so its twin replaces each stage with a
``PrunableShuffleStage`` and permutes the input columns of ``conv5`` to match. Such a twin
returns ``{submodule name: new module}``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
from torch import nn

from ..._forward import Inputs, eval_mode, relative_error, run_forward
from ..._registry import Registry
from ...edit.log import record_edit
from ...edit.modules import replace_module_
from ...errors import ConfigError, ForwardError
from ...graph.groups import register_sized_split
from ...nn._registry import module_config, module_type_name
from ...nn.attention import PrunableMultiheadAttention
from ...nn.shuffle_stage import PieceBatchNorm, PrunableShuffleStage
from ...nn.window_attention import PrunableWindowAttention

__all__ = ["TWINS", "register_twin", "swap_twins_", "twin_swaps"]

Twin = Callable[[nn.Module], nn.Module | Mapping[str, nn.Module]]


def _swin(module: nn.Module) -> nn.Module:
    return PrunableWindowAttention.from_torch(module)


def _shufflenet_v2(model: nn.Module) -> dict[str, nn.Module]:
    """Every stage of a torchvision ShuffleNetV2 as a ``PrunableShuffleStage``; each
    consumer's input channels permuted to the order the previous twin returns."""
    out: dict[str, nn.Module] = {}
    order = None
    for name in ("stage2", "stage3", "stage4"):
        twin = PrunableShuffleStage.from_torchvision(getattr(model, name), order)
        out[name], order = twin, twin.output_order()
    conv = getattr(model, "conv5", None)
    if not isinstance(conv, nn.Sequential) or not isinstance(conv[0], nn.Conv2d):
        raise ConfigError("not a torchvision ShuffleNetV2 (no conv5 after stage4)")
    head = copy.deepcopy(conv[0])
    with torch.no_grad():
        head.weight.copy_(conv[0].weight[:, order])
    out["conv5.0"] = head
    return out


TWINS: Registry[Twin] = Registry(
    "prunable twin",
    "class",
    inherit="same_forward",
    hint="Register one with @slimtorch.prune.channels.register_twin(MyLayer).",
)
TWINS.add(nn.MultiheadAttention, PrunableMultiheadAttention.from_torch)
TWINS.add("torchvision.models.swin_transformer.ShiftedWindowAttention", _swin)
TWINS.add("torchvision.models.swin_transformer.ShiftedWindowAttentionV2", _swin)
TWINS.add("torchvision.models.shufflenetv2.ShuffleNetV2", _shufflenet_v2)

_TOLERANCE = 1e-4
register_sized_split(PieceBatchNorm)  # its parts' sizes are its BatchNorms' widths


def register_twin(*types: type, override: bool = False) -> Callable[[Twin], Twin]:
    """Registers ``fn(module) -> equivalent module`` that ``prune_channels`` swaps in first."""
    return TWINS.register(*types, override=override)


def twin_swaps(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(module name, twin)`` for every module of ``model`` that has a registered twin (a
    variant its twin function refuses is skipped); the model is not changed."""
    found = [(n, m) for n, m in model.named_modules() if TWINS.lookup(type(m)) is not None]
    out: list[tuple[str, nn.Module]] = []
    for name, module in found:
        try:
            twin = TWINS.get(type(module))(module)
        except ConfigError:
            continue  # a variant without a twin stays as it is (and stays frozen)
        parts = twin.items() if isinstance(twin, Mapping) else [("", twin)]
        for sub, new in parts:
            full = ".".join(n for n in (name, sub) if n)
            if full:  # the root cannot be swapped in place; a root's twin maps its parts
                out.append((full, new))
    return out


def swap_twins_(model: nn.Module, example_inputs: Inputs) -> list[str]:
    """Swaps in the twin of every registered module, in place, if the outputs stay the same.

    Returns:
        The names of the swapped modules (each recorded as a ``replace`` edit).
    """
    swaps = twin_swaps(model)
    if not swaps:
        return []
    with eval_mode(model), torch.no_grad():
        before = run_forward(model, example_inputs)
    swapped: list[tuple[str, nn.Module, nn.Module]] = []
    for name, new in swaps:
        swapped.append((name, model.get_submodule(name), new))
        replace_module_(model, name, new, record=False)
    try:
        with eval_mode(model), torch.no_grad():
            err = relative_error(before, run_forward(model, example_inputs))
    except ForwardError:
        err = float("inf")
    if not err <= _TOLERANCE:
        for name, module, _ in reversed(swapped):  # the model calls them as a twin does not
            replace_module_(model, name, module, record=False)
        return []
    for name, _, twin in swapped:
        edit = {"op": "replace", "module": name, "type": module_type_name(twin)}
        edit |= {"config": module_config(twin), "why": {"by": "prune_channels", "twin": True}}
        record_edit(model, edit, owned=True)
    return [name for name, _, _ in swapped]
