"""Accuracy of a small CNN on scikit-learn's digits after weight pruning, three ways.

A CNN is trained on digits (8x8 images; 1,397 train / 400 test), then for each sparsity:
one-shot pruning without fine-tuning, one-shot pruning followed by fine-tuning, and AGP
(gradual pruning) during the same fine-tuning budget. Global scope with LAMP scores over every
Conv/Linear weight, classifier included. Mean over seeds; one table.

Run: python benchmarks/digits_sparsity.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from slimtorch.prune.weights.api import prune_weights_
from slimtorch.prune.weights.schedule import AGP
from slimtorch.prune.weights.stats import sparsity
from slimtorch.report.table import format_table

OPTIONS = dict(scope="global", criterion="lamp")


def data(seed: int):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16
    y = torch.tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    return (x[400:], y[400:]), (x[:400], y[:400])


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4x4
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 2x2
        nn.Flatten(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


def accuracy(model: nn.Module, test) -> float:
    model.eval()
    with torch.no_grad():
        acc = (model(test[0]).argmax(1) == test[1]).float().mean().item()
    model.train()
    return 100 * acc


def train(model: nn.Module, train_set, epochs: int, lr: float, schedule=None) -> None:
    x, y = train_set
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(64):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()


def run(seed: int, sparsities, epochs: int, ft_epochs: int):
    torch.manual_seed(seed)
    train_set, test = data(seed)
    dense = cnn()
    train(dense, train_set, epochs, 2e-3)
    out = {"dense": accuracy(dense, test)}
    steps_per_epoch = (len(train_set[1]) + 63) // 64
    for s in sparsities:
        shot = copy.deepcopy(dense)
        prune_weights_(shot, s, **OPTIONS)
        out[s, "one-shot"] = accuracy(shot, test)
        train(shot, train_set, ft_epochs, 5e-4)
        out[s, "one-shot + FT"] = accuracy(shot, test)
        gradual = copy.deepcopy(dense)
        ramp = int(0.6 * ft_epochs * steps_per_epoch)  # prune over 60%, then fine-tune
        agp = AGP(gradual, s, steps=10, every=max(1, ramp // 10), **OPTIONS)
        train(gradual, train_set, ft_epochs, 5e-4, schedule=agp)
        assert agp.done, "AGP finished before fine-tuning did"
        out[s, "AGP + FT"] = accuracy(gradual, test)
        for model in (shot, gradual):  # the masks held through fine-tuning
            assert abs(sparsity(model).total - s) < 1e-3, sparsity(model).total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--ft-epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sparsities = [0.5, 0.7, 0.9, 0.95]
    start = time.perf_counter()
    runs = [run(seed, sparsities, args.epochs, args.ft_epochs) for seed in range(args.seeds)]

    def cell(key) -> str:
        values = [r[key] for r in runs]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.1f} ± {spread:.1f}"

    methods = ["one-shot", "one-shot + FT", "AGP + FT"]
    rows = [(f"{100 * s:g}%", cell("dense"), *(cell((s, m)) for m in methods)) for s in sparsities]
    title = (
        f"digits test accuracy (%), small CNN ({sum(p.numel() for p in cnn().parameters())} "
        f"params), global LAMP, mean ± std over {args.seeds} seeds; "
        f"FT = {args.ft_epochs} epochs"
    )
    print(format_table(("sparsity", "dense", *methods), rows, title))
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
