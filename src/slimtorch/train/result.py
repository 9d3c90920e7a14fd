"""What ``finetune`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

__all__ = ["FinetuneResult"]


@dataclass
class FinetuneResult:
    """The trained student and the record of its run.

    Attributes:
        model: the trained student (a copy of the one passed in), in eval mode.
        steps: optimizer steps taken in total (including those before a resume).
        epochs: passes over the data so far (fractional mid-epoch).
        samples: samples (or batches of an iterable, per process) trained on, all processes.
        losses: the training loss of each optimizer step, averaged over processes.
        evals: ``(step, value)`` of each ``eval_fn`` call.
        best_eval / best_step: the best ``eval_fn`` value and its step (None without eval).
        stopped_early: whether ``patience`` ended the run.
        resumed_from: the step a resumed run started at (None for a fresh run).
        checkpoint: the last checkpoint this process wrote (None on other ranks or without).
        projections: the learned hidden-state projections, by pair index.
        warnings: what the run wants you to know (a damaged checkpoint skipped, ...).
        seconds: wall time of this call.
        world_size: the number of processes that trained.
    """

    model: nn.Module
    steps: int
    epochs: float
    samples: int
    losses: list[float] = field(default_factory=list)
    evals: list[tuple[int, float]] = field(default_factory=list)
    best_eval: float | None = None
    best_step: int | None = None
    stopped_early: bool = False
    resumed_from: int | None = None
    checkpoint: Path | None = None
    projections: nn.ModuleDict = field(default_factory=nn.ModuleDict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    world_size: int = 1

    def summary(self) -> str:
        loss = f"{self.losses[-1]:.4f}" if self.losses else "-"
        text = (
            f"{self.steps} steps ({self.epochs:.2f} epochs, {self.samples} samples) in "
            f"{self.seconds:.1f}s on {self.world_size} process(es); final loss {loss}"
        )
        if self.best_eval is not None:
            text += f"; best eval {self.best_eval:.4g} at step {self.best_step}"
        if self.stopped_early:
            text += " (stopped early)"
        return text

    def __str__(self) -> str:
        return self.summary()
