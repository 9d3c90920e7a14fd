"""The first batch, checked before any training: does the data fit the student, does the
teacher's output fit the student's, and which projections the hidden-state pairs need."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._forward import _shapes, eval_mode, run_forward
from ..errors import ForwardError, InputError
from .batches import Batch
from .losses import (
    IGNORE_INDEX,
    FeatureTap,
    Projection,
    check_outputs_match,
    feature_dim,
    main_output,
    mean_pool,
    output_key,
)
from .options import FinetuneOptions

__all__ = ["Probe", "probe"]


@dataclass
class Probe:
    """What the first batch told: the distillation kind and the projections to learn."""

    distill: str
    projections: nn.ModuleDict


def _forward(model: nn.Module, batch: Batch, role: str) -> Any:
    inputs = batch.kwargs if batch.kwargs else batch.args
    try:
        with eval_mode(model), torch.no_grad():
            return run_forward(model, inputs)
    except ForwardError as exc:
        raise InputError(
            f"the first batch (inputs {_shapes(inputs)}) does not fit the {role}: {exc} "
            "Make the data match the model (input shape, channels, dtype) or pick the model "
            "that the data is for."
        ) from exc


def _check_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise InputError(
            f"the labels are {labels.dtype} but cross-entropy needs class indices (int64); "
            "convert them with labels.long(), or pass loss_fn= for other targets."
        )
    if tuple(logits.shape[:-1]) != tuple(labels.shape):
        raise InputError(
            f"the student's logits have shape {tuple(logits.shape)} and the labels "
            f"{tuple(labels.shape)}; cross-entropy needs labels of shape logits.shape[:-1] "
            "(one class index per sample or position), or pass loss_fn=."
        )
    valid = labels[labels != IGNORE_INDEX]
    if not valid.numel():
        return
    width, low, high = logits.shape[-1], int(valid.min()), int(valid.max())
    if low < 0:
        raise InputError(
            f"a label is {low}; class indices must be 0..{width - 1} ({IGNORE_INDEX} marks "
            "positions to ignore). Remap the labels."
        )
    if high >= width:
        raise InputError(
            f"labels go up to {high} but the student outputs {width} logits per sample "
            f"(classes 0..{width - 1}); give the model a head with at least {high + 1} "
            f"outputs (e.g. num_classes={high + 1}) or remap the labels to 0..{width - 1}."
        )


def probe(
    student: nn.Module,
    teacher: nn.Module | None,
    batch: Batch,
    opts: FinetuneOptions,
    loss_fn: Callable[..., torch.Tensor] | None,
) -> Probe:
    """Runs both models once in eval mode on ``batch``; raises ``InputError``/``ConfigError``
    with the fix when something does not fit. Touches no RNG but projection init."""
    s_tap = FeatureTap(student, [s for s, _ in opts.hidden], "student")
    t_tap = FeatureTap(teacher, [t for _, t in opts.hidden], "teacher") if teacher else None
    if opts.hidden and teacher is None:
        s_tap.close()
        raise InputError("hidden= pairs need a teacher; pass teacher= or drop hidden=.")
    try:
        out = _forward(student, batch, "student")
        logits = main_output(out)
        kind = opts.distill
        if kind == "auto":
            kind = "mse" if output_key(out) == "last_hidden_state" else "kl"
        if batch.labels is not None and loss_fn is None:
            _check_labels(logits, batch.labels)
        if batch.labels is None and teacher is None:
            raise InputError(
                "the batches carry no labels and there is no teacher, so there is nothing to "
                "learn from: pass (inputs, labels) batches, or a teacher= to distill from."
            )
        projections = nn.ModuleDict()
        if teacher is not None:
            t_logits = main_output(_forward(teacher, batch, "teacher"))
            if kind != "none" and (opts.alpha > 0 or batch.labels is None):
                s_out, t_out = logits, t_logits
                if opts.pool == "mean":
                    mask = batch.kwargs.get("attention_mask")
                    s_out, t_out = mean_pool(s_out, mask), mean_pool(t_out, mask)
                check_outputs_match(s_out, t_out, kind)
            for i, pair in enumerate(opts.hidden):
                s, t = s_tap.features.get(pair[0]), t_tap.features.get(pair[1])  # type: ignore[union-attr]
                if s is None or t is None:
                    who = "student" if s is None else "teacher"
                    raise InputError(
                        f"hidden pair {pair}: the {who}'s module did not run in the forward "
                        "pass; pick a module that does."
                    )
                dim = feature_dim(s, t, pair)
                if dim >= 0:
                    projections[str(i)] = Projection(dim, s.shape[dim], t.shape[dim])
        return Probe(kind, projections)
    finally:
        s_tap.close()
        if t_tap is not None:
            t_tap.close()
