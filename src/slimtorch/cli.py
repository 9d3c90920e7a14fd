"""The ``slimtorch`` command line, thin over the public API."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import SlimTorchError

__all__ = ["main"]

# Modules under slimtorch._cli; each adds its subcommands with register(subparsers).
COMMAND_MODULES = ["measure", "prune", "weights", "convert"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slimtorch",
        description="Make PyTorch models smaller and faster on CPUs, and measure it.",
        epilog="Models: torchvision:NAME, timm:NAME, a .slim file, or package.module:factory.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"slimtorch._cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slimtorch`` command; our errors print as one line, exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SlimTorchError as exc:
        print(f"slimtorch {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
