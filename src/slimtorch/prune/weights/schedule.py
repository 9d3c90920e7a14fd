"""Sparsity schedules for your own training loop: one-shot, iterative and AGP.

Each schedule is a list of ``(step, sparsity)`` events. Call ``schedule.step()`` once per
training step (after ``optimizer.step()``); on an event step it calls ``prune_weights_`` with
that event's sparsity. Masks compose, so each event re-ranks the *current* weights, keeps
everything already zeroed, and zeros more until the new target is reached.

Example:
    >>> net = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 10))
    >>> agp = AGP(net, 0.9, start=0, steps=4, every=10, ignore=["1"])
    >>> for _ in range(41):
    ...     pass  # forward, backward, optimizer.step()
    ...     _ = agp.step()
    >>> round(agp.current_sparsity, 3)
    0.9
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..._forward import check_model
from ..._validate import check_int
from ...errors import ConfigError
from .api import prune_weights_, selected_layers
from .options import WeightOptions, check_fraction
from .stats import SparsityReport

__all__ = ["AGP", "Iterative", "OneShot", "PruningSchedule", "agp_sparsity"]

Target = float | Mapping[str, float]


def agp_sparsity(t: int, final: float, initial: float, start: int, steps: int, every: int) -> float:
    """Zhu & Gupta (2017): ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * Δt))^3``.

    Clamped to ``s_i`` before ``t0`` and to ``s_f`` after ``t0 + n * Δt``.

    Example:
        >>> round(agp_sparsity(5, final=0.8, initial=0.0, start=0, steps=1, every=10), 4)
        0.7
    """
    frac = min(max((t - start) / (steps * every), 0.0), 1.0)
    return final + (initial - final) * (1.0 - frac) ** 3


def _blend(initial: float, final: Target, r: float) -> Target:
    if isinstance(final, Mapping):
        return {k: initial + (v - initial) * r for k, v in final.items()}
    return initial + (final - initial) * r


def _check_count(name: str, value: Any, minimum: int) -> int:
    return check_int(name, value, low=minimum)


class PruningSchedule:
    """Prunes ``model`` at listed training steps; ``step()`` once per training step.

    Args:
        model: pruned in place.
        events: ``(step, sparsity)`` pairs; sparsity is a float or a per-layer dict.
        **options: ``scope``, ``criterion``, ``pattern``, ``ignore`` of ``prune_weights_``.

    Attributes:
        t: training steps taken so far.
        events: the schedule, sorted by step.
        reports: the ``SparsityReport`` of each event applied so far.
    """

    def __init__(self, model: nn.Module, events: list[tuple[int, Target]], **options: Any):
        self.model = check_model(model)
        if "sparsity" in options or "threshold" in options:
            raise ConfigError(
                "a schedule sets the sparsity at each event; pass the final sparsity as the "
                "schedule's argument, not sparsity=/threshold= options."
            )
        self.options = options
        self.events = sorted(events, key=lambda e: e[0])
        for _, target in self.events:  # every event is validated before training starts
            selected_layers(model, WeightOptions(sparsity=target, **options))
        self.t = 0
        self.reports: list[SparsityReport] = []
        self._current: Target = 0.0

    @property
    def current_sparsity(self) -> Target:
        """The sparsity of the last event applied (0.0 before the first)."""
        return self._current

    @property
    def done(self) -> bool:
        return not self.events or self.t > self.events[-1][0]

    def step(self) -> SparsityReport | None:
        """Advances one training step; prunes when an event falls on it."""
        report = None
        for at, target in self.events:
            if at == self.t:
                report = prune_weights_(self.model, options=self._options(target))
                self.reports.append(report)
                self._current = target
        self.t += 1
        return report

    def _options(self, target: Target) -> WeightOptions:
        return WeightOptions(sparsity=target, **self.options)

    def state_dict(self) -> dict[str, Any]:
        """What to save with a checkpoint to resume the schedule (masks are in the model's)."""
        return {"t": self.t, "current": self._current}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.t, self._current = int(state["t"]), state["current"]

    def __repr__(self) -> str:
        events = ", ".join(f"{t}: {s}" for t, s in self.events)
        return f"{type(self).__name__}(t={self.t}, events={{{events}}})"


class OneShot(PruningSchedule):
    """Prunes to ``sparsity`` once, at training step ``at``.

    Example:
        >>> s = OneShot(nn.Linear(8, 8), 0.5, at=0)
        >>> s.step().total
        0.5
    """

    def __init__(self, model: nn.Module, sparsity: Target, at: int = 0, **options: Any):
        super().__init__(model, [(_check_count("at", at, 0), sparsity)], **options)


def _ramp(steps: int, every: int, start: int, initial: float) -> tuple[int, int, int, float]:
    """Validated ``(steps, every, start, initial)`` of a multi-step schedule."""
    return (
        _check_count("steps", steps, 1),
        _check_count("every", every, 1),
        _check_count("start", start, 0),
        check_fraction("initial", initial),
    )


class Iterative(PruningSchedule):
    """``steps`` equal increments from ``initial`` to ``sparsity``, one every ``every`` steps.

    The k-th event (k = 1..steps) is at step ``start + (k - 1) * every`` with sparsity
    ``initial + (sparsity - initial) * k / steps``.
    """

    def __init__(
        self,
        model: nn.Module,
        sparsity: Target,
        steps: int,
        every: int,
        start: int = 0,
        initial: float = 0.0,
        **options: Any,
    ):
        n, dt, t0, s_i = _ramp(steps, every, start, initial)
        events = [(t0 + (k - 1) * dt, _blend(s_i, sparsity, k / n)) for k in range(1, n + 1)]
        super().__init__(model, events, **options)


class AGP(PruningSchedule):
    """Automated gradual pruning (Zhu & Gupta 2017, "To prune, or not to prune").

    Events at ``t = start + k * every`` for k = 0..steps with the cubic ramp
    ``s_t = s_f + (s_i - s_f) * (1 - (t - start) / (steps * every))^3``: fast early, while
    the network has redundancy to spare, and slow near the end. Fine-tune a while after the
    last event.
    """

    def __init__(
        self,
        model: nn.Module,
        sparsity: Target,
        steps: int,
        every: int,
        start: int = 0,
        initial: float = 0.0,
        **options: Any,
    ):
        n, dt, t0, s_i = _ramp(steps, every, start, initial)
        events = []
        for k in range(n + 1):
            r = 1.0 - (1.0 - k / n) ** 3  # the AGP ramp as a fraction of (s_f - s_i)
            events.append((t0 + k * dt, _blend(s_i, sparsity, r)))
        super().__init__(model, events, **options)
