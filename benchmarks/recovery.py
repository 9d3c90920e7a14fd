"""Recovery after channel pruning: cross-entropy fine-tuning vs distillation, same budget.

For scikit-learn's digits and MNIST-1D, a small CNN (``slimtorch.train.models``) is trained
by this script, then pruned with ``slimtorch.prune_channels(target_macs=macs / 2)`` and
``macs / 4`` (L1 importance, local scope), then fine-tuned twice from the same pruned model
for the same number of steps: once with cross-entropy alone, once with distillation from the
unpruned model (``alpha``, ``T`` below). Test accuracy at each stage, mean over seeds;
"KD recovers" is (KD - pruned) / (before - pruned), the share of what pruning lost that KD
won back. One table.

Run: python benchmarks/recovery.py [--seeds 3] [--epochs 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from slimtorch import analyze, finetune, prune_channels
from slimtorch.report.table import format_table
from slimtorch.train import accuracy, digits, mnist1d
from slimtorch.train.models import digits_cnn, mnist1d_cnn

SETS = {
    # name: (data loader, model factory, example input, teacher epochs)
    "digits": (digits, digits_cnn, torch.zeros(1, 1, 8, 8), 20),
    "mnist1d": (mnist1d, mnist1d_cnn, torch.zeros(1, 1, 40), 30),
}
TRAIN = dict(lr=3e-3, batch_size=64, warmup_steps=10, progress=False)
KD = dict(alpha=0.9, temperature=4.0)


def run(name: str, seed: int, epochs: int) -> list[dict[str, float]]:
    load, factory, x, teacher_epochs = SETS[name]
    train, test = load("train"), load("test")
    torch.manual_seed(seed)
    teacher = finetune(factory(), train, epochs=teacher_epochs, seed=seed, **TRAIN).model
    macs = analyze(teacher, x).macs
    before = accuracy(teacher, test)
    rows = []
    for factor in (2, 4):
        pruned = prune_channels(teacher, x, target_macs=macs // factor).model
        kw = dict(epochs=epochs, seed=seed, **TRAIN)
        ce = finetune(pruned, train, **kw)
        kd = finetune(pruned, train, teacher, **kw, **KD)
        assert ce.steps == kd.steps
        rows.append(
            {
                "factor": factor,
                "macs": analyze(pruned, x).macs / macs,
                "steps": kd.steps,
                "before": before,
                "pruned": accuracy(pruned, test),
                "ce": accuracy(ce.model, test),
                "kd": accuracy(kd.model, test),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs")
    parser.add_argument("--sets", default="digits,mnist1d")
    args = parser.parse_args()
    torch.set_num_threads(1)  # accuracy, not speed: one thread keeps a shared machine usable
    start = time.perf_counter()
    table = []
    for name in args.sets.split(","):
        runs = [run(name, seed, args.epochs) for seed in range(args.seeds)]
        for i, first in enumerate(runs[0]):

            def avg(key: str, i: int = i, runs: list = runs) -> float:
                return statistics.mean(r[i][key] for r in runs)

            lost = avg("before") - avg("pruned")
            recovered = (avg("kd") - avg("pruned")) / lost if lost > 0 else float("nan")
            table.append(
                (
                    name,
                    f"{first['factor']}x ({100 * avg('macs'):.1f}%)",
                    str(first["steps"]),
                    f"{100 * avg('before'):.1f}",
                    f"{100 * avg('pruned'):.1f}",
                    f"{100 * avg('ce'):.1f}",
                    f"{100 * avg('kd'):.1f}",
                    f"{100 * recovered:.0f}%",
                    f"{100 * (avg('kd') - avg('ce')):+.1f}",
                )
            )
    print(
        f"test accuracy (%), mean of {args.seeds} seed(s); fine-tuning: {args.epochs} epochs, "
        f"AdamW lr {TRAIN['lr']}, KD alpha {KD['alpha']} T {KD['temperature']}"
    )
    header = ("data", "MACs kept", "steps", "before", "pruned", "CE", "KD", "KD recovers", "KD-CE")
    print(format_table(header, table))
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
