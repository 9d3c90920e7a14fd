"""Network Slimming on real data (scikit-learn digits): train with and without the BN-L1
sparsity regularizer, prune channels by BN scale at the same ratios, fine-tune briefly.

Prints one table: test accuracy before pruning, right after pruning, and after fine-tuning,
with params and MACs of the pruned model. Run: python benchmarks/network_slimming.py
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import slimtorch as st
from slimtorch.report.table import format_table, human


def data():
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return xtr, ytr, xte, yte


def net() -> nn.Module:
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(
        *block(1, 32),
        *block(32, 32),
        nn.MaxPool2d(2),
        *block(32, 64),
        *block(64, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def train(model, xtr, ytr, epochs, penalty=None, lr=0.05):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            idx = perm[i : i + 64]
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            if penalty is not None:
                loss = loss + penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model, x, y) -> float:
    return (model.eval()(x).argmax(1) == y).float().mean().item() * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--finetune", type=int, default=3)
    parser.add_argument("--strength", type=float, default=1e-3)
    args = parser.parse_args()
    torch.manual_seed(0)
    xtr, ytr, xte, yte = data()
    example = xte[:1]
    rows = []
    for reg in (False, True):
        torch.manual_seed(0)
        model = net()
        penalty = st.regularizer(model, "bn_l1", args.strength) if reg else None
        train(model, xtr, ytr, args.epochs, penalty)
        base = accuracy(model, xte, yte)
        gammas = torch.cat(
            [m.weight.abs() for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        )
        small = (gammas < 0.05).float().mean().item() * 100
        for ratio in (0.5, 0.7, 0.85):
            result = st.prune_channels(
                model, example, ratio=ratio, importance="bn_scale", scope="global", round_to=None
            )
            pruned = accuracy(result.model, xte, yte)
            tuned = accuracy(train(result.model, xtr, ytr, args.finetune, lr=0.01), xte, yte)
            rows.append(
                (
                    "bn_l1" if reg else "none",
                    f"{small:.0f}%",
                    f"{base:.1f}",
                    ratio,
                    human(result.after["params"]),
                    human(result.after["macs"]),
                    f"{pruned:.1f}",
                    f"{tuned:.1f}",
                )
            )
        print(f"done regularizer={reg}", flush=True)
    headers = (
        "regularizer",
        "|gamma|<0.05",
        "acc dense",
        "ratio",
        "params",
        "MACs",
        "acc pruned",
        f"acc +{args.finetune} ep FT",
    )
    print(format_table(headers, rows, "Network Slimming on digits (global BN-scale pruning)"))


if __name__ == "__main__":
    main()
