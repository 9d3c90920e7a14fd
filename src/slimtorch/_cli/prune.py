"""``slimtorch prune`` / ``prune-layers``: channel and depth pruning from the command line."""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from ..errors import ConfigError
from ..io.slim import save
from ..io.spec import example_input, load_model
from ..measure.latency import compare
from ..prune.channels.api import prune_channels
from ..prune.channels.importance import IMPORTANCES
from ..prune.depth import SCORES, prune_layers
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
    return _report(args, model, x, _prune_channels(args, model, x))


def _prune_channels(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor) -> Any:
    return prune_channels(
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


def cmd_prune_layers(args: argparse.Namespace) -> int:
    check_output(args)
    model = load_model(args.model).eval()
    x = example_input(args.model, model, args.input)
    data = None
    if args.data:
        from ..train.data import BUILTIN

        if args.data not in BUILTIN:
            raise ConfigError(f"--data {args.data!r} is not one of {', '.join(BUILTIN)}")
        train = BUILTIN[args.data]("train")
        data = [torch.stack([train[i][0] for i in range(b, b + 64)]) for b in (0, 64, 128, 192)]
    result = prune_layers(
        model,
        x,
        n=args.n,
        target_macs=args.target_macs,
        target_latency_ms=args.target_latency_ms,
        speedup=args.speedup,
        threads=(args.threads or [1])[0],
        data=data,
        score=args.score,
        blocks=args.blocks,
        restore_receptive_field=args.restore_receptive_field,
    )
    if not args.json:
        print(f"removed {', '.join(result.plan['layers']['removed']) or 'nothing'}")
    return _report(args, model, x, result)


def _report(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor, result: Any) -> int:
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

    q = sub.add_parser("prune-layers", help="remove whole blocks; print params, MACs, latency")
    q.add_argument("model", help="torchvision:NAME, timm:NAME, file.slim or pkg.module:factory")
    how = q.add_mutually_exclusive_group()
    how.add_argument("-n", type=int, help="blocks to remove")
    how.add_argument("--target-macs", type=int, help="remove blocks until MACs reach this")
    how.add_argument("--target-latency-ms", type=float, help="until one forward takes this")
    how.add_argument("--speedup", type=float, help="until this many times faster, timed")
    q.add_argument("--score", default="block_influence", choices=SCORES)
    q.add_argument("--blocks", nargs="*", help="candidate blocks (default: all removable)")
    q.add_argument("--data", help="calibration data for the scores: digits or mnist1d")
    q.add_argument(
        "--restore-receptive-field",
        action="store_true",
        help="dilate the nearest remaining block's convs to keep the receptive field",
    )
    q.add_argument("--input", type=input_shape, help="input shape, e.g. 1,3,224,224")
    q.add_argument("--threads", type=thread_count, action="append")
    q.add_argument("--rounds", type=int, default=10)
    q.add_argument("--no-bench", action="store_true", help="skip the latency measurement")
    q.add_argument("-o", "--output", help="write the pruned model as a .slim file")
    q.add_argument("--json", action="store_true")
    q.add_argument("-v", "--verbose", action="store_true")
    q.set_defaults(func=cmd_prune_layers)
