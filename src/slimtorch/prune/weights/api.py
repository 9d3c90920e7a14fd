"""``prune_weights_``: zero weights in place behind masks that survive training.

Pipeline: options -> prunable layers -> unit scores (pure, ``criteria``) -> keep masks ->
``slimtorch.edit.masks.attach_mask_`` (the edit layer changes the modules). Every request is
validated on every layer before the first mask is attached, so a bad request leaves the model
as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..._forward import check_model
from ..._validate import check_finite
from ...edit.log import record_edit
from ...edit.masks import attach_mask_, mask_of, remove_masks_
from ...errors import ConfigError, PruneError
from ..channels.options import check_module_names
from .criteria import (
    global_keep,
    layer_keep,
    nm_keep,
    threshold_keep,
    unit_magnitudes,
    unit_scores,
    units_to_mask,
)
from .layers import check_unshared, prunable_layers
from .options import WeightOptions, suggest
from .stats import SparsityReport, layer_report

__all__ = ["make_permanent_", "prune_weights_", "selected_layers"]


def selected_layers(model: nn.Module, opts: WeightOptions) -> dict[str, tuple[nn.Module, str]]:
    """The layers a request prunes: prunable, not ignored, and named in a per-layer dict.

    Raises ConfigError for names that do not exist (with close matches) and PruneError for
    layers the pattern cannot apply to, before anything is changed.
    """
    layers = prunable_layers(model)
    check_module_names(opts.ignore, (n for n, _ in model.named_modules()), "ignore")

    def ignored(name: str) -> bool:
        return any(name == i or name.startswith(i + ".") or i == "" for i in opts.ignore)

    for name in opts.per_layer:
        if name not in layers:
            raise ConfigError(
                f"sparsity dict names {name!r}, which is not a prunable layer (Conv/Linear "
                f"weight){suggest(name, layers)}; see slimtorch.sparsity(model).names."
            )
        if ignored(name):
            raise ConfigError(
                f"{name!r} is both in the sparsity dict and in ignore; remove it from one."
            )
    chosen = {n: v for n, v in layers.items() if not ignored(n)}
    if opts.per_layer:
        chosen = {n: v for n, v in chosen.items() if n in opts.per_layer}
    check_unshared(chosen)
    pat = opts.parsed_pattern
    if pat.kind == "nm":
        for name, (module, param) in chosen.items():
            shape = tuple(getattr(module, param).shape)
            if len(shape) < 2 or shape[1] % pat.m:
                dim = shape[1] if len(shape) > 1 else None
                raise PruneError(
                    f"pattern '{pat}' groups {pat.m} consecutive weights along the input "
                    f"dimension, but layer {name!r} (weight {shape}) has input dimension {dim}, "
                    f"not a multiple of {pat.m}; add {name!r} to ignore=[...] or use "
                    "pattern='unstructured'."
                )
    return chosen


def _state(module: nn.Module, param: str) -> tuple[torch.Tensor, torch.Tensor]:
    weight = getattr(module, param).detach()
    mask = mask_of(module, param)
    alive = mask.mask.clone() if mask is not None else torch.ones_like(weight, dtype=torch.bool)
    return weight, alive


def compute_masks(
    layers: Mapping[str, tuple[nn.Module, str]], opts: WeightOptions
) -> dict[str, torch.Tensor]:
    """Bool keep masks per layer for a request; pure apart from reading the weights."""
    pat = opts.parsed_pattern
    states = {name: _state(m, p) for name, (m, p) in layers.items()}
    if pat.kind == "nm":
        return {n: nm_keep(w, a, pat, opts.criterion) & a for n, (w, a) in states.items()}
    keeps: dict[str, torch.Tensor] = {}
    if opts.threshold is not None:
        for name, (w, _) in states.items():
            keeps[name] = threshold_keep(unit_magnitudes(w, pat.kind), opts.threshold)
    else:
        scored = {n: unit_scores(w, a, pat.kind, opts.criterion) for n, (w, a) in states.items()}
        if opts.scope == "global" and scored:
            names = list(scored)
            chosen = global_keep(
                [scored[n][0] for n in names], [scored[n][1] for n in names], opts.target
            )
            keeps = dict(zip(names, chosen))
        else:
            for name, (scores, _) in scored.items():
                keeps[name] = layer_keep(scores, opts.per_layer.get(name, opts.target))
    return {
        n: units_to_mask(k, states[n][0].shape, pat.kind) & states[n][1] for n, k in keeps.items()
    }


def prune_weights_(
    model: nn.Module,
    sparsity: float | Mapping[str, float] | None = None,
    scope: str = "layer",
    criterion: str = "magnitude",
    pattern: str = "unstructured",
    ignore: Sequence[str] = (),
    threshold: float | None = None,
    *,
    options: WeightOptions | None = None,
) -> SparsityReport:
    """Zeros weights of Conv1d/2d/3d and Linear layers in place, behind masks.

    Each pruned weight gets one ``WeightMask`` parametrization: the zeros hold through
    optimizer steps and ``state_dict`` save/load (into a model pruned the same way, e.g. with
    ``sparsity=0.0``), and ``make_permanent_`` bakes them into plain weights. Calling it again
    composes: zeros stay zero, the new target counts them, the ranking uses the current
    weights, and the mask is updated rather than stacked. Biases and norms are never pruned;
    the classifier is not special-cased (name it in ``ignore`` to keep it dense).

    Args:
        model: pruned in place.
        sparsity: fraction of weights to zero, in [0, 1]; a dict ``{module name: fraction}``
            prunes only those layers (e.g. from ``SensitivityResult.allocate``). Default 0.8,
            or ``1 - N/M`` for an N:M pattern.
        scope: ``"layer"`` (each layer reaches the fraction) or ``"global"`` (the fraction is
            over all selected weights; layers end up with different fractions).
        criterion: ``"magnitude"``, ``"lamp"`` (scale-free scores for global scope) or
            ``"random"``.
        pattern: ``"unstructured"``, ``"rows"`` (whole output rows / conv output channels),
            ``"cols"`` (whole input columns / input channels) or ``"N:M"`` such as ``"2:4"``
            (keep N of every M consecutive weights along the input dimension).
        ignore: module names to leave dense (a name covers the modules under it).
        threshold: instead of ``sparsity``, zero weights with ``|w| < threshold``.
        options: all of the above as one ``WeightOptions`` (the other arguments are then
            ignored).

    Returns:
        A ``SparsityReport`` of the pruned layers: achieved and target fraction per layer.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 10))
        >>> report = prune_weights_(net, sparsity=0.9, ignore=["1"])
        >>> round(report["0"], 2), report.names
        (0.9, ['0'])
    """
    check_model(model)
    check_finite(model, "prune_weights_")
    if options is None:
        ignore = ignore if isinstance(ignore, str) else tuple(ignore)  # a str is refused
        options = WeightOptions(sparsity, scope, criterion, pattern, ignore, threshold)
    layers = selected_layers(model, options)
    masks = compute_masks(layers, options)
    for name, (module, param) in layers.items():
        attach_mask_(module, param, masks[name])
    # Masks change values, not the architecture; the entry records what produced them.
    record_edit(model, {"op": "prune_weights", "options": options.to_dict()}, owned=True)
    if options.threshold is not None:
        return layer_report(model, layers)
    if options.per_layer:
        return layer_report(model, layers, dict(options.per_layer))
    if options.scope == "global":
        return layer_report(model, layers, None, options.target)
    return layer_report(model, layers, dict.fromkeys(layers, options.target), options.target)


def make_permanent_(model: nn.Module) -> list[str]:
    """Removes every ``WeightMask``, leaving the zeros in plain weights (in place).

    Parameters keep their identity, so an optimizer built before still holds them; the zeros
    are no longer enforced.

    Returns:
        Names of the modules that had masks.

    Example:
        >>> net = torch.nn.Linear(8, 8)
        >>> _ = prune_weights_(net, 0.5)
        >>> make_permanent_(net)
        ['']
    """
    return remove_masks_(check_model(model))
