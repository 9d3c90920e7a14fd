"""Latency of converted torchvision models vs the originals, next to their MAC ratio.

ResNet-18, VGG-16 and MobileNetV2 (random init, input 1x3x224x224) are converted each
applicable way; every converted model is timed against its original in interleaved runs
(``slimtorch.compare``) at 1 thread and at all threads. A second table times the three ways to
run a depthwise stage with ``r`` filters per input channel, which decides the form
``depthwise_separable`` emits.

Run: ``python benchmarks/convert_speed.py [--rounds 5] [--quick]`` (1.5-5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

import slimtorch as st
from slimtorch.convert import convert
from slimtorch.report.table import format_table

X = torch.randn(1, 3, 224, 224)

# The classifier's 4096 x 25088 Linear takes minutes to factor on 2 busy cores; MACs are in
# the convs anyway.
VGG16_CONVS = [f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]

# (model, label, kind, layers, options, channels_last)
CASES = [
    ("resnet18", "fuse_bn", "fuse_bn", None, {}, False),
    ("resnet18", "depthwise_separable r=1", "depthwise_separable", None, {"rank": 1}, False),
    ("resnet18", "depthwise_separable r=1", "depthwise_separable", None, {"rank": 1}, True),
    ("resnet18", "depthwise_separable r=2", "depthwise_separable", None, {"rank": 2}, False),
    ("resnet18", "depthwise_separable r=2", "depthwise_separable", None, {"rank": 2}, True),
    (
        "resnet18",
        "depthwise_separable r=2 impl=multiplier",
        "depthwise_separable",
        None,
        {"rank": 2, "impl": "multiplier"},
        True,
    ),
    ("resnet18", "grouped g=4", "grouped", None, {"groups": 4}, False),
    ("resnet18", "low_rank 0.25", "low_rank", None, {"rank": 0.25}, False),
    ("resnet18", "low_rank 0.25 layers=auto", "low_rank", "auto", {"rank": 0.25}, False),
    ("resnet18", "dilated (conv1 7x7)", "dilated", None, {"fit": "kernel"}, False),
    ("vgg16", "depthwise_separable r=1", "depthwise_separable", None, {"rank": 1}, False),
    ("vgg16", "grouped g=4", "grouped", None, {"groups": 4}, False),
    ("vgg16", "low_rank 0.25 (convs)", "low_rank", VGG16_CONVS, {"rank": 0.25}, False),
    ("mobilenet_v2", "fuse_bn", "fuse_bn", None, {}, False),
    ("mobilenet_v2", "grouped g=2 (1x1 convs)", "grouped", None, {"groups": 2}, False),
    ("mobilenet_v2", "low_rank 0.5", "low_rank", None, {"rank": 0.5}, False),
]


class Multiplier(nn.Module):
    """PyTorch's channel-multiplier depthwise conv: groups=C, C*r outputs."""

    def __init__(self, c: int, r: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c * r, 3, padding=1, groups=c, bias=False)

    def forward(self, x):
        return self.conv(x)


class Separate(nn.Module):
    """r plain depthwise convs (groups=C, C outputs each), concatenated."""

    def __init__(self, c: int, r: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False) for _ in range(r)
        )

    def forward(self, x):
        return torch.cat([conv(x) for conv in self.convs], 1)


class Expand(nn.Module):
    """Channel repeat, then one plain depthwise conv with groups = C*r (what we emit)."""

    def __init__(self, c: int, r: int) -> None:
        super().__init__()
        self.r = r
        self.conv = nn.Conv2d(c * r, c * r, 3, padding=1, groups=c * r, bias=False)

    def forward(self, x):
        return self.conv(x.repeat_interleave(self.r, 1) if self.r > 1 else x)


def depthwise_forms(threads: list[int], rounds: int) -> str:
    rows = []
    for c, h in ((64, 56), (128, 28), (256, 14), (512, 7)):
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            x = torch.randn(1, c, h, h).contiguous(memory_format=fmt)
            for r in (2, 4):
                forms = {"multiplier": Multiplier(c, r), "separate": Separate(c, r)}
                forms["expand"] = Expand(c, r)
                row = [f"{c}x{h}x{h}", "NHWC" if channels_last else "NCHW", r]
                for t in threads:
                    table = st.compare(forms, x, threads=t, rounds=rounds * 4, warmup=3)
                    ms = {r_["name"]: r_["median_ms"] for r_ in table.rows}
                    row += [f"{ms[k]:.3f}" for k in ("multiplier", "separate", "expand")]
                    row.append(f"{ms['multiplier'] / ms['separate']:.2f}x")
                rows.append(row)
    headers = ["input", "format", "r"]
    for t in threads:
        headers += [f"mult @{t}t", f"separate @{t}t", f"expand @{t}t", f"mult/sep @{t}t"]
    title = "depthwise stage with r filters per channel, three forms: median ms"
    return format_table(headers, rows, title)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="ResNet-18 cases only")
    args = parser.parse_args()
    torch.manual_seed(0)
    threads = sorted({1, torch.get_num_threads()})
    start = time.perf_counter()
    print(depthwise_forms(threads, args.rounds), end="\n\n", flush=True)

    rows = []
    originals: dict[str, nn.Module] = {}
    for model_name, label, kind, layers, options, channels_last in CASES:
        if args.quick and model_name != "resnet18":
            continue
        if model_name not in originals:
            originals[model_name] = st.load_model(f"torchvision:{model_name}").eval()
        model, x = originals[model_name], X
        t0 = time.perf_counter()
        result = convert(model, kind, layers, X, **options)
        convert_s = time.perf_counter() - t0
        if not result.layers:
            continue
        converted = result.model
        if channels_last:
            model = copy.deepcopy(model).to(memory_format=torch.channels_last)
            converted = converted.to(memory_format=torch.channels_last)
            x = X.contiguous(memory_format=torch.channels_last)
        row = [model_name, label, "NHWC" if channels_last else "NCHW", len(result.layers)]
        macs = 1.0
        for t in threads:
            table = st.compare(
                {"original": model, "converted": converted},
                x,
                threads=t,
                rounds=args.rounds,
                warmup=2,
            )
            before, after = table.rows
            macs = after["macs"] / before["macs"]
            row += [
                f"{before['median_ms']:.1f}",
                f"{after['median_ms']:.1f}",
                f"{before['median_ms'] / after['median_ms']:.2f}x",
            ]
        row[4:4] = [f"{macs:.2f}"]
        row.append(f"{convert_s:.1f}")
        rows.append(row)
        print(f"  done {model_name} {label} ({time.perf_counter() - start:.0f}s)", flush=True)
    headers = ["model", "conversion", "format", "layers", "MACs ratio"]
    for t in threads:
        headers += [f"orig ms @{t}t", f"conv ms @{t}t", f"speedup @{t}t"]
    headers.append("convert s")
    title = "converted vs original, input 1x3x224x224, interleaved medians"
    print(format_table(headers, rows, title))
    print(f"\ntotal {time.perf_counter() - start:.0f}s, torch {torch.__version__}")


if __name__ == "__main__":
    main()
