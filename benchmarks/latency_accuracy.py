"""Accuracy at equal measured latency: latency-allocated vs uniform (MAC-style) pruning, each
with and without compensation, before and after the same short fine-tuning.

For scikit-learn's digits and MNIST-1D, the small CNNs of ``recovery.py`` are trained, then
pruned to ``speedup=1.5`` and ``2`` measured on this CPU at 1 thread on a batch of 256 test inputs:
``allocation="uniform"`` (one ratio for every group, bisected on measured time: what a MAC
target gives, moved to the latency) and ``allocation="latency"`` (cuts where they lose the
least importance per millisecond, from the layers' times measured at a grid of widths). Each
with and without ``compensate=True`` (4 calibration batches of 64 training inputs), then
distilled from the unpruned model for the same steps (``recovery.py``'s settings). The measured
speed-up of each returned model is timed again here, interleaved with the original. Test
accuracy (%), mean over seeds. One table.

Run: python benchmarks/latency_accuracy.py [--seeds 2] [--epochs 1]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from recovery import KD, SETS, TRAIN
from slimtorch import analyze, finetune, prune_channels
from slimtorch.measure.latency import forward_fn
from slimtorch.measure.timing import interleaved_times
from slimtorch.report.table import format_table
from slimtorch.train import accuracy

VARIANTS = [("uniform", False), ("uniform", True), ("latency", False), ("latency", True)]


def speedup(model: torch.nn.Module, reference: torch.nn.Module, x: torch.Tensor) -> float:
    runs = [forward_fn(m.eval(), x) for m in (reference, model)]
    with torch.inference_mode():
        ref, new = interleaved_times(runs, warmup=5, rounds=31)
    return statistics.median(ref) / statistics.median(new)


def run(name: str, seed: int, epochs: int) -> dict[tuple, dict[str, float]]:
    load, factory, _, teacher_epochs = SETS[name]
    train, test = load("train"), load("test")
    torch.manual_seed(seed)
    teacher = finetune(factory(), train, epochs=teacher_epochs, seed=seed, **TRAIN).model.eval()
    calib = [torch.stack([train[i][0] for i in range(b * 64, (b + 1) * 64)]) for b in range(4)]
    x = torch.stack([test[i][0] for i in range(256)])
    macs = analyze(teacher, x).macs
    out = {("before",): {"acc": 100 * accuracy(teacher, test)}}
    for target in (1.5, 2.0):
        for allocation, comp in VARIANTS:
            r = prune_channels(teacher, x, speedup=target, allocation=allocation,
                               data=calib, compensate=comp)  # fmt: skip
            kd = finetune(r.model, train, teacher, epochs=epochs, seed=seed, **TRAIN, **KD)
            out[(target, allocation, comp)] = {
                "macs": analyze(r.model, x).macs / macs,
                "speedup": speedup(r.model, teacher, x),
                "pruned": 100 * accuracy(r.model, test),
                "kd": 100 * accuracy(kd.model, test),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--sets", default="digits,mnist1d")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = []
    for name in args.sets.split(","):
        runs = [run(name, s, args.epochs) for s in range(args.seeds)]
        before = statistics.mean(r[("before",)]["acc"] for r in runs)
        for key in runs[0]:
            if key == ("before",):
                continue

            def avg(k: str, key: tuple = key, runs: list = runs) -> float:
                return statistics.mean(r[key][k] for r in runs)

            target, allocation, comp = key
            table.append((
                name, f"{target:g}x", allocation, "yes" if comp else "no",
                f"{avg('speedup'):.2f}x", f"{avg('macs'):.3f}", f"{before:.1f}",
                f"{avg('pruned'):.1f}", f"{avg('kd'):.1f}",
            ))  # fmt: skip
    print(format_table(
        ("data", "speedup asked", "allocation", "compensate", "measured", "MACs kept",
         "before", "pruned", "after KD"),
        table,
    ))  # fmt: skip


if __name__ == "__main__":
    main()
