"""``slimtorch prune``: channel pruning from the command line."""

from __future__ import annotations

import argparse
import json

import torch

from ..io.slim import save
from ..io.spec import example_input, load_model
from ..measure.latency import compare
from ..prune.channels.api import prune_channels
from ..prune.channels.importance import IMPORTANCES
from ._common import check_output, input_shape, thread_count


def _ratio_map(text: str) -> dict[str, float]:
    out = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"--ratios item {item!r} is not NAME=RATIO, e.g. layer4.0.conv1=0.7"
            ) from exc
    return out


def cmd_prune(args: argparse.Namespace) -> int:
    check_output(args)  # before the work, not after
    model = load_model(args.model).eval()
    x = example_input(args.model, model, args.input)
    result = prune_channels(
        model,
        x,
        ratio=None if args.target_macs else args.ratio,
        target_macs=args.target_macs,
        target_latency_ms=args.target_latency_ms,
        speedup=args.speedup,
        allocation=args.allocation,
        threads=(args.threads or [1])[0],
        importance=args.importance,
        scope=args.scope,
        ratios=args.ratios or {},
        ignore=args.ignore or [],
        round_to="auto" if args.round_to < 0 else (args.round_to or None),
    )
    tables = []
    if not args.no_bench:
        for threads in args.threads or [1, torch.get_num_threads()]:
            tables.append(
                compare(
                    {"before": model, "after": result.model}, x, threads=threads, rounds=args.rounds
                )
            )
    if args.output:
        save(result, args.output)
    if args.json:
        print(
            json.dumps(
                {
                    "before": result.before,
                    "after": result.after,
                    "warnings": result.warnings,
                    "latency": [t.to_dict() for t in tables],
                    "output": args.output,
                },
                indent=2,
            )
        )
        return 0
    print(result.summary())
    for t in tables:
        print(t)
    print(f"{len(result.warnings)} warnings" + (" (--verbose to list)" if not args.verbose else ""))
    if args.verbose:
        for w in result.warnings:
            print(f"  - {w}")
    if args.output:
        print(f"saved {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="remove channels; print params, MACs, latency before/after")
    p.add_argument("model", help="torchvision:NAME, timm:NAME, file.slim or pkg.module:factory")
    p.add_argument("--ratio", type=float, default=0.5, help="fraction of channels to remove")
    p.add_argument("--target-macs", type=int, help="prune until MACs reach this instead")
    p.add_argument(
        "--target-latency-ms",
        type=float,
        help="prune until one forward, timed on this CPU at the first --threads, takes this",
    )
    p.add_argument("--speedup", type=float, help="prune until this many times faster, timed")
    p.add_argument(
        "--allocation",
        choices=("uniform", "latency"),
        default="uniform",
        help="for a latency target: one ratio for all groups, or cuts where they save the "
        "most measured time per importance lost (HALP-style)",
    )
    p.add_argument("--importance", default="l1", choices=sorted(IMPORTANCES))
    p.add_argument("--scope", default="local", choices=["local", "global"])
    p.add_argument("--ratios", type=_ratio_map, help="per-module ratios: NAME=R,NAME=R")
    p.add_argument("--ignore", nargs="*", help="modules whose output channels are kept")
    p.add_argument(
        "--round-to",
        type=int,
        default=-1,
        help="channel multiple (0 = off; default: the CPU's SIMD width)",
    )
    p.add_argument("--input", type=input_shape, help="input shape, e.g. 1,3,224,224")
    p.add_argument("--threads", type=thread_count, action="append")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--no-bench", action="store_true", help="skip the latency measurement")
    p.add_argument("-o", "--output", help="write the pruned model as a .slim file")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_prune)
