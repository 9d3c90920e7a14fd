"""The one timing primitive: single calls, interleaved across candidates, after warm-up.

``benchmark``, ``compare``, ``convert(layers="auto")``, ``sparsify_for_inference`` and the
scripts in ``benchmarks/`` all time through ``interleaved_times``. Each call is timed on its
own with ``time.perf_counter`` (so medians, percentiles and minima are available), and the
candidates run in turn (A B A B ...) so that the machine's drift hits all of them alike.
``torch.utils.benchmark.Timer`` is not used for the loop: its ``timeit`` adds two hidden
warm-up runs per call and ``blocked_autorange`` reports block means, not single runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .._validate import check_int

__all__ = ["interleaved_times"]


def interleaved_times(
    fns: Sequence[Callable[[], Any]],
    *,
    warmup: int = 3,
    rounds: int = 20,
    per_round: int = 1,
    min_time_s: float = 0.0,
    budget_s: float | None = None,
    min_rounds: int = 6,
) -> list[list[float]]:
    """Seconds of every timed call of each function, in the order given.

    Args:
        fns: zero-argument callables (a forward pass each); called in turn every round.
        warmup: untimed calls of each function first (allocator, oneDNN primitive caches).
        rounds: rounds to run; each round calls every function ``per_round`` times.
        per_round: consecutive calls of one function within a round.
        min_time_s: keep adding rounds until the first function's timed total reaches it.
        budget_s: stop early once this much time has passed, after ``min_rounds`` rounds.
        min_rounds: rounds always run, whatever the budget.

    Returns:
        One list of call durations (seconds) per function.

    Example:
        >>> times = interleaved_times([lambda: sum(range(100))], rounds=3)
        >>> len(times[0])
        3
    """
    check_int("warmup", warmup, low=0)
    check_int("rounds", rounds)
    check_int("per_round", per_round)
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    began = time.perf_counter()
    n = 0
    while n < rounds or sum(times[0]) < min_time_s:
        for i, fn in enumerate(fns):
            for _ in range(per_round):
                start = time.perf_counter()
                fn()
                times[i].append(time.perf_counter() - start)
        n += 1
        if budget_s is not None and n >= min_rounds and time.perf_counter() - began > budget_s:
            break
    return times
