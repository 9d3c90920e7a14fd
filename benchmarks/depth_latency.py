"""Blocks removed from ResNet-50 and ViT-B/16: measured CPU latency against MACs.

Each model (random init: latency does not depend on the weights) loses ``k`` of its removable
blocks (``prune_layers(n=k)``, block influence on one random batch: which blocks go matters
here only through their cost). For each ``k``: MACs kept and the measured speed-up over the
original at batch 1, timed interleaved with it (``latency_accuracy.speedup``: 5 warm-up, 31
rounds, median) at 1 and 2 threads. A speed-up above 1 / (MACs kept) means depth saves more
time than its MACs say. One table.

Run: python benchmarks/depth_latency.py [--models resnet50,vit_b_16] [--ks 2,4,6]
"""

from __future__ import annotations

import argparse

import torch
import torchvision

from latency_accuracy import speedup
from slimtorch import prune_layers
from slimtorch.report.table import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,vit_b_16")
    parser.add_argument("--ks", default="2,4,6")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    rows = []
    for name in args.models.split(","):
        model = torchvision.models.get_model(name).eval()
        for k in (int(v) for v in args.ks.split(",")):
            r = prune_layers(model, x, n=k, data=[x])
            kept = r.after["macs"] / r.before["macs"]
            gains = []
            for threads in (1, 2):
                torch.set_num_threads(threads)
                gains.append(speedup(r.model, model, x))
            rows.append((
                name, str(k), f"{len(r.plan['layers']['candidates'])}", f"{kept:.3f}",
                f"{1 / kept:.2f}x", f"{gains[0]:.2f}x", f"{gains[1]:.2f}x",
            ))  # fmt: skip
    print(format_table(
        ("model", "blocks removed", "removable", "MACs kept", "MAC speed-up",
         "measured 1 thread", "measured 2 threads"),
        rows,
    ))  # fmt: skip


if __name__ == "__main__":
    main()
