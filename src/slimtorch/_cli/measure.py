"""``slimtorch analyze`` and ``bench``."""

from __future__ import annotations

import argparse
import json

import torch

from ..io.spec import example_input, load_model
from ..measure.analyze import analyze
from ..measure.latency import compare
from ._common import input_shape, thread_count


def cmd_analyze(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    x = example_input(args.model, model, args.input)
    report = analyze(model, x)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
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
        for backend in args.backend or ["torch"]:
            table = compare(
                models,
                x,
                threads=threads,
                rounds=args.rounds,
                warmup=args.warmup,
                backend=backend,
            )
            results.append(table)
            if not args.json:
                print(table, end="\n\n", flush=True)
    if args.json:
        print(json.dumps([t.to_dict() for t in results], indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="parameters, MACs, size and receptive field per layer")
    p.add_argument("model", help="torchvision:NAME, timm:NAME, file.slim or pkg.module:factory")
    p.add_argument("--input", type=input_shape, help="input shape, e.g. 1,3,224,224")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--rows", type=int, default=40, help="layer rows to print")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("bench", help="CPU latency of one or more models, interleaved")
    p.add_argument("models", nargs="+")
    p.add_argument("--input", type=input_shape, help="input shape, e.g. 1,3,224,224")
    p.add_argument(
        "--threads",
        type=thread_count,
        action="append",
        help="intra-op threads; repeat for several settings (default: all)",
    )
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--backend",
        action="append",
        choices=["torch", "onnxruntime", "executorch", "openvino"],
        help="runtime to time on (exported and checked first); repeat for several",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
