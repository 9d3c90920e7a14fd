"""slimtorch vs Torch-Pruning, same models, same ratio and importance (L1), one table.

For each model: trace+prune wall time, params and MACs after, and CPU latency after at 1 and
2 threads, measured in interleaved runs (original, slimtorch, Torch-Pruning) so drift cancels.
A second slimtorch row is pruned to Torch-Pruning's MACs (target_macs) for an equal-MACs
comparison. A tool that fails on a model shows the error instead of numbers.

Run: python benchmarks/vs_torch_pruning.py [--models resnet50,mobilenet_v2] [--rounds 15]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torchvision

import slimtorch as st
from _peers import tp_prune
from slimtorch.report.table import format_table, human

DEFAULT = "resnet50,mobilenet_v2,vit_b_16,densenet121,shufflenet_v2_x1_0"


def _tp_prune(model, x, ratio):
    model, elapsed = tp_prune(copy.deepcopy(model), x, ratio)
    with torch.no_grad():
        model.eval()(x)
    return model, elapsed


def _ours(model, x, ratio, **kwargs):
    start = time.perf_counter()
    result = st.prune_channels(model, x, ratio=ratio, importance="l1", **kwargs)
    return result.model, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=DEFAULT)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    x = torch.randn(1, 3, 224, 224)
    rows = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        original = torchvision.models.get_model(name).eval()
        variants = {"original": (original, 0.0)}
        try:
            variants["slimtorch"] = _ours(original, x, args.ratio)
        except Exception as exc:  # report, keep going
            rows.append((name, "slimtorch", f"fails: {type(exc).__name__}", "", "", "", ""))
        try:
            variants["torch-pruning"] = _tp_prune(original, x, args.ratio)
        except Exception as exc:
            rows.append(
                (name, "torch-pruning", f"fails: {type(exc).__name__}: {exc}"[:60], "", "", "", "")
            )
        if "torch-pruning" in variants and "slimtorch" in variants:
            tp_macs = st.analyze(variants["torch-pruning"][0], x).macs
            try:
                variants["slimtorch @TP MACs"] = _ours(original, x, None, target_macs=tp_macs)
            except Exception as exc:
                rows.append((name, "slimtorch @TP MACs", f"fails: {exc}"[:60], "", "", "", ""))
        models = {k: v[0] for k, v in variants.items()}
        lat = {t: st.compare(models, x, threads=t, rounds=args.rounds) for t in (1, 2)}
        for i, (tool, (_, seconds)) in enumerate(variants.items()):
            r1, r2 = lat[1].rows[i], lat[2].rows[i]
            rows.append(
                (
                    name,
                    tool,
                    f"{seconds:.2f}" if tool != "original" else "-",
                    human(r1["params"]),
                    human(r1["macs"]),
                    f"{r1['median_ms']:.1f}",
                    f"{r2['median_ms']:.1f}",
                )
            )
        print(f"done {name}", flush=True)
    headers = ("model", "tool", "prune s", "params", "MACs", "ms 1 thr", "ms 2 thr")
    print(format_table(headers, rows, f"ratio {args.ratio}, L1, input 1x3x224x224"))


if __name__ == "__main__":
    main()
