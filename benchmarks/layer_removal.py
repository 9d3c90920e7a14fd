"""Depth pruning of residual CNNs: blocks removed, measured speed-up, accuracy after distillation.

For scikit-learn's digits and MNIST-1D, a residual CNN (``slimtorch.train.models``:
``digits_resnet``, 6 residual blocks; ``mnist1d_resnet``, 9) is trained here, then:

- ``depth n``: ``prune_layers(n=1/3 of the blocks, score=...)`` for ``block_influence`` and
  ``loss`` (scored on 4 calibration batches of 64 training inputs);
- at ``speedup=2`` measured on this CPU at 1 thread, batch 256: ``prune_channels`` (uniform
  ratio), ``prune_layers`` (depth only) and depth then width (``prune_layers(speedup=1.41)``,
  then ``prune_channels`` of the result to 2x the original: a fixed split, not a search).

Each result is distilled from the unpruned model for the same steps (``recovery.py``'s
settings). Speed-ups are timed again here, interleaved with the original, at batch 256 and
batch 1, 1 thread. Test accuracy (%), mean over seeds. One table.

Run: python benchmarks/layer_removal.py [--seeds 1] [--epochs 2] [--sets digits,mnist1d]
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch

from latency_accuracy import speedup
from recovery import KD, TRAIN
from slimtorch import analyze, finetune, prune_channels, prune_layers
from slimtorch.report.table import format_table
from slimtorch.train import accuracy, digits, mnist1d
from slimtorch.train.models import digits_resnet, mnist1d_resnet

SETS = {"digits": (digits, digits_resnet, 6, 20), "mnist1d": (mnist1d, mnist1d_resnet, 9, 30)}


def blocks(model: torch.nn.Module) -> int:
    return sum(type(m).__name__ == "Residual" for m in model.modules())


def run(name: str, seed: int, epochs: int) -> dict[str, dict[str, float]]:
    load, factory, count, teacher_epochs = SETS[name]
    train, test = load("train"), load("test")
    torch.manual_seed(seed)
    teacher = finetune(factory(), train, epochs=teacher_epochs, seed=seed, **TRAIN).model.eval()
    calib = [torch.stack([train[i][0] for i in range(b * 64, (b + 1) * 64)]) for b in range(4)]
    x = torch.stack([test[i][0] for i in range(256)])
    macs = analyze(teacher, x[:1]).macs
    out = {"original": {"acc": 100 * accuracy(teacher, test), "blocks": count}}
    n = math.ceil(count / 3)
    variants = {
        f"depth n={n} (block_influence)": lambda: (
            prune_layers(teacher, x, n=n, data=calib, score="block_influence").model
        ),
        f"depth n={n} (loss)": lambda: (
            prune_layers(teacher, x, n=n, data=calib, score="loss").model
        ),
        "2x: channels (uniform)": lambda: prune_channels(teacher, x, speedup=2.0).model,
        "2x: depth (loss)": lambda: (
            prune_layers(teacher, x, speedup=2.0, data=calib, score="loss").model
        ),
        "2x: depth 1.41x + channels": lambda: _depth_then_width(teacher, x, calib),
    }
    for label, make in variants.items():
        model = make().eval()
        kd = finetune(model, train, teacher, epochs=epochs, seed=seed, **TRAIN, **KD).model
        out[label] = {
            "blocks": blocks(model),
            "macs": analyze(model, x[:1]).macs / macs,
            "speedup": speedup(model, teacher, x),
            "speedup1": speedup(model, teacher, x[:1]),
            "pruned": 100 * accuracy(model, test),
            "acc": 100 * accuracy(kd, test),
        }
    return out


def _depth_then_width(teacher: torch.nn.Module, x: torch.Tensor, calib: list) -> torch.nn.Module:
    shallow = prune_layers(teacher, x, speedup=2**0.5, data=calib, score="loss").model
    # the width cut is timed against the shallow model: its target is the rest of the 2x
    return prune_channels(shallow, x, speedup=2.0 / speedup(shallow, teacher, x)).model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sets", default="digits,mnist1d")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = []
    for name in args.sets.split(","):
        runs = [run(name, s, args.epochs) for s in range(args.seeds)]
        for key in runs[0]:

            def avg(k: str, key: str = key, runs: list = runs) -> float:
                return statistics.mean(r[key][k] for r in runs)

            if key == "original":
                table.append((name, key, f"{avg('blocks'):.0f}", "1.000", "1.00x", "1.00x",
                              "-", f"{avg('acc'):.1f}"))  # fmt: skip
                continue
            table.append((
                name, key, f"{avg('blocks'):.0f}", f"{avg('macs'):.3f}",
                f"{avg('speedup'):.2f}x", f"{avg('speedup1'):.2f}x", f"{avg('pruned'):.1f}",
                f"{avg('acc'):.1f}",
            ))  # fmt: skip
    print(format_table(
        ("data", "model", "blocks", "MACs kept", "speed-up bs256", "speed-up bs1",
         "pruned acc", "after KD acc"),
        table,
    ))  # fmt: skip


if __name__ == "__main__":
    main()
