"""``slimtorch run``: a recipe's pipeline, validated first, resumable; ``slimtorch demo``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..recipe import run_recipe
from ..recipe.run import load_recipe


def cmd_run(args: argparse.Namespace) -> int:
    out = args.out or str(Path("runs") / Path(args.recipe).stem)
    if args.check:
        recipe = load_recipe(args.recipe, model=args.model, overrides=args.overrides)
        print(json.dumps(recipe.to_dict(), indent=2))
        return 0
    result = run_recipe(args.recipe, out, model=args.model, overrides=args.overrides)
    print(result.summary())
    if result.report:
        print(f"report: {result.report}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a YAML recipe: convert, prune, fine-tune, measure, report")
    p.add_argument("recipe", help="recipe.yaml, or a shipped recipe's name (e.g. latency_target)")
    p.add_argument("--model", help="replaces the recipe's model spec")
    p.add_argument("--out", help="run folder (default runs/RECIPE); a rerun resumes there")
    p.add_argument("--check", action="store_true", help="validate and print the resolved recipe")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. steps.1.prune_channels.speedup=3")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "demo", help="the whole pipeline on a small CNN trained on digits, in about a minute"
    )
    p.add_argument("--out", default="slimtorch-demo", help="run folder (default slimtorch-demo)")
    p.set_defaults(func=cmd_demo)
