"""The ``slimtorch`` command line, thin over the public API."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import SlimTorchError

__all__ = ["main"]

# Modules under slimtorch._cli; each adds its subcommands with register(subparsers).
COMMAND_MODULES = [
    "measure",
    "prune",
    "weights",
    "convert",
    "finetune",
    "search",
    "export",
    "run",
    "report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slimtorch",
        description="Make PyTorch models smaller and faster on CPUs, and measure it.",
        epilog="Models: torchvision:NAME, timm:NAME, a .slim file, or package.module:factory.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="on an error, print the full traceback too"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"slimtorch._cli.{name}").register(sub)
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slimtorch`` command: the one error boundary of the command line.

    Every failure prints one line on stderr: our errors (bad input) exit with 2, anything
    else (a bug, or the machine running out of memory) with 1; ``--debug`` adds the
    traceback. Ctrl-C exits with 130.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"slimtorch {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        if isinstance(exc, SlimTorchError):
            print(f"slimtorch {args.command}: error: {_one_line(str(exc))}", file=sys.stderr)
            return 2
        hint = "" if args.debug else " (run with --debug for the traceback)"
        print(
            f"slimtorch {args.command}: internal error: {type(exc).__name__}: "
            f"{_one_line(str(exc))[:500]}{hint}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
