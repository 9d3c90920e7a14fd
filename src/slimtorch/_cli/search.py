"""``slimtorch search``: a compression policy searched under a measured latency budget."""

from __future__ import annotations

import argparse
import json

from ..io.slim import save
from ..io.spec import example_input
from ..nas import search
from ..nas.options import SPACES
from ._common import check_output, input_shape, thread_count
from .finetune import _data, _model


def _space(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in SPACES]
    if bad or not parts:
        raise argparse.ArgumentTypeError(
            f"--space {text!r}: use a comma list of {', '.join(SPACES)}, e.g. depth,width"
        )
    return parts


def cmd_search(args: argparse.Namespace) -> int:
    check_output(args)
    model = _model(args.model, args.trust_code).eval()
    x = example_input(args.model, model, args.input)
    train, _ = _data(args)
    result = search(
        model,
        x,
        train,
        target_latency_ms=args.target_latency_ms,
        speedup=args.speedup,
        space=args.space,
        budget=args.budget,
        state=args.state,
        progress=not args.json,
        threads=args.threads or 1,
        proxy_steps=args.proxy_steps,
        seed=args.seed,
    )
    if args.plot:
        result.plot(args.plot)
    if args.output:
        save(result.model, args.output)
    if args.json:
        print(json.dumps({**result.plan, "output": args.output}, indent=2, default=str))
        return 0
    print(result)
    chosen = result.plan["chosen"]
    print(
        f"chosen: {chosen['ms']:.2f} ms ({result.original_ms / chosen['ms']:.2f}x), proxy "
        f"{chosen['proxy']:.4f}, {result.plan['measured_now']} candidates measured now"
    )
    for path in (args.plot, args.output):
        if path:
            print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="search blocks to remove, stage widths and rewrites under a latency budget"
    )
    p.add_argument("model", help="a trained model: file.slim, torchvision:NAME, pkg.module:factory")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--speedup", type=float, help="times faster than the original, timed")
    how.add_argument("--target-latency-ms", type=float, help="ms of one forward, timed")
    p.add_argument("--data", required=True, help="training data: digits, mnist1d or a folder")
    p.add_argument("--image-size", type=int, default=32, help="for a folder of images")
    p.add_argument("--space", type=_space, default=SPACES, help="e.g. depth,width,rewrite")
    p.add_argument("--budget", type=int, default=24, help="candidates to evaluate")
    p.add_argument("--proxy-steps", type=int, default=20, help="distillation steps per candidate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--state", help="JSON file recording every candidate (resume with it)")
    p.add_argument("--plot", help="write the Pareto front (proxy vs measured ms) as an image")
    p.add_argument("--input", type=input_shape, help="input shape the latency is timed on")
    p.add_argument("--threads", type=thread_count, help="threads of the timings (default 1)")
    p.add_argument("--trust-code", action="store_true", help="for a .slim built by a factory")
    p.add_argument("-o", "--output", help="write the chosen model as a .slim file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)
