"""Accuracy with and without compensation and data-aware importance, before and after the
same short fine-tuning, on scikit-learn's digits and MNIST-1D.

The small CNNs of ``recovery.py`` are trained, then pruned to 1/2 and 1/4 of their MACs
(``target_macs=``) four ways: L1 or ``importance="activation"``, each with and without
``compensate=True``; calibration: the first 4 batches of 64 training samples (inputs only).
Each pruned model is then distilled from the unpruned one for the same steps (``recovery.py``'s
settings). Test accuracy (%), mean over seeds. One table.

Run: python benchmarks/compensation_accuracy.py [--seeds 2] [--epochs 1]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from recovery import KD, SETS, TRAIN
from slimtorch import analyze, finetune, prune_channels
from slimtorch.report.table import format_table
from slimtorch.train import accuracy

VARIANTS = [("l1", False), ("l1", True), ("activation", False), ("activation", True)]


def run(name: str, seed: int, epochs: int) -> dict[tuple, dict[str, float]]:
    load, factory, x, teacher_epochs = SETS[name]
    train, test = load("train"), load("test")
    torch.manual_seed(seed)
    teacher = finetune(factory(), train, epochs=teacher_epochs, seed=seed, **TRAIN).model
    calib = [torch.stack([train[i][0] for i in range(b * 64, (b + 1) * 64)]) for b in range(4)]
    macs = analyze(teacher, x).macs
    out = {("before",): {"acc": accuracy(teacher, test)}}
    for factor in (2, 4):
        for importance, comp in VARIANTS:
            r = prune_channels(teacher, x, target_macs=macs // factor, importance=importance,
                               data=calib, compensate=comp)  # fmt: skip
            kd = finetune(r.model, train, teacher, epochs=epochs, seed=seed, **TRAIN, **KD)
            out[(factor, importance, comp)] = {
                "macs": analyze(r.model, x).macs / macs,
                "pruned": accuracy(r.model, test),
                "kd": accuracy(kd.model, test),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = []
    for name in SETS:
        runs = [run(name, s, args.epochs) for s in range(args.seeds)]
        before = statistics.mean(r[("before",)]["acc"] for r in runs)
        for key in runs[0]:
            if key == ("before",):
                continue

            def avg(field: str, key: tuple = key, runs: list = runs) -> float:
                return 100 * statistics.mean(r[key][field] for r in runs)

            factor, importance, comp = key
            table.append((name, f"{factor}x ({avg('macs'):.1f}%)", importance,
                          "yes" if comp else "no", f"{100 * before:.1f}", f"{avg('pruned'):.1f}",
                          f"{avg('kd'):.1f}"))  # fmt: skip
    print(f"test accuracy (%), mean of {args.seeds} seed(s); KD {args.epochs} epoch(s)")
    headers = ("data", "MACs kept", "importance", "compensate", "before", "pruned", "after KD")
    print(format_table(headers, table))


if __name__ == "__main__":
    main()
