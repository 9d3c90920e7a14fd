"""``slimtorch sparsify``: zero weights (unstructured, N:M, rows, cols) and show the result."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import torch

from ..errors import ConfigError
from ..io.spec import example_input, load_model
from ..prune.weights.api import make_permanent_, prune_weights_
from ..prune.weights.stats import sparsity
from ..report.table import format_table, human
from ._common import check_output, input_shape


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sparsity {text!r} is not a number; write a fraction such as 0.9"
        ) from None


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _output_change(model: torch.nn.Module, before: torch.Tensor, x: torch.Tensor) -> float:
    with torch.inference_mode():
        after = model(x)
    return float((after - before).norm() / before.norm().clamp_min(1e-12))


def _saver() -> Callable[..., Any]:
    try:
        from ..io.slim import save
    except ImportError as exc:
        raise ConfigError(
            "-o needs slimtorch.io.slim, which this build lacks; run without -o."
        ) from exc
    return save


def cmd_sparsify(args: argparse.Namespace) -> int:
    check_output(args)  # before the work, not after
    save = _saver() if args.output else None  # fail before the work, not after
    model = load_model(args.model).eval()
    x = example_input(args.model, model, args.input)
    with torch.inference_mode():
        reference = model(x)
    before = sparsity(model)
    report = prune_weights_(
        model,
        args.sparsity,
        scope=args.scope,
        criterion=args.criterion,
        pattern=args.pattern,
        ignore=args.ignore or (),
    )
    after = sparsity(model)
    change = _output_change(model, reference, x)
    if save is not None:
        make_permanent_(model)
        save(model, args.output)
    if args.json:
        out = {
            "model": args.model,
            "before": before.to_dict(),
            "after": after.to_dict(),
            "output_change": change,
            "output": args.output,
        }
        print(json.dumps(out, indent=2))
        return 0
    pruned = set(report.names)
    rows = [
        (
            b.name,
            "x".join(map(str, b.shape)),
            human(b.numel),
            f"{100 * b.sparsity:.2f}%",
            f"{100 * a.sparsity:.2f}%",
            "" if b.name in pruned else "kept",
        )
        for b, a in zip(before.layers, after.layers)
    ]
    rows.append(
        (
            "total",
            "",
            human(before.numel),
            f"{100 * before.total:.2f}%",
            f"{100 * after.total:.2f}%",
            "",
        )
    )
    print(f"{args.model}  pattern {args.pattern}, scope {args.scope}, criterion {args.criterion}")
    print(format_table(("layer", "shape", "weights", "before", "after", "note"), rows))
    print(
        f"sparsity {100 * before.total:.2f}% -> {100 * after.total:.2f}% of prunable weights; "
        f"output change on a random input {tuple(x.shape)}: {change:.3g} (relative L2)"
    )
    if report.collapsed:
        print(
            f"warning: entirely zero: {', '.join(report.collapsed)}; the model cannot pass "
            "signal through them. Use --criterion lamp, --scope layer, or --ignore them."
        )
    if args.output:
        print(f"saved {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sparsify", help="zero weights (unstructured, N:M, rows, cols); per-layer sparsity"
    )
    p.add_argument("model", help="torchvision:NAME, timm:NAME, file.slim or pkg.module:factory")
    p.add_argument(
        "--sparsity", type=_fraction, help="fraction of weights to zero (default 0.8; N:M: 1-N/M)"
    )
    p.add_argument("--pattern", default="unstructured", help="unstructured, rows, cols or N:M")
    p.add_argument("--scope", default="layer", help="layer (default) or global")
    p.add_argument("--criterion", default="magnitude", help="magnitude, lamp or random")
    p.add_argument("--ignore", type=_names, help="comma-separated module names to keep dense")
    p.add_argument("--input", type=input_shape, help="input shape, e.g. 1,3,224,224")
    p.add_argument("-o", "--output", help="save the sparse model as a .slim file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_sparsify)
