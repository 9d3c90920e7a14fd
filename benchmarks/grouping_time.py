"""Trace + channel grouping time: slimtorch vs Torch-Pruning's DependencyGraph, same run.

For each model, median of ``--repeats`` warm runs (after one untimed run; the two tools
interleaved run by run) of slimtorch's
``trace`` + ``build_groups`` (what ``prune_channels`` does before it scores channels: a
shape-only meta trace) and of Torch-Pruning's ``DependencyGraph().build_dependency`` +
``get_all_groups`` (what its pruners do). Deep copies are counted alike: both columns
without one, then both with ``copy.deepcopy`` of the model inside the timing (what
``prune_channels`` does to leave its input untouched; Torch-Pruning prunes in place). Every
run starts from a fresh copy of the model, so neither tool sees what an earlier run left on
it (Torch-Pruning run again and again on one model object slows down several times over),
and runs with the garbage collector paused, as ``timeit`` does.

Run: python benchmarks/grouping_time.py [--models resnet50,mobilenet_v2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import time

import torch

import slimtorch as st
from slimtorch.graph.groups import build_groups
from slimtorch.graph.trace import needs_grad, trace
from slimtorch.report.table import format_table

DEFAULT = "resnet50,mobilenet_v2,vit_b_16,densenet121"


def ours(model: torch.nn.Module, x: torch.Tensor, copy_first: bool) -> int:
    work = copy.deepcopy(model) if copy_first else model
    return len(build_groups(work, trace(work, x, grad=needs_grad(work), meta=True)).groups)


def torch_pruning(model: torch.nn.Module, x: torch.Tensor, copy_first: bool) -> int:
    import torch_pruning as tp

    work = copy.deepcopy(model) if copy_first else model
    graph = tp.DependencyGraph().build_dependency(work, example_inputs=x)
    return len(list(graph.get_all_groups()))


def medians_s(model, x, repeats: int, copy_first: bool) -> tuple[float, float, int, int]:
    """Both tools, interleaved run by run so that drift of the machine hits both alike. Each
    run starts from a fresh copy of the model (made outside the timing, or inside it with
    ``copy_first``), so that no tool sees what an earlier run left on it, and runs with the
    garbage collector paused, as ``timeit`` does."""
    na = ours(copy.deepcopy(model), x, copy_first)  # warm-up
    nb = torch_pruning(copy.deepcopy(model), x, copy_first)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((ours, times[0]), (torch_pruning, times[1])):
            work = model if copy_first else copy.deepcopy(model)
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter()
                fn(work, x, copy_first)
                out.append(time.perf_counter() - start)
            finally:
                gc.enable()
    return statistics.median(times[0]), statistics.median(times[1]), na, nb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=DEFAULT)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.models.split(","):
        model = st.load_model(f"torchvision:{name}").eval()
        x = torch.randn(1, 3, 224, 224)
        row = [name]
        for copy_first in (False, True):
            a, b, na, nb = medians_s(model, x, args.repeats, copy_first)
            row += [f"{a:.3f}", f"{b:.3f}", f"{a / b:.2f}"]
        rows.append((*row[:1], na, nb, *row[1:]))
    headers = (
        "model", "groups", "TP groups",
        "slimtorch s", "TP s", "ratio", "+copy: slimtorch s", "TP s", "ratio",
    )  # fmt: skip
    title = f"trace + grouping, median of {args.repeats} warm runs, 1 thread, 1x3x224x224"
    print(format_table(headers, rows, title))


if __name__ == "__main__":
    main()
