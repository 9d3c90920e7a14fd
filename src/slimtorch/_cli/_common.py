"""Argument types shared by subcommands."""

from __future__ import annotations

import argparse

from .._files import check_output_path

__all__ = ["MAX_INPUT_ELEMENTS", "check_output", "input_shape", "thread_count"]

MAX_INPUT_ELEMENTS = 1 << 28  # 1 GiB of float32: far beyond any real example input


def check_output(args: argparse.Namespace) -> None:
    """Refuses a bad ``-o`` before any work starts (a missing folder, a folder as the name)."""
    if getattr(args, "output", None):
        check_output_path(args.output, "-o")


def input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise argparse.ArgumentTypeError(
            f"input shape {text!r} is not a list of positive integers; write e.g. 1,3,224,224"
        )
    n = 1
    for s in shape:
        n *= s
    if n > MAX_INPUT_ELEMENTS:
        raise argparse.ArgumentTypeError(
            f"input shape {text!r} has {n:,} elements, over {MAX_INPUT_ELEMENTS:,}; an example "
            "input of one image is enough, e.g. 1,3,224,224"
        )
    return shape


def thread_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"--threads {text!r} is invalid; use an integer >= 1 (1 = a single-core device)"
        )
    return n
