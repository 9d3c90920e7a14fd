"""``slimtorch convert``: rewrite layers of a model and show the savings, per layer and in total."""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from ..convert import conversion_kinds, convert
from ..errors import ConfigError
from ..io.spec import example_input, load_model
from ..measure.latency import compare
from ._common import check_output, input_shape, thread_count


def rank_value(text: str) -> int | float | str:
    """``"full"``, an int (``"2"``) or a ratio (``"0.25"``)."""
    if text == "full":
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--rank {text!r} is invalid; write an int (2), a ratio (0.25) or 'full'"
        ) from None


def layer_list(text: str) -> str | list[str]:
    """``auto`` or comma-separated module names."""
    if text == "auto":
        return text
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--layers is empty; write 'auto' or names like conv1,fc")
    return names


_OPTIONS = ("rank", "energy", "groups", "fit", "impl")


def cmd_convert(args: argparse.Namespace) -> int:
    check_output(args)  # before the work, not after
    model = load_model(args.model)
    x = example_input(args.model, model, args.input)
    options: dict[str, Any] = {
        k: getattr(args, k) for k in _OPTIONS if getattr(args, k) is not None
    }
    threads = sorted(set(args.threads)) if args.threads else None
    result = convert(
        model,
        args.to,
        layers=args.layers,
        example_inputs=x,
        max_error=args.max_error,
        threads=threads,
        **options,
    )
    tables = []
    for t in threads or sorted({1, torch.get_num_threads()}):
        tables.append(
            compare({"before": model, "after": result.model}, x, threads=t, rounds=args.rounds)
        )
    if args.output:
        try:
            from ..io.slim import save
        except ImportError as exc:
            raise ConfigError(
                "-o needs slimtorch.io.slim, which this build lacks; run without -o."
            ) from exc
        save(result.model, args.output)
    if args.json:
        out = result.to_dict() | {"latency": [t.to_dict() for t in tables]}
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.model}  input {tuple(x.shape)}")
    print(result, end="\n\n")
    for table in tables:
        print(table, end="\n\n")
    if args.output:
        print(f"saved {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="weight-preserving rewrites: depthwise-separable, grouped, dilated, low-rank, BN fold",
    )
    p.add_argument("model", help="torchvision:NAME, timm:NAME, file.slim or pkg.module:factory")
    p.add_argument("--to", required=True, choices=conversion_kinds(), help="conversion kind")
    p.add_argument("--layers", type=layer_list, help="'auto' or module names, comma-separated")
    p.add_argument("--rank", type=rank_value, help="int, ratio in (0, 1] or 'full'")
    p.add_argument("--energy", type=float, help="low_rank: share of singular-value energy kept")
    p.add_argument("--groups", type=int, help="grouped: number of groups")
    p.add_argument(
        "--fit",
        choices=("auto", "data", "kernel", "weight"),
        help="data: minimize the output error on the input (dilated, low_rank, depthwise)",
    )
    p.add_argument(
        "--impl", choices=("separate", "expand", "multiplier"), help="depthwise stage form"
    )
    p.add_argument("--max-error", type=float, help="leave layers whose rel. error exceeds this")
    p.add_argument("--input", type=input_shape, help="input shape, e.g. 1,3,224,224")
    p.add_argument(
        "--threads",
        type=thread_count,
        action="append",
        help="threads for the latency comparison (and --layers auto); repeatable",
    )
    p.add_argument("--rounds", type=int, default=10, help="latency rounds")
    p.add_argument("-o", "--output", help="save the converted model as a .slim file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_convert)
