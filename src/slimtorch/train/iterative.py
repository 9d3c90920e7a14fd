"""Iterative pruning: prune a little, fine-tune, re-score, prune again.

``IterativePruning(macs=0.5, steps=5, epochs=1)`` removes half of the model's MACs in five
cycles of one epoch each. Cycle ``k`` (1..steps) prunes channels with
``prune_channels(model, x, target_macs=M0 * (1 - macs * k / steps))``, scoring importance on
the model as fine-tuned by the previous cycle, optionally zeros weights to the AGP sparsity of
cycle ``k`` (``agp_sparsity`` of ``slimtorch.prune.weights.schedule``: fast early, slow at the
end; the masks hold during the cycle's fine-tuning and are baked in before the next channel
pruning, which keeps zeroed weights zero since they rank lowest), then fine-tunes, distilling
from the unpruned model unless ``distill=False``. Layer removal and latency targets are not
driven yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .._forward import Inputs, check_model
from .._options import Options
from .._validate import check_fraction, check_int
from ..errors import ConfigError
from ..measure.analyze import analyze
from ..prune.channels.api import prune_channels
from ..prune.weights.api import make_permanent_, prune_weights_
from ..prune.weights.schedule import agp_sparsity
from ..report.table import format_table, human
from .loop import finetune

__all__ = ["IterativePruning", "IterativeResult"]


@dataclass
class IterativeResult:
    """The model after the last cycle and one record per cycle.

    Attributes:
        model: the pruned, fine-tuned model (weight masks, if any, still attached: call
            ``slimtorch.make_permanent_`` to bake them in).
        cycles: per cycle ``{"cycle", "macs", "target_macs", "params", "sparsity",
            "loss", "eval"}`` (``cycle`` 0 is the model before pruning).
        warnings: the pruning warnings of every cycle, prefixed by the cycle.
    """

    model: nn.Module
    cycles: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rows = [
            (
                str(c["cycle"]),
                human(c["macs"]),
                human(c["target_macs"]),
                human(c["params"]),
                f"{100 * c['sparsity']:.1f}%",
                "" if c["loss"] is None else f"{c['loss']:.4f}",
                "" if c["eval"] is None else f"{c['eval']:.4g}",
            )
            for c in self.cycles
        ]
        header = ("cycle", "MACs", "target", "params", "weights zeroed", "loss", "eval")
        return format_table(header, rows)


@dataclass(frozen=True)
class IterativePruning(Options):
    """Prune -> fine-tune cycles toward a MACs target (see the module docstring).

    Attributes:
        macs: fraction of the model's MACs to remove by the last cycle, in [0, 1).
        steps: number of prune -> fine-tune cycles.
        epochs / train_steps: fine-tuning per cycle, one of them (default: 1 epoch).
        importance: channel importance of ``prune_channels`` (re-scored every cycle).
        round_to: channel rounding of ``prune_channels``; small models need ``None`` (or a
            small multiple) for each cycle to reach its target.
        sparsity: final fraction of weights to zero with AGP over the cycles (None: none).
        distill: distill from the unpruned model while fine-tuning.
        finetune: other options of ``finetune`` (``lr``, ``batch_size``, ...).

    Example:
        >>> schedule = IterativePruning(macs=0.5, steps=5, epochs=1)
        >>> result = schedule.run(model, torch.zeros(1, 1, 8, 8), digits("train"))
        >>> print(result.summary())
    """

    macs: float = 0.5
    steps: int = 5
    epochs: int | None = None
    train_steps: int | None = None
    importance: str = "l1"
    round_to: int | str | None = "auto"
    sparsity: float | None = None
    distill: bool = True
    finetune: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fraction("macs", self.macs, "fraction of MACs to remove", high_open=True)
        check_int("steps", self.steps)
        if self.epochs is not None and self.train_steps is not None:
            raise ConfigError(
                "IterativePruning got both epochs= and train_steps=; pass one (fine-tuning "
                "per cycle), e.g. epochs=1."
            )
        if self.epochs is None and self.train_steps is None:
            object.__setattr__(self, "epochs", 1)
        for key in ("epochs", "train_steps"):
            if getattr(self, key) is not None:
                check_int(key, getattr(self, key))
        if self.sparsity is not None:
            check_fraction("sparsity", self.sparsity)
        clash = {"epochs", "steps"} & set(self.finetune)
        if clash:
            raise ConfigError(
                f"finetune= holds {sorted(clash)}; set the fine-tuning per cycle with "
                "IterativePruning(epochs=...) or train_steps=."
            )

    def targets(self, macs: int) -> list[int]:
        """The MACs target of each cycle: a linear ramp from ``macs`` down to the goal."""
        return [round(macs * (1 - self.macs * k / self.steps)) for k in range(1, self.steps + 1)]

    def run(
        self,
        model: nn.Module,
        example_inputs: Inputs,
        data: Any,
        *,
        teacher: nn.Module | None = None,
        eval_fn: Callable[[nn.Module], float] | None = None,
    ) -> IterativeResult:
        """Runs the cycles on a copy of ``model`` (left untouched).

        Args:
            model: the trained model to compress.
            example_inputs: one input for tracing and counting MACs, e.g.
                ``torch.zeros(1, 1, 8, 8)``.
            data: the fine-tuning data (anything ``finetune`` takes).
            teacher: whom to distill from; by default the unpruned ``model`` (with
                ``distill=True``).
            eval_fn: ``eval_fn(model) -> float`` recorded after each cycle.
        """
        check_model(model)
        if teacher is None and self.distill:
            teacher = model
        length = {"epochs": self.epochs} if self.epochs else {"steps": self.train_steps}
        start = analyze(model, example_inputs).macs
        current = model
        result = IterativeResult(model)
        result.cycles.append(self._record(0, current, example_inputs, start, None, eval_fn))
        for k, target in enumerate(self.targets(start), 1):
            if self.sparsity and k > 1:
                make_permanent_(current)  # our copy; the zeros stay zero (smallest first)
            pruned = prune_channels(
                current,
                example_inputs,
                target_macs=target,
                importance=self.importance,
                round_to=self.round_to,
            )
            result.warnings.extend(f"cycle {k}: {w}" for w in pruned.warnings)
            current = pruned.model
            if self.sparsity:
                level = agp_sparsity(k, self.sparsity, 0.0, start=0, steps=self.steps, every=1)
                prune_weights_(current, level)
            tuned = finetune(current, data, teacher, **length, **dict(self.finetune))
            current = tuned.model
            loss = tuned.losses[-1] if tuned.losses else None
            result.cycles.append(self._record(k, current, example_inputs, target, loss, eval_fn))
        result.model = current
        return result

    @staticmethod
    def _record(
        k: int,
        model: nn.Module,
        x: Inputs,
        target: int,
        loss: float | None,
        eval_fn: Callable[[nn.Module], float] | None,
    ) -> dict[str, Any]:
        from ..prune.weights.stats import sparsity

        value = None
        if eval_fn is not None:
            value = float(eval_fn(model))
        return {
            "cycle": k,
            "macs": analyze(model, x).macs,
            "target_macs": target,
            "params": sum(p.numel() for p in model.parameters()),
            "sparsity": sparsity(model).total,
            "loss": loss,
            "eval": value,
        }
