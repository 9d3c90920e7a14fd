"""Options of channel pruning, validated up front."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

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


SCOPES = ("local", "global")


@dataclass(frozen=True)
class ChannelOptions:
    """What ``prune_channels`` removes and how it ranks channels.

    Attributes:
        ratio: fraction of each group's channels to remove (``scope="local"``) or of all
            prunable channels (``"global"``), in [0, 1).
        target_macs: instead of a ratio, the MACs to reach (the ratio is solved for).
        importance: ``l1``, ``l2``, ``bn_scale``, ``taylor``, ``fpgm`` or ``random``.
        ratios: per-module ratios by module name, overriding ``ratio`` for the groups those
            modules produce.
        ignore: modules whose output channels are kept.
        round_to: kept channel counts are rounded up to a multiple of this where a group has at
            least ``4 * round_to`` channels; ``"auto"`` uses ``simd_channels()`` (see
            docs/pruning.md for why).
        max_ratio: never remove more than this fraction of one group (global scope).
    """

    ratio: float | None = 0.5
    target_macs: int | None = None
    importance: str = "l1"
    scope: str = "local"
    ratios: Mapping[str, float] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()
    round_to: int | str | None = "auto"
    max_ratio: float = 0.9

    def __post_init__(self) -> None:
        from .importance import IMPORTANCES

        if self.target_macs is None:
            _check_ratio("ratio", self.ratio)
        elif not isinstance(self.target_macs, int) or self.target_macs <= 0:
            raise ConfigError(
                f"target_macs={self.target_macs!r} is invalid; give a positive integer such as "
                "int(report.macs * 0.5)."
            )
        for name, r in self.ratios.items():
            _check_ratio(f"ratios[{name!r}]", r)
        if self.importance not in IMPORTANCES:
            raise ConfigError(
                f"unknown importance {self.importance!r}; choose one of {sorted(IMPORTANCES)}"
                + _close(self.importance, IMPORTANCES)
            )
        if self.scope not in SCOPES:
            raise ConfigError(f"scope={self.scope!r} is invalid; use 'local' or 'global'.")
        if self.round_to == "auto":
            object.__setattr__(self, "round_to", simd_channels())
        if self.round_to is not None and (
            isinstance(self.round_to, bool)
            or not isinstance(self.round_to, int)
            or self.round_to < 1
        ):
            raise ConfigError(
                f"round_to={self.round_to!r} is invalid; use a positive integer, 'auto' or None."
            )
        if not 0 < self.max_ratio < 1:
            raise ConfigError(f"max_ratio={self.max_ratio!r} must be in (0, 1).")


def _check_ratio(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(
            f"{name}={value!r} is outside [0, 1); it is the fraction of channels to remove, "
            "e.g. 0.5 removes half."
        )


def _close(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def check_module_names(names: Iterable[str], modules: Iterable[str], what: str) -> None:
    """Raises ConfigError for names that are not modules of the model, suggesting close ones."""
    known = list(modules)
    known_set = set(known)
    for name in names:
        if name not in known_set:
            raise ConfigError(
                f"{what} names module {name!r}, which the model does not have"
                + _close(name, known)
                + "; use names from model.named_modules()."
            )
