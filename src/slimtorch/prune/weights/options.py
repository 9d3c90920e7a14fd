"""Options of weight pruning (unstructured, N:M, rows, columns), validated up front."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..._options import Options
from ..._validate import check_fraction as _check_fraction
from ..._validate import check_number, suggest
from ...errors import ConfigError

__all__ = ["DEFAULT_SPARSITY", "Pattern", "WeightOptions", "parse_pattern"]

DEFAULT_SPARSITY = 0.8
SCOPES = ("layer", "global")
PATTERNS = ("unstructured", "rows", "cols", "2:4", "N:M")
_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


@dataclass(frozen=True)
class Pattern:
    """Which weights are zeroed together.

    Attributes:
        kind: ``unstructured`` (single weights), ``rows`` (output rows / output channels),
            ``cols`` (input columns / input channels) or ``nm`` (keep ``n`` of every ``m``
            consecutive weights along the input dimension).
        n / m: the N:M ratio; 0 for the other kinds.
    """

    kind: str
    n: int = 0
    m: int = 0

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.kind == "nm" else self.kind


def parse_pattern(text: str) -> Pattern:
    """Parses ``unstructured``, ``rows``, ``cols`` or an ``"n:m"`` string such as ``"2:4"``.

    Example:
        >>> parse_pattern("2:4")
        Pattern(kind='nm', n=2, m=4)
    """
    if not isinstance(text, str):
        raise ConfigError(f"pattern={text!r} is not a string; use one of {list(PATTERNS)}.")
    if text in ("unstructured", "rows", "cols"):
        return Pattern(text)
    match = _NM.match(text)
    if match is None:
        raise ConfigError(
            f"unknown pattern {text!r}; use 'unstructured', 'rows', 'cols' or an N:M string "
            f"such as '2:4'{suggest(text, PATTERNS)}."
        )
    n, m = int(match[1]), int(match[2])
    if not 1 <= n < m:
        raise ConfigError(
            f"pattern {text!r} is invalid: N:M keeps N of every M weights, so it needs "
            "1 <= N < M (e.g. '2:4' keeps 2 of every 4)."
        )
    return Pattern("nm", n, m)


def check_fraction(name: str, value: Any, what: str = "fraction of weights to zero") -> float:
    """Returns ``value`` as a float in [0, 1], or raises ConfigError naming it."""
    return _check_fraction(name, value, what)


@dataclass(frozen=True)
class WeightOptions(Options):
    """What ``prune_weights_`` zeros and how it ranks weights.

    Attributes:
        sparsity: fraction of weights to zero, in [0, 1]: one float for every layer (or for
            the whole model with ``scope="global"``), or a dict of per-layer fractions by
            module name (only those layers are pruned). ``None`` means 0.8, or ``1 - N/M``
            for an N:M pattern.
        scope: ``layer`` ranks weights within each layer; ``global`` ranks all prunable weights
            together (use ``criterion="lamp"`` so that layers of different scale compare).
        criterion: ``magnitude``, ``lamp`` (Lee et al. 2021) or ``random``; see
            ``weights_masks.WEIGHT_CRITERIA`` to add your own.
        pattern: ``unstructured``, ``rows``, ``cols`` or ``"N:M"`` (e.g. ``"2:4"``).
        ignore: module names left dense; a name covers the modules under it.
        threshold: instead of a sparsity, zero weights with ``|w| < threshold`` (for rows and
            columns: whose root-mean-square is below it). Magnitude criterion only.
    """

    sparsity: float | Mapping[str, float] | None = None
    scope: str = "layer"
    criterion: str = "magnitude"
    pattern: str = "unstructured"
    ignore: tuple[str, ...] = ()
    threshold: float | None = None
    per_layer: Mapping[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from .criteria import WEIGHT_CRITERIA

        pat = parse_pattern(self.pattern)
        if isinstance(self.ignore, str):
            raise ConfigError(
                f"ignore={self.ignore!r} is a string; pass a list of module names, "
                f"e.g. ignore=[{self.ignore!r}]."
            )
        object.__setattr__(self, "ignore", tuple(self.ignore))
        if self.scope not in SCOPES:
            raise ConfigError(
                f"scope={self.scope!r} is invalid; use 'layer' (rank within each layer) or "
                f"'global' (rank across the model){suggest(self.scope, SCOPES)}."
            )
        if self.criterion not in WEIGHT_CRITERIA:
            raise ConfigError(
                f"unknown criterion {self.criterion!r}; choose one of {sorted(WEIGHT_CRITERIA)}"
                f"{suggest(self.criterion, WEIGHT_CRITERIA)}."
            )
        per_layer: dict[str, float] = {}
        if isinstance(self.sparsity, Mapping):
            per_layer = {k: check_fraction(f"sparsity[{k!r}]", v) for k, v in self.sparsity.items()}
            if self.scope == "global":
                raise ConfigError(
                    "a per-layer sparsity dict fixes each layer's fraction, so it cannot be "
                    "combined with scope='global'; use scope='layer' or one float."
                )
        elif self.sparsity is not None:
            check_fraction("sparsity", self.sparsity)
        object.__setattr__(self, "per_layer", per_layer)
        if self.threshold is not None:
            self._check_threshold(pat)
        if pat.kind == "nm" and self.sparsity is not None:
            implied = 1 - pat.n / pat.m
            if per_layer or not math.isclose(float(self.sparsity), implied):
                raise ConfigError(
                    f"pattern {self.pattern!r} fixes the sparsity at {implied:g} (keeps "
                    f"{pat.n} of every {pat.m}); drop sparsity={self.sparsity!r} or use "
                    "pattern='unstructured'."
                )

    def _check_threshold(self, pat: Pattern) -> None:
        t = self.threshold
        check_number("threshold", t, low=0, hint="weights with |w| below it are zeroed")
        if self.sparsity is not None:
            raise ConfigError(
                f"both threshold={t!r} and sparsity={self.sparsity!r} were given; pass one of them."
            )
        if self.criterion != "magnitude" or pat.kind == "nm":
            raise ConfigError(
                f"threshold={t!r} compares magnitudes, so it needs criterion='magnitude' and a "
                f"pattern other than N:M (got criterion={self.criterion!r}, "
                f"pattern={self.pattern!r})."
            )

    @property
    def parsed_pattern(self) -> Pattern:
        return parse_pattern(self.pattern)

    @property
    def target(self) -> float:
        """The uniform (or global) fraction to zero when no per-layer dict or threshold is set."""
        pat = self.parsed_pattern
        if pat.kind == "nm":
            return 1 - pat.n / pat.m
        if isinstance(self.sparsity, int | float):
            return float(self.sparsity)
        return DEFAULT_SPARSITY

    def replace(self, **changes: Any) -> WeightOptions:
        """A copy with some fields changed (validated again)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        fields |= changes
        return WeightOptions(**fields)
