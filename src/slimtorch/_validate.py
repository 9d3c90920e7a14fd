"""Argument checks shared by every public function: numbers, fractions, module names.

Each raises ``ConfigError`` naming the argument, the value and what to pass instead. Booleans
are never numbers here (``True`` is an ``int`` in Python, never a sensible ratio).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ._registry import suggest
from .errors import ConfigError

__all__ = [
    "check_finite",
    "check_fraction",
    "check_int",
    "check_names",
    "check_number",
    "is_number",
    "name_list",
    "suggest",
]


def is_number(value: Any) -> bool:
    """True for ints and floats that are not bools and not NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not (isinstance(value, float) and math.isnan(value))


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> float:
    """Returns ``value`` as a float if it is a number within the bounds, else raises."""
    ok = is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = _bounds(low, high, low_open, high_open)
        raise ConfigError(
            f"{name}={value!r} is invalid; use a number{' ' + bounds if bounds else ''}"
            f"{', ' + hint if hint else ''}."
        )
    return float(value)


def check_int(name: str, value: Any, *, low: int = 1, hint: str = "") -> int:
    """Returns ``value`` if it is an int (not a bool) >= ``low``, else raises."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(
            f"{name}={value!r} is invalid; use an integer >= {low}{', ' + hint if hint else ''}."
        )
    return value


def check_fraction(
    name: str, value: Any, what: str = "fraction of weights to zero", *, high_open: bool = False
) -> float:
    """Returns ``value`` as a float in [0, 1] (or [0, 1) with ``high_open``), else raises."""
    ok = is_number(value) and value >= 0 and (value < 1 if high_open else value <= 1)
    if not ok:
        interval = "[0, 1)" if high_open else "[0, 1]"
        example = "0.5 removes half" if high_open else "0.9 zeros 90%"
        raise ConfigError(
            f"{name}={value!r} is outside {interval}; it is the {what}, e.g. {example}."
        )
    return float(value)


def name_list(what: str, names: Any) -> tuple[str, ...]:
    """``names`` as a tuple of module names; a lone string is refused, never split into
    characters (``ignore="conv1"`` would otherwise mean ``["c", "o", "n", ...]``)."""
    if isinstance(names, str):
        raise ConfigError(
            f"{what}={names!r} is a string; pass a list of module names, e.g. {what}=[{names!r}]."
        )
    if isinstance(names, Iterable):
        out = tuple(names)
        if all(isinstance(n, str) for n in out):
            return out
    raise ConfigError(f"{what}={names!r} is not a list of module names (strings).")


def check_finite(model: Any, what: str) -> None:
    """Raises ConfigError naming the first parameter that holds NaN or infinity: scores
    computed from it would be meaningless, so nothing is pruned silently by them."""
    import torch

    for name, p in model.named_parameters():
        if p.is_floating_point() and not p.is_meta and not bool(torch.isfinite(p).all()):
            bad = int((~torch.isfinite(p)).sum())
            raise ConfigError(
                f"{what}: parameter {name!r} holds {bad} NaN or infinite values; pruning scores "
                "from it would be meaningless. Fix the model (or reinitialize that layer) first."
            )


def check_names(names: Iterable[str], modules: Iterable[str], what: str) -> None:
    """Raises ConfigError for names that are not modules of the model, suggesting close ones.

    A lone string is refused (see ``name_list``), never read as its characters."""
    name_list(what, names)
    known = list(modules)
    known_set = set(known)
    for name in names:
        if name not in known_set:
            raise ConfigError(
                f"{what} names module {name!r}, which the model does not have"
                + suggest(name, known)
                + "; use names from model.named_modules()."
            )
