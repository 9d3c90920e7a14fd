"""Rank options shared by the factorizing conversions, and the checks behind them.

A rank is an ``int`` (that many terms), a ``float`` in (0, 1] (that share of the full rank,
rounded up) or ``"full"`` (exact).
"""

from __future__ import annotations

from typing import Any

from .._validate import check_number, is_number
from ..errors import ConfigError
from .factorize import rank_for_ratio

__all__ = ["RankSpec", "check_fraction", "check_rank", "resolve_rank"]

RankSpec = int | float | str


def check_rank(value: Any, name: str = "rank") -> None:
    """Raises ``ConfigError`` unless ``value`` is an int >= 1, a float in (0, 1] or "full"."""
    if value == "full" and isinstance(value, str):
        return
    if is_number(value) and isinstance(value, int) and value >= 1:
        return
    if isinstance(value, float) and 0.0 < value <= 1.0:
        return
    raise ConfigError(
        f"{name}={value!r} is invalid; use an int >= 1 (terms kept), a float in (0, 1] "
        "(share of the full rank) or 'full' (exact)."
    )


def check_fraction(value: Any, name: str) -> None:
    """Raises ``ConfigError`` unless ``value`` is a float in (0, 1]."""
    check_number(name, value, low=0, low_open=True, high=1, hint="e.g. 0.9")


def resolve_rank(spec: RankSpec, full: int, layer: str, what: str) -> int:
    """The integer rank for one layer whose full rank is ``full`` (``what`` explains it)."""
    if spec == "full":
        return full
    if isinstance(spec, float):
        return rank_for_ratio(spec, full)
    if spec > full:
        raise ConfigError(
            f"rank={spec} is larger than possible for layer {layer!r}: at most {full} "
            f"({what}). Use rank='full' for the exact rewrite, an int <= {full}, or a ratio "
            "such as rank=0.5."
        )
    return int(spec)
