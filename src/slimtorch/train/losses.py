"""The losses of fine-tuning: task loss, distillation on outputs, hidden-state matching.

Which tensor of a model's output is compared (``main_output``), in this order:

1. a tensor is itself;
2. a mapping (a Hugging Face ``ModelOutput`` is one) gives ``"logits"``, else
   ``"last_hidden_state"``;
3. a tuple or list gives its first element (recursively, by the same rule).

Anything else is an ``InputError`` that says which types are understood. With
``distill="auto"`` an output taken from ``last_hidden_state`` is distilled by MSE (an embedding
model), every other one by the temperature KL on logits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError

__all__ = [
    "FeatureTap",
    "Projection",
    "cosine_distance",
    "kd_kl",
    "main_output",
    "mean_pool",
    "output_key",
    "task_loss",
]

IGNORE_INDEX = -100  # labels with this value are left out of the loss, as in torch and HF


def output_key(output: Any) -> str:
    """Which part of ``output`` ``main_output`` takes: ``"tensor"``, ``"logits"``,
    ``"last_hidden_state"`` or ``"first"`` (of a tuple)."""
    if isinstance(output, torch.Tensor):
        return "tensor"
    if isinstance(output, Mapping):
        for key in ("logits", "last_hidden_state"):
            if output.get(key) is not None:
                return key
        raise InputError(
            f"the model returned a mapping with keys {sorted(map(str, output))} but no "
            "'logits' or 'last_hidden_state'; return one of them, or pass loss_fn= for the "
            "task loss."
        )
    if isinstance(output, Sequence) and not isinstance(output, str) and len(output):
        return "first"
    raise InputError(
        f"cannot find logits in a model output of type {type(output).__name__}; return a "
        "tensor, a tuple whose first element is the logits, or a dict/ModelOutput with "
        "'logits' or 'last_hidden_state'."
    )


def main_output(output: Any) -> torch.Tensor:
    """The tensor of a model output that losses compare (see the module's rule)."""
    key = output_key(output)
    if key == "tensor":
        return output
    if key == "first":
        return main_output(output[0])
    return output[key]


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy; logits of shape ``(B, C)`` or ``(B, ..., C)`` against labels
    ``(B,)`` or ``(B, ...)`` (positions labelled -100 are ignored)."""
    if logits.ndim > 2:
        logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)


def kd_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s distillation loss: ``T^2 * KL(softmax(t/T) || softmax(s/T))``,
    averaged over the samples (and positions), so its gradient keeps its scale as T grows."""
    c = student.shape[-1]
    s = F.log_softmax(student.reshape(-1, c).float() / temperature, dim=-1)
    t = F.log_softmax(teacher.reshape(-1, c).float() / temperature, dim=-1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature**2


def mean_pool(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of ``x`` of shape ``(B, L, ...)`` over the positions ``L`` where ``mask``
    ``(B, L)`` is nonzero (all of them when ``mask`` is None): shape ``(B, ...)``. With
    ``last_hidden_state`` and the ``attention_mask`` this is sentence-transformers' mean
    pooling (padding left out)."""
    if x.ndim < 3:
        raise ConfigError(
            f"pool='mean' averages over the sequence dim 1 of outputs shaped (B, L, D), but the "
            f"model's output has shape {tuple(x.shape)}; use pool='none' for it."
        )
    if mask is None:
        return x.float().mean(1)
    if tuple(mask.shape) != tuple(x.shape[:2]):
        raise InputError(
            f"pool='mean': the attention_mask has shape {tuple(mask.shape)} but the output "
            f"{tuple(x.shape)}; the mask must be (batch, sequence) = {tuple(x.shape[:2])}."
        )
    w = mask.to(torch.float32).reshape(*mask.shape, *([1] * (x.ndim - 2)))
    return (x.float() * w).sum(1) / w.sum(1).clamp(min=1e-9)


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``1 - cos(student, teacher)`` along the last dim, averaged over the rest: 0 when every
    student vector points where its teacher's does, whatever their lengths."""
    return (1 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)).mean()


def check_outputs_match(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> None:
    """Raises ConfigError when the teacher's output cannot be compared with the student's."""
    if kind == "kl" and student.shape[-1] != teacher.shape[-1]:
        raise ConfigError(
            f"the teacher outputs {teacher.shape[-1]} logits per sample but the student "
            f"{student.shape[-1]}: distillation compares them class by class. Use a teacher "
            "trained on the same classes (same head width), or drop teacher=."
        )
    if student.shape != teacher.shape:
        raise ConfigError(
            f"the teacher's output has shape {tuple(teacher.shape)} but the student's "
            f"{tuple(student.shape)} on the same batch; they must match for distill={kind!r}. "
            "Match hidden states of other widths with hidden=[(student_module, teacher_module)]."
        )


class FeatureTap:
    """Forward hooks that keep the latest output of named modules (by the output rule)."""

    def __init__(self, model: nn.Module, names: Sequence[str], role: str) -> None:
        modules = dict(model.named_modules())
        self.features: dict[str, torch.Tensor] = {}
        self._handles = []
        for name in names:
            if name not in modules:
                from .._validate import suggest

                raise ConfigError(
                    f"hidden= names {role} module {name!r}, which the {role} does not have"
                    f"{suggest(name, list(modules))}; use names from {role}.named_modules()."
                )
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self.features[name] = main_output(output)

        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def feature_dim(student: torch.Tensor, teacher: torch.Tensor, pair: tuple[str, str]) -> int:
    """The one dimension along which two hidden states differ (-1 if none); raises if the
    shapes differ in more than one dimension or in rank."""
    if student.ndim != teacher.ndim:
        raise ConfigError(
            f"hidden pair {pair}: the student's output has shape {tuple(student.shape)} and the "
            f"teacher's {tuple(teacher.shape)}; pick modules whose outputs have the same rank."
        )
    differ = [d for d in range(student.ndim) if student.shape[d] != teacher.shape[d]]
    if len(differ) > 1 or 0 in differ:
        raise ConfigError(
            f"hidden pair {pair}: shapes {tuple(student.shape)} (student) and "
            f"{tuple(teacher.shape)} (teacher) differ in dims {differ}; a projection maps one "
            "feature dimension (channels or width), so pick modules at the same resolution."
        )
    return differ[0] if differ else -1


class Projection(nn.Module):
    """A learned linear map of the student's feature dimension ``dim`` to the teacher's width
    (a 1x1 convolution when ``dim`` is the channel dim of an image feature map)."""

    def __init__(self, dim: int, in_width: int, out_width: int) -> None:
        super().__init__()
        self.dim = dim
        self.linear = nn.Linear(in_width, out_width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.movedim(self.dim, -1)).movedim(-1, self.dim)


def hidden_mse(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over the pairs of the MSE between (projected) student and teacher states."""
    total = sum(F.mse_loss(s.float(), t.float()) for s, t in zip(student, teacher))
    return total / max(len(student), 1)
