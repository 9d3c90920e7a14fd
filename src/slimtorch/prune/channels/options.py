"""Options of channel pruning, validated up front."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..._options import Options
from ..._validate import check_fraction, check_int, check_names, suggest
from ...errors import ConfigError

__all__ = ["ChannelOptions", "check_module_names", "simd_channels"]


def simd_channels() -> int:
    """Channels per SIMD register of this CPU in float32: 16 with AVX-512, 8 with AVX2, else 4.

    oneDNN blocks channels by this width, so a conv with 57 output channels costs what one
    with 64 costs on AVX-512 (``benchmarks/channel_multiple.py``): rounding kept channels up to
    it keeps accuracy at no latency cost.
    """
    import torch

    cap = torch.backends.cpu.get_cpu_capability()
    return 16 if "AVX512" in cap else 8 if "AVX2" in cap else 4


ALLOCATIONS = ("latency", "uniform")
SCOPES = ("local", "global")
FACTORS = ("outer", "inner")


@dataclass(frozen=True)
class ChannelOptions(Options):
    """What ``prune_channels`` removes and how it ranks channels.

    Attributes:
        ratio: fraction of each group's channels to remove (``scope="local"``) or of all
            prunable channels (``"global"``), in [0, 1).
        target_macs: instead of a ratio, the MACs to reach (the ratio is solved for).
        target_latency_ms: instead of a ratio, the latency of one forward on the example
            inputs to reach, measured on this CPU at ``threads`` (the ratio is solved for).
        speedup: instead of a ratio, how many times faster than the original to get,
            measured the same way.
        threads: intra-op threads for ``target_latency_ms`` / ``speedup`` timings (1 stands
            for a single-core low-power device).
        importance: ``l1``, ``l2``, ``bn_scale``, ``taylor``, ``fpgm`` or ``random``.
        ratios: per-module ratios by module name, overriding ``ratio`` for the groups those
            modules produce.
        ignore: modules whose output channels are kept.
        round_to: kept channel counts are rounded up to a multiple of this where a group has at
            least ``4 * round_to`` channels; ``"auto"`` uses ``simd_channels()`` (see
            docs/pruning.md for why).
        max_ratio: never remove more than this fraction of one group (global scope).
        factor: where a dim is a product of prunable factors (heads x head_dim, groups x
            channels per group), ``"outer"`` removes whole heads or groups, ``"inner"``
            shrinks every head or group alike (head_dim, channels per group) and keeps
            their number.
        compensate: refit the layers whose inputs shrank from calibration data.
        allocation: for a latency target, how the cuts are spread: ``"uniform"`` (one
            ratio for all, bisected on measured time) or ``"latency"`` (each group cut where
            it costs the least importance per millisecond saved, from layer times measured
            on this CPU: HALP-style).
    """

    ratio: float | None = 0.5
    target_macs: int | None = None
    target_latency_ms: float | None = None
    speedup: float | None = None
    threads: int = 1
    importance: str = "l1"
    scope: str = "local"
    ratios: Mapping[str, float] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()
    round_to: int | str | None = "auto"
    max_ratio: float = 0.9
    factor: str = "outer"
    compensate: bool = False
    allocation: str = "uniform"

    def __post_init__(self) -> None:
        from .importance import IMPORTANCES

        targets = [
            n
            for n in ("target_macs", "target_latency_ms", "speedup")
            if getattr(self, n) is not None
        ]
        if len(targets) > 1:
            raise ConfigError(f"give one target, not {' and '.join(targets)}.")
        for name in ("target_latency_ms", "speedup"):
            value = getattr(self, name)
            low = 1.0 if name == "speedup" else 0.0
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not value > low
            ):
                raise ConfigError(
                    f"{name}={value!r} is invalid; give a number > {low:g} "
                    f"(e.g. {'2.0' if name == 'speedup' else '8.5'})."
                )
        check_int("threads", self.threads, hint="1 stands for a single-core device")
        if not targets:
            _check_ratio("ratio", self.ratio)
        elif self.target_macs is not None and (
            not isinstance(self.target_macs, int) or self.target_macs <= 0
        ):
            raise ConfigError(
                f"target_macs={self.target_macs!r} is invalid; give a positive integer such as "
                "int(report.macs * 0.5)."
            )
        for name, r in self.ratios.items():
            _check_ratio(f"ratios[{name!r}]", r)
        if self.importance not in IMPORTANCES:
            raise ConfigError(
                f"unknown importance {self.importance!r}; choose one of {sorted(IMPORTANCES)}"
                + suggest(self.importance, IMPORTANCES)
            )
        if self.scope not in SCOPES:
            raise ConfigError(f"scope={self.scope!r} is invalid; use 'local' or 'global'.")
        if self.round_to == "auto":
            object.__setattr__(self, "round_to", simd_channels())
        if self.round_to is not None:
            check_int("round_to", self.round_to, hint="'auto' or None")
        if self.factor not in FACTORS:
            raise ConfigError(
                f"factor={self.factor!r} is invalid; use 'outer' (whole heads or groups) or "
                "'inner' (head_dim, channels per group)."
            )
        if not isinstance(self.compensate, bool):
            raise ConfigError(f"compensate={self.compensate!r} must be True or False.")
        if self.allocation not in ALLOCATIONS:
            raise ConfigError(
                f"allocation={self.allocation!r} is invalid; use 'latency' (cuts where they "
                "save the most time per importance lost) or 'uniform' (one ratio for all)."
            )
        if not 0 < self.max_ratio < 1:
            raise ConfigError(f"max_ratio={self.max_ratio!r} must be in (0, 1).")


def _check_ratio(name: str, value: Any) -> None:
    check_fraction(name, value, "fraction of channels to remove", high_open=True)


check_module_names = check_names
