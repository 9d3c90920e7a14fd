"""How well the per-layer latency table predicts whole pruned models on this CPU.

For each model: a ``LatencyModel`` is calibrated on the unpruned model as ``prune_channels``
returns it at ratio 0 (one real timing; twins swapped in, as in every pruned model), then
``--prunings`` random prunings are made (each prunable group gets, with probability 0.7, a
ratio drawn uniformly from [0, 0.8], ``prune_channels(ratios=...)``) and each is predicted from
the table and timed for real (``st.benchmark``, median). The table prints the mean, median and
largest relative error |predicted - measured| / measured, the mean error of the alternative
"scaled" predictor (the table's sum times the reference's measured / table ratio, instead of
the table plus the reference's rest scaled by activation volume), the table's size and the
time spent building it. Time it alone: nothing else may run.

Run: python benchmarks/latency_prediction.py [--models resnet50,mobilenet_v2,vit_b_16]
     [--prunings 50] [--threads 1] [--size 224]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

import slimtorch as st
from slimtorch.budget import LatencyModel, LatencyTable
from slimtorch.budget.latency import layer_shapes
from slimtorch.report.table import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,mobilenet_v2,vit_b_16")
    parser.add_argument("--prunings", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    rows = []
    for name in args.models.split(","):
        model = st.load_model(f"torchvision:{name}").eval()
        x = torch.randn(1, 3, args.size, args.size)
        start = time.perf_counter()
        table = LatencyTable(threads=args.threads)
        # the reference is the model as pruning returns it: at ratio 0 the same function, with
        # nn.MultiheadAttention swapped for its twin (separate q/k/v linears), as in every
        # pruned model
        unpruned = st.prune_channels(model, x, 0.0)
        lm = LatencyModel(table, unpruned.model, x)
        groups = unpruned.plan["groups"]
        producers = [g["modules"][0] for g in groups]
        rng = random.Random(0)
        errors, scaled_errors = [], []
        for _ in range(args.prunings):
            ratios = {n: rng.uniform(0, 0.8) for n in producers if rng.random() < 0.7}
            pruned = st.prune_channels(model, x, 0.0, ratios=ratios).model
            predicted = lm.predict_ms(pruned)
            measured = st.benchmark(pruned, x, threads=args.threads, repeats=15).median_ms
            errors.append(abs(predicted - measured) / measured)
            # the alternative: the table scaled by the reference's measured/table ratio
            scaled = table.layers_ms(layer_shapes(pruned, x)) * lm.reference_ms / lm.layers_ms
            scaled_errors.append(abs(scaled - measured) / measured)
        seconds = time.perf_counter() - start
        rows.append((name, f"{lm.reference_ms:.2f}", len(errors),
                     f"{100 * statistics.mean(errors):.1f}%",
                     f"{100 * statistics.median(errors):.1f}%", f"{100 * max(errors):.1f}%",
                     f"{100 * statistics.mean(scaled_errors):.1f}%",
                     len(table.entries), f"{seconds:.0f}"))  # fmt: skip
        print(*rows[-1], flush=True)
    headers = ("model", "original ms", "prunings", "mean err", "median err", "max err",
               "scaled: mean err", "table shapes", "s")  # fmt: skip
    title = f"latency prediction vs measurement, {args.threads} thread(s), {args.size}x{args.size}"
    print(format_table(headers, rows, title))


if __name__ == "__main__":
    main()
