"""Argument checks shared by the building blocks (pairs, JSON-friendly configs)."""

from __future__ import annotations

from typing import Any

from .._validate import check_int
from ..errors import ConfigError

__all__ = ["check_positive", "json_pair", "pair"]


def pair(value: int | tuple[int, ...] | list[int], name: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 5)`` stays; anything else raises ``ConfigError``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int) for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise ConfigError(f"{name}={value!r} is invalid; use an int or a pair of ints such as (3, 3).")


def json_pair(value: Any) -> Any:
    """A config value as JSON data: tuples become lists, strings stay."""
    return list(value) if isinstance(value, tuple | list) else value


def check_positive(**values: int) -> None:
    """Raises ``ConfigError`` naming the first value that is not an int >= 1."""
    for name, v in values.items():
        check_int(name, v)
