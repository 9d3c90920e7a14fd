"""Where the time goes: the latency of each leaf module in one forward, by forward hooks.

Each leaf module (one with no children, and parameters or a known cost: convs, linears,
norms, pools, activations) is timed between its forward pre-hook and its forward hook over
``repeats`` forwards after warm-up; the median per module is reported. Hooks add a few
microseconds per module, so shares are what to read, not absolute sums.

Example:
    >>> rows = layer_times(torch.nn.Sequential(torch.nn.Linear(64, 64)), torch.randn(8, 64))
    >>> rows[0][0]
    '0'
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from .._forward import Inputs, check_model, check_threads, eval_mode, run_forward
from .._validate import check_int
from .latency import fixed_threads

__all__ = ["layer_times"]


def layer_times(
    model: nn.Module,
    example_inputs: Inputs,
    threads: int | None = 1,
    *,
    repeats: int = 10,
    warmup: int = 2,
) -> list[tuple[str, float]]:
    """``[(module name, median ms)]`` for each leaf module, slowest first."""
    check_model(model)
    n_threads = check_threads(threads)
    check_int("repeats", repeats)
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(m.children())]
    times: dict[str, list[float]] = {n: [] for n, _ in leaves}
    started: dict[str, float] = {}
    handles = []
    for name, module in leaves:

        def pre(_m, _args, name=name):
            started[name] = time.perf_counter()

        def post(_m, _args, _out, name=name):
            if name in started:
                times[name].append(time.perf_counter() - started.pop(name))

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    try:
        with eval_mode(model), torch.inference_mode(), fixed_threads(n_threads):
            for _ in range(warmup):
                run_forward(model, example_inputs)
            for t in times.values():
                t.clear()
            for _ in range(repeats):
                run_forward(model, example_inputs)
    finally:
        for h in handles:
            h.remove()
    rows = [(n, statistics.median(t) * 1e3) for n, t in times.items() if t]
    return sorted(rows, key=lambda r: -r[1])
