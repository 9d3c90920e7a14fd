"""``slimtorch demo``: the project's main job on an embedded default."""

from __future__ import annotations

import torch

from .io.spec import load_model
from .measure.analyze import analyze
from .measure.latency import compare
from .prune.channels.api import prune_channels

__all__ = ["run_demo"]


def run_demo(rounds: int = 10) -> None:
    """ResNet-50 against MobileNetV2 on the CPU (size, MACs, latency at 1 and all threads),
    then MobileNetV2 with half its channels physically removed, before and after."""
    torch.manual_seed(0)
    models = {
        "resnet50": load_model("torchvision:resnet50"),
        "mobilenet_v2": load_model("torchvision:mobilenet_v2"),
    }
    x = torch.randn(1, 3, 224, 224)
    for name, model in models.items():
        print(f"{name}: {analyze(model, x).summary()}")
    print()
    result = prune_channels(models["mobilenet_v2"], x, ratio=0.5)
    models["mobilenet_v2 pruned 50%"] = result.model
    print("channel pruning of mobilenet_v2 (ratio 0.5, L1):")
    print(result.summary())
    print()
    for threads in sorted({1, torch.get_num_threads()}):
        print(compare(models, x, threads=threads, rounds=rounds), end="\n\n", flush=True)
