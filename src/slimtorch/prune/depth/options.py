"""Options of depth pruning (``prune_layers``), validated up front."""

from __future__ import annotations

from dataclasses import dataclass

from ..._options import Options
from ..._validate import check_int, name_list
from ...errors import ConfigError

__all__ = ["SCORES", "LayerOptions"]

SCORES = ("block_influence", "angular", "loss")


@dataclass(frozen=True)
class LayerOptions(Options):
    """Which blocks ``prune_layers`` removes and how it ranks them.

    Attributes:
        n: how many blocks to remove.
        target_macs: instead of ``n``, the MACs to reach (the fewest blocks that reach it).
        target_latency_ms: instead, the latency of one forward on the example inputs to
            reach, measured on this CPU at ``threads``.
        speedup: instead, how many times faster than the original, measured the same way.
        threads: intra-op threads of those timings.
        score: ``"block_influence"`` (ShortGPT: 1 - cos(input, output) of each block),
            ``"angular"`` (the angular distance between the input of ``n`` consecutive
            blocks and the output of the last: Gromov et al.) or ``"loss"`` (how far the
            model's output moves with the block skipped). Lowest goes first.
        blocks: the candidate blocks by name; default the removable blocks found.
        restore_receptive_field: dilate the nearest remaining block's convs so the field
            the removed blocks added is kept.
    """

    n: int | None = None
    target_macs: int | None = None
    target_latency_ms: float | None = None
    speedup: float | None = None
    threads: int = 1
    score: str = "block_influence"
    blocks: tuple[str, ...] | None = None
    restore_receptive_field: bool = False

    def __post_init__(self) -> None:
        given = [
            k for k in ("n", "target_macs", "target_latency_ms", "speedup") if getattr(self, k)
        ]
        if len(given) > 1:
            raise ConfigError(
                f"give one of n, target_macs, target_latency_ms, speedup; not {given}"
            )
        if not given and self.blocks is None:
            raise ConfigError(
                "say how deep to cut: n=2 (blocks to remove), target_macs=, "
                "target_latency_ms= or speedup=, or name the blocks with blocks=[...]."
            )
        if self.n is not None:
            check_int("n", self.n, hint="the number of blocks to remove")
        if self.target_macs is not None:
            check_int("target_macs", self.target_macs, hint="e.g. int(report.macs * 0.7)")
        for name, low in (("target_latency_ms", 0.0), ("speedup", 1.0)):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not value > low
            ):
                raise ConfigError(f"{name}={value!r} is invalid; give a number > {low:g}.")
        check_int("threads", self.threads, hint="1 stands for a single-core device")
        if self.score not in SCORES:
            raise ConfigError(f"score={self.score!r} is unknown; choose one of {list(SCORES)}.")
        if not isinstance(self.restore_receptive_field, bool):
            raise ConfigError(
                f"restore_receptive_field={self.restore_receptive_field!r} must be True or False."
            )
        if self.blocks is not None:
            object.__setattr__(self, "blocks", name_list("blocks", self.blocks))
