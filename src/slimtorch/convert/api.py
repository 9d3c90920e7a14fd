"""``slimtorch.convert``: weight-preserving structure rewrites of a trained model.

Data flow: copy the model -> trace it (when example inputs are given) -> pick the layers ->
capture each layer's input -> build each rewrite (pure: new modules from old weights) ->
measure it -> keep it (error budget, measured latency for ``layers="auto"``) -> swap the
modules in with ``slimtorch.edit.replace_module_``, which records every edit.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._forward import (
    Inputs,
    capture_inputs,
    check_model,
    check_threads,
    eval_mode,
    relative_error,
    run_forward,
)
from .._validate import check_number, suggest
from ..edit.modules import replace_module_
from ..errors import ConfigError, ConvertError
from ..graph.trace import trace
from ..measure.analyze import analyze
from . import auto
from .registry import Conversion, LayerRewrite, get_conversion
from .result import ConvertedLayer, ConvertResult, SkippedLayer

__all__ = ["capture_inputs", "convert", "relative_error"]

Layers = None | str | Sequence[str]


def _check_layers(model: nn.Module, layers: Layers) -> list[str] | None:
    if layers is None or layers == "auto":
        return None
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise ConfigError(
            f"layers={layers!r} is invalid; pass None (every layer the kind applies to), "
            "'auto' (only layers that get faster), or a list of module names such as ['conv1']."
        )
    names = [n for n, _ in model.named_modules()]
    known = set(names)
    for name in layers:
        if name not in known:
            raise ConfigError(
                f"layer {name!r} does not exist in the {type(model).__name__}"
                f"{suggest(name, names)}. "
                "Names are those of model.named_modules(), e.g. 'features.3'."
            )
    return list(dict.fromkeys(layers))


def _row(rw: LayerRewrite, x: Any) -> ConvertedLayer:
    params = [sum(p.numel() for p in m.parameters()) for m in (rw.before, rw.after)]
    error = macs_b = macs_a = None
    if isinstance(x, torch.Tensor):
        with eval_mode(rw.before), eval_mode(rw.after), torch.no_grad():
            error = relative_error(rw.before(x), rw.after(x))
        macs_b, macs_a = analyze(rw.before, x).macs, analyze(rw.after, x).macs
    return ConvertedLayer(
        rw.name,
        type(rw.before[0] if isinstance(rw.before, nn.Sequential) else rw.before).__name__,
        type(rw.after).__name__,
        error,
        params[0],
        params[1],
        macs_b,
        macs_a,
        note=rw.note,
    )


def convert(
    model: nn.Module,
    kind: str,
    layers: Layers = None,
    example_inputs: Inputs | None = None,
    *,
    max_error: float | None = None,
    threads: Sequence[int] | None = None,
    min_speedup: float = 1.05,
    **options: Any,
) -> ConvertResult:
    """Rewrites layers of a trained model into cheaper structures, keeping its weights' function.

    Kinds (``slimtorch.convert.conversion_kinds()``): ``"depthwise_separable"`` (``rank=``),
    ``"grouped"`` (``groups=``), ``"dilated"`` (``fit=``), ``"low_rank"`` (``rank=`` or
    ``energy=``, ``fit=``), ``"fuse_bn"``. At full rank each is exact.

    Args:
        model: the trained model; it is not modified (the result holds a deep copy).
        kind: the conversion.
        layers: None for every layer the kind applies to (others are reported as skipped),
            a list of module names (each must convert, or an error says why), or ``"auto"``:
            only layers whose rewrite is measurably faster on this CPU at 1 and all threads.
        example_inputs: e.g. ``torch.randn(1, 3, 224, 224)``; needed for ``fuse_bn``
            (tracing), ``layers="auto"``, ``max_error`` and ``fit="data"``. With them, each
            row reports its relative output error and MACs.
        max_error: leave layers whose relative output error exceeds this.
        threads: thread counts ``"auto"`` times at (default 1 and all).
        min_speedup: ``"auto"`` keeps a rewrite only if this many times faster everywhere.
        **options: the kind's options (see its ``Options`` dataclass).

    Returns:
        A ``ConvertResult``: ``.model``, ``.layers`` (rows), ``.skipped``; ``print()`` it.

    Example:
        >>> import torchvision
        >>> r = convert(torchvision.models.vgg11(), "depthwise_separable", ["features.3"],
        ...             torch.randn(1, 3, 64, 64), rank=2)
        >>> type(r.model.features[3]).__name__, r.layers[0].macs_after < r.layers[0].macs_before
        ('DepthwiseSeparableConv2d', True)
    """
    check_model(model)
    conversion = get_conversion(kind)
    opts = conversion.make_options(options)
    explicit = _check_layers(model, layers)
    thread_counts = _check_args(
        conversion, kind, layers, example_inputs, max_error, min_speedup, threads
    )
    work = copy.deepcopy(model)
    graph = trace(work, example_inputs) if example_inputs is not None else None
    names = explicit if explicit is not None else list(conversion.targets(work, graph))
    inputs = capture_inputs(work, example_inputs, names) if example_inputs is not None else {}
    rewrites, skipped = _rewrites(
        conversion, work, names, opts, graph, inputs, explicit is not None
    )
    missing_inputs = [rw.name for rw in rewrites if rw.name not in inputs]
    if example_inputs is not None and missing_inputs:
        inputs |= capture_inputs(work, example_inputs, missing_inputs)

    rows: dict[str, ConvertedLayer] = {}
    kept: list[LayerRewrite] = []
    for rw in rewrites:
        row = _row(rw, inputs.get(rw.name))
        if max_error is not None and row.error is not None and row.error > max_error:
            why = f"error {row.error:.2e} > max_error {max_error:g}"
            skipped.append(SkippedLayer(rw.name, why + (f" ({rw.note})" if rw.note else "")))
            continue
        rows[rw.name] = row
        kept.append(rw)
    if layers == "auto":
        faster, slow = auto.select_faster(kept, inputs, thread_counts, min_speedup)
        skipped += slow
        kept = [rw for rw, _ in faster]
        for rw, latency in faster:
            rows[rw.name] = dataclasses.replace(rows[rw.name], latency_ms=latency)

    why = {"by": "convert", "kind": kind, "options": opts.to_dict()}
    for rw in kept:
        for name, new in rw.replacements.items():
            replace_module_(work, name, new, why=why)
    output_error = None
    if example_inputs is not None:
        with eval_mode(model), eval_mode(work), torch.no_grad():
            output_error = relative_error(
                run_forward(model, example_inputs), run_forward(work, example_inputs)
            )
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    return ConvertResult(
        model=work,
        kind=kind,
        options=dataclasses.asdict(opts) | {"layers": layers, "max_error": max_error},
        layers=sorted((rows[rw.name] for rw in kept), key=lambda r: order.get(r.name, 0)),
        skipped=sorted(skipped, key=lambda s: order.get(s.name, 0)),
        output_error=output_error,
    )


def _check_args(
    conversion: Conversion,
    kind: str,
    layers: Layers,
    example_inputs: Inputs | None,
    max_error: float | None,
    min_speedup: float,
    threads: Sequence[int] | None,
) -> list[int]:
    """Validates the arguments that do not belong to the kind; returns the thread counts."""
    if max_error is not None:
        check_number("max_error", max_error, low=0, hint="e.g. 0.05")
    check_number("min_speedup", min_speedup, low=0, low_open=True, hint="e.g. 1.05")
    needs = {
        f"kind {kind!r}": conversion.needs_inputs,
        "layers='auto'": layers == "auto",
        "max_error": max_error is not None,
    }
    missing = [what for what, need in needs.items() if need]
    if example_inputs is None and missing:
        raise ConfigError(
            f"{' and '.join(missing)} need(s) example_inputs; pass e.g. "
            "example_inputs=torch.randn(1, 3, 224, 224)."
        )
    thread_counts = sorted({check_threads(t) for t in threads}) if threads else None
    return thread_counts or auto.default_threads()


def _rewrites(
    conversion: Conversion,
    work: nn.Module,
    names: list[str],
    opts: Any,
    graph: Any,
    inputs: dict[str, Any],
    explicit: bool,
) -> tuple[list[LayerRewrite], list[SkippedLayer]]:
    """Each named layer's rewrite; layers that cannot take it are skipped (or, when the
    user named them, the error is raised)."""
    rewrites: list[LayerRewrite] = []
    skipped: list[SkippedLayer] = []
    for name in names:
        try:
            rewrites.append(conversion.rewrite(work, name, opts, graph, inputs.get(name)))
        except ConvertError as exc:
            if explicit:
                raise
            skipped.append(SkippedLayer(name, str(exc)))
    return rewrites, skipped
