"""``layers="auto"``: keep only rewrites that measurably lower the layer's latency on this CPU.

Each candidate layer is timed alone, before and after the rewrite, on its real input (captured
from the example inputs, so its shape is the one the model sees), at 1 thread and at all
threads, in interleaved runs (before, after, before, ...) so the machine's drift cancels. Each
side's *fastest* run is compared: on a shared machine interference only ever adds time, so
the minimum of many short runs is the least noisy estimate of a layer's cost (as ``timeit``
advises). A rewrite is kept only when it is at least ``min_speedup`` times faster at every
thread count; the others are reported with their timings.
"""

from __future__ import annotations

import torch

from .._forward import eval_mode
from ..measure.latency import fixed_threads
from ..measure.timing import interleaved_times
from .registry import LayerRewrite
from .result import SkippedLayer

__all__ = ["default_threads", "measure_layer", "select_faster"]

Latency = dict[int, tuple[float, float]]


def default_threads() -> list[int]:
    """1 thread (a small device) and all threads torch uses now."""
    return sorted({1, torch.get_num_threads()})


def measure_layer(
    rewrite: LayerRewrite,
    x: torch.Tensor,
    threads: list[int],
    rounds: int = 40,
    budget_s: float = 1.0,
) -> Latency:
    """Fastest of ``rounds`` interleaved runs of ``rewrite.before`` and ``.after``, in ms.

    Per thread count, timing stops early once ``budget_s`` has passed (after 6 rounds).

    Example:
        >>> rw = LayerRewrite("fc", torch.nn.Linear(64, 64), torch.nn.Linear(64, 8))
        >>> sorted(measure_layer(rw, torch.randn(4, 64), [1]))
        [1]
    """
    out: Latency = {}
    modules = (rewrite.before, rewrite.after)
    with eval_mode(rewrite.before), eval_mode(rewrite.after), torch.inference_mode():
        for t in threads:
            with fixed_threads(t):
                before, after = interleaved_times(
                    [lambda m=m: m(x) for m in modules], rounds=rounds, budget_s=budget_s
                )
            out[t] = (min(before) * 1e3, min(after) * 1e3)
    return out


def select_faster(
    rewrites: list[LayerRewrite],
    inputs: dict[str, torch.Tensor],
    threads: list[int],
    min_speedup: float = 1.05,
    rounds: int = 40,
) -> tuple[list[tuple[LayerRewrite, Latency]], list[SkippedLayer]]:
    """Splits rewrites into the ones faster at every thread count and the rest (with why).

    Args:
        rewrites: candidate rewrites.
        inputs: each layer's input, by layer name.
        threads: thread counts to time at.
        min_speedup: ``before / after`` must reach this at every thread count.
        rounds: interleaved runs per thread count.

    Returns:
        ``(kept, skipped)``: kept rewrites with their latencies, and skipped layers.
    """
    kept: list[tuple[LayerRewrite, Latency]] = []
    skipped: list[SkippedLayer] = []
    for rw in rewrites:
        latency = measure_layer(rw, inputs[rw.name], threads, rounds)
        slow = [(t, b, a) for t, (b, a) in latency.items() if b < a * min_speedup]
        if slow:
            why = ", ".join(f"best {b:.3f} -> {a:.3f} ms at {t} thread(s)" for t, b, a in slow)
            skipped.append(SkippedLayer(rw.name, f"not {min_speedup:g}x faster: {why}"))
        else:
            kept.append((rw, latency))
    return kept, skipped
