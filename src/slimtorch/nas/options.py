"""Options of the policy search (``slimtorch.search``), validated up front."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._options import Options
from .._validate import check_int, check_number, name_list
from ..errors import ConfigError

__all__ = ["PROXIES", "SPACES", "SearchOptions"]

SPACES = ("depth", "width", "rewrite")
PROXIES = ("kd", "output")
# How a rewrite gene rewrites a conv: the kind of ``slimtorch.convert`` and its options.
DEFAULT_REWRITES: dict[str, dict[str, Any]] = {"low_rank": {"rank": 0.5}}


@dataclass(frozen=True)
class SearchOptions(Options):
    """What ``search`` explores and how it scores a candidate.

    Attributes:
        target_latency_ms / speedup: the latency budget of one forward on the example inputs,
            timed on this CPU at ``threads`` (exactly one of them).
        space: the genes: ``"depth"`` (which removable blocks go), ``"width"`` (one channel
            multiplier per stage, the containers of those blocks) and ``"rewrite"`` (which
            convs become a cheaper structure).
        budget: candidates evaluated in all (seeds included).
        population: candidates alive in the regularized evolution; parents are the best of
            ``tournament`` drawn from them.
        proxy: ``"kd"`` (distillation loss on held-out inputs after ``proxy_steps`` steps of
            distillation) or ``"output"`` (the same loss with no training: cheapest).
        proxy_steps / lr / batch_size: the short distillation of ``"kd"``.
        multipliers: the values a stage's width gene takes; a stage's channel ratio is the
            candidate's solved ratio times its multiplier (capped at ``max_ratio``).
        rewrites: ``{kind: options}`` of ``slimtorch.convert`` a rewrite gene applies.
        tolerance: a candidate within this share above the target still counts as meeting it.
    """

    target_latency_ms: float | None = None
    speedup: float | None = None
    threads: int = 1
    space: tuple[str, ...] = SPACES
    budget: int = 24
    population: int = 8
    tournament: int = 3
    proxy: str = "kd"
    proxy_steps: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    temperature: float = 1.0
    multipliers: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
    rewrites: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: dict(DEFAULT_REWRITES)
    )
    max_ratio: float = 0.85
    tolerance: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.target_latency_ms is None) == (self.speedup is None):
            raise ConfigError(
                "give the latency budget as exactly one of target_latency_ms= (ms of one "
                "forward on the example inputs) and speedup= (e.g. 2.0)."
            )
        for name, low in (("target_latency_ms", 0.0), ("speedup", 1.0)):
            value = getattr(self, name)
            if value is not None:
                check_number(name, value, low=low, low_open=True)
        object.__setattr__(self, "space", name_list("space", self.space))
        bad = [s for s in self.space if s not in SPACES]
        if bad or not self.space:
            raise ConfigError(
                f"space={list(self.space)!r} is invalid; choose from {list(SPACES)}, e.g. "
                "space=('depth', 'width')."
            )
        check_int("threads", self.threads, hint="1 stands for a single-core device")
        check_int("budget", self.budget, low=2, hint="candidates to evaluate, e.g. 24")
        check_int("population", self.population, low=2)
        check_int("tournament", self.tournament, low=1)
        check_int("proxy_steps", self.proxy_steps, low=0)
        check_int("batch_size", self.batch_size)
        check_int("seed", self.seed, low=0)
        if self.proxy not in PROXIES:
            raise ConfigError(f"proxy={self.proxy!r} is invalid; use 'kd' or 'output'.")
        if self.proxy == "kd" and self.proxy_steps == 0:
            raise ConfigError("proxy='kd' needs proxy_steps >= 1 (or use proxy='output').")
        check_number("lr", self.lr, low=0.0, low_open=True)
        check_number("temperature", self.temperature, low=0.0, low_open=True)
        check_number("max_ratio", self.max_ratio, low=0.0, high=1.0, low_open=True, high_open=True)
        check_number("tolerance", self.tolerance, low=0.0, high=1.0)
        mults = tuple(float(m) for m in self.multipliers)
        if not mults or any(not m > 0 for m in mults) or 1.0 not in mults:
            raise ConfigError(
                f"multipliers={self.multipliers!r} must be positive and include 1.0, e.g. "
                "(0.5, 1.0, 1.5)."
            )
        object.__setattr__(self, "multipliers", tuple(sorted(set(mults))))
        from ..convert import conversion_kinds

        for kind in self.rewrites:
            if kind not in conversion_kinds():
                raise ConfigError(
                    f"rewrites names {kind!r}, not a conversion; choose from "
                    f"{conversion_kinds()} (e.g. {{'low_rank': {{'rank': 0.5}}}})."
                )
        object.__setattr__(self, "rewrites", {k: dict(v) for k, v in sorted(self.rewrites.items())})
