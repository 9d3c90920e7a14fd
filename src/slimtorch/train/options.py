"""Options of ``finetune``, validated up front: a frozen dataclass that serializes to JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._options import Options
from .._validate import check_int, check_number, suggest
from ..errors import ConfigError

__all__ = ["DISTILL", "OPTIMIZERS", "POOLS", "FinetuneOptions"]

OPTIMIZERS = ("adamw", "sgd")
DISTILL = ("auto", "kl", "mse", "cosine", "none")
POOLS = ("none", "mean")
# Options that change the arithmetic of a run: a resume with other values is no longer the
# same run, so finetune warns about them.
MATH_FIELDS = (
    "lr",
    "optimizer",
    "weight_decay",
    "momentum",
    "warmup_steps",
    "grad_clip",
    "accumulate",
    "batch_size",
    "temperature",
    "alpha",
    "hidden",
    "hidden_weight",
    "distill",
    "pool",
    "seed",
)


def _optional_int(name: str, value: Any, low: int, hint: str = "") -> int | None:
    return None if value is None else check_int(name, value, low=low, hint=hint)


@dataclass(frozen=True)
class FinetuneOptions(Options):
    """How ``finetune`` trains.

    Attributes:
        epochs / steps: the length of the run, exactly one of them: passes over the data,
            or optimizer steps.
        lr: peak learning rate, reached after ``warmup_steps`` and decayed to 0 by a cosine.
        optimizer: ``"adamw"`` or ``"sgd"`` (with ``momentum``, Nesterov off).
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        warmup_steps: optimizer steps of linear warm-up from ``lr / warmup_steps``.
        grad_clip: clip the global gradient norm to this value; None turns clipping off.
        accumulate: micro-batches per optimizer step (gradient accumulation).
        batch_size: samples per micro-batch and per process when ``data`` is a ``Dataset``
            (the global batch is ``batch_size * world_size``); iterables keep their batches.
        temperature: softmax temperature of the distillation KL (its loss is scaled by T^2).
        alpha: weight of distillation in ``(1 - alpha) * task + alpha * distill`` when the
            batches have labels; without labels the loss is distillation alone.
        hidden: ``(student_module, teacher_module)`` pairs whose outputs are matched by MSE,
            through a learned linear projection where their widths differ.
        hidden_weight: weight of the hidden-state MSE terms.
        distill: ``"kl"`` (temperature KL, for logits), ``"mse"`` (for embeddings),
            ``"cosine"`` (``1 - cos`` per vector, for sentence embeddings) or ``"auto"``:
            MSE when the output is taken from ``last_hidden_state``, else KL; ``"none"``
            matches only the ``hidden`` pairs.
        pool: what of the outputs distillation compares: ``"none"``, the outputs as they are;
            ``"mean"``, the mean over the sequence dim 1 of the positions where the batch's
            ``attention_mask`` is 1 (every position without one): ``(B, L, D) -> (B, D)``,
            a sentence embedding as sentence-transformers pools it.
        eval_every: call ``eval_fn`` every this many optimizer steps (and at the end).
        patience: stop after this many evaluations without improvement (None: never).
        maximize: whether a larger ``eval_fn`` value is better (accuracy) or smaller (loss).
        checkpoint_every: write a checkpoint every this many optimizer steps.
        seed: seeds torch, ``random`` and numpy, and the per-epoch data order.
        workers: DataLoader worker processes for a ``Dataset`` (0: load in this process).
        progress: show a progress bar (on rank 0, when stderr is a terminal).
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available).
    """

    epochs: int | None = None
    steps: int | None = None
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    momentum: float = 0.9
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    accumulate: int = 1
    batch_size: int = 64
    temperature: float = 4.0
    alpha: float = 0.9
    hidden: tuple[tuple[str, str], ...] = ()
    hidden_weight: float = 1.0
    distill: str = "auto"
    pool: str = "none"
    eval_every: int | None = None
    patience: int | None = None
    maximize: bool = True
    checkpoint_every: int | None = None
    seed: int = 0
    workers: int = 0
    progress: bool = True
    device: str | None = None

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            given = "both" if self.epochs is not None else "neither"
            raise ConfigError(
                f"finetune got {given} of epochs= and steps=; pass exactly one, e.g. epochs=3 "
                "(passes over the data) or steps=1000 (optimizer steps)."
            )
        _optional_int("epochs", self.epochs, 1)
        _optional_int("steps", self.steps, 1)
        check_number(
            "lr", self.lr, low=0, low_open=True, hint="e.g. lr=1e-3 for AdamW, 1e-2 for SGD"
        )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"optimizer={self.optimizer!r} is unknown"
                f"{suggest(str(self.optimizer), OPTIMIZERS)}; use one of {list(OPTIMIZERS)}."
            )
        check_number("weight_decay", self.weight_decay, low=0)
        check_number("momentum", self.momentum, low=0, high=1, high_open=True)
        check_int("warmup_steps", self.warmup_steps, low=0)
        if self.grad_clip is not None:
            check_number("grad_clip", self.grad_clip, low=0, low_open=True, hint="or None")
        check_int("accumulate", self.accumulate, hint="1 means no gradient accumulation")
        check_int("batch_size", self.batch_size)
        check_number("temperature", self.temperature, low=0, low_open=True, hint="e.g. 4")
        check_number("alpha", self.alpha, low=0, high=1, hint="the weight of distillation")
        object.__setattr__(self, "hidden", _pairs(self.hidden))
        check_number("hidden_weight", self.hidden_weight, low=0)
        if self.distill not in DISTILL:
            raise ConfigError(
                f"distill={self.distill!r} is unknown{suggest(str(self.distill), DISTILL)}; use "
                f"one of {list(DISTILL)}."
            )
        if self.pool not in POOLS:
            raise ConfigError(
                f"pool={self.pool!r} is unknown{suggest(str(self.pool), POOLS)}; use one of "
                f"{list(POOLS)}."
            )
        _optional_int("eval_every", self.eval_every, 1)
        _optional_int("patience", self.patience, 1, "or None to never stop early")
        _optional_int("checkpoint_every", self.checkpoint_every, 1)
        check_int("seed", self.seed, low=0)
        check_int("workers", self.workers, low=0)
        if self.device is not None and not isinstance(self.device, str):
            raise ConfigError(f"device={self.device!r} is not a string such as 'cpu' or 'cuda'.")


def _pairs(hidden: Any) -> tuple[tuple[str, str], ...]:
    fix = "pass a list of (student_module, teacher_module) names, e.g. [('layer3', 'layer3')]"
    if isinstance(hidden, str) or hidden is None:
        raise ConfigError(f"hidden={hidden!r} is not a list of pairs; {fix}.")
    out = []
    for pair in hidden:
        if (
            isinstance(pair, str)
            or len(pair) != 2
            or not all(isinstance(n, str) and n for n in pair)
        ):
            raise ConfigError(f"hidden item {pair!r} is not a pair of module names; {fix}.")
        out.append((pair[0], pair[1]))
    return tuple(out)
