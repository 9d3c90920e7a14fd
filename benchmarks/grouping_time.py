"""Trace + channel grouping time: slimtorch vs Torch-Pruning's DependencyGraph, same run.

For each model, median of ``--repeats`` warm runs (after one untimed run) of: a deep copy of
the model, then slimtorch's ``trace`` + ``build_groups`` (what ``prune_channels`` does before
it scores channels), or Torch-Pruning's ``DependencyGraph().build_dependency`` +
``get_all_groups`` (what its pruners do). The copy is inside the timing for both alike.

Run: python benchmarks/grouping_time.py [--models resnet50,mobilenet_v2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import slimtorch as st
from slimtorch.graph.groups import build_groups
from slimtorch.graph.trace import trace
from slimtorch.report.table import format_table

DEFAULT = "resnet50,mobilenet_v2,vit_b_16,densenet121"


def ours(model: torch.nn.Module, x: torch.Tensor) -> int:
    work = copy.deepcopy(model)
    meta = sum(p.numel() for p in work.parameters()) > 20_000_000  # as prune_channels does
    return len(build_groups(work, trace(work, x, grad=True, meta=meta)).groups)


def torch_pruning(model: torch.nn.Module, x: torch.Tensor) -> int:
    import torch_pruning as tp

    work = copy.deepcopy(model)
    graph = tp.DependencyGraph().build_dependency(work, example_inputs=x)
    return len(list(graph.get_all_groups()))


def median_s(fn, model, x, repeats: int) -> tuple[float, int]:
    n = fn(model, x)  # warm-up (and the group count)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(model, x)
        times.append(time.perf_counter() - start)
    return statistics.median(times), n


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
        a, na = median_s(ours, model, x, args.repeats)
        b, nb = median_s(torch_pruning, model, x, args.repeats)
        rows.append((name, f"{a:.3f}", na, f"{b:.3f}", nb, f"{a / b:.2f}"))
    headers = ("model", "slimtorch s", "groups", "Torch-Pruning s", "groups", "ratio")
    print(format_table(headers, rows, f"trace + grouping, median of {args.repeats}, 1 thread"))


if __name__ == "__main__":
    main()
