"""The ``slimtorch`` command line: one small function per subcommand, thin over the API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from .errors import SlimTorchError
from .io.spec import example_input, load_model
from .measure.analyze import analyze
from .measure.latency import compare

__all__ = ["main"]


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise argparse.ArgumentTypeError(
            f"input shape {text!r} is not a list of positive integers; write e.g. 1,3,224,224"
        )
    return shape


def _threads(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"--threads {text!r} is invalid; use an integer >= 1 (1 = a single-core device)"
        )
    return n


def cmd_analyze(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    x = example_input(args.model, model, args.input)
    report = analyze(model, x)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"{args.model}  input {tuple(x.shape)}")
        print(report.table(max_rows=args.rows))
        if args.rows is not None and len(report.layers) > args.rows:
            print(f"... {len(report.layers) - args.rows} more layers (--rows to show more)")
        print(report.summary())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    models = {spec: load_model(spec) for spec in args.models}
    first = args.models[0]
    x = example_input(first, models[first], args.input)
    results = []
    for threads in args.threads or [torch.get_num_threads()]:
        table = compare(models, x, threads=threads, rounds=args.rounds, warmup=args.warmup)
        results.append(table)
        if not args.json:
            print(table)
            print()
    if args.json:
        print(json.dumps([t.to_dict() for t in results], indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(rounds=args.rounds)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slimtorch",
        description="Make PyTorch models smaller and faster on CPUs, and measure it.",
        epilog="Models: torchvision:NAME, timm:NAME, a .slim file, or package.module:factory.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="parameters, MACs, size and receptive field per layer")
    p.add_argument("model")
    p.add_argument("--input", type=_shape, help="input shape, e.g. 1,3,224,224")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--rows", type=int, default=40, help="layer rows to print")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("bench", help="CPU latency of one or more models, interleaved")
    p.add_argument("models", nargs="+")
    p.add_argument("--input", type=_shape, help="input shape, e.g. 1,3,224,224")
    p.add_argument(
        "--threads",
        type=_threads,
        action="append",
        help="intra-op threads; repeat for several settings (default: all)",
    )
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="the end-to-end example on an embedded default")
    p.add_argument("--rounds", type=int, default=10)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slimtorch`` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SlimTorchError as exc:
        print(f"slimtorch {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
