"""Argument types shared by subcommands."""

from __future__ import annotations

import argparse

__all__ = ["input_shape", "thread_count"]


def input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise argparse.ArgumentTypeError(
            f"input shape {text!r} is not a list of positive integers; write e.g. 1,3,224,224"
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
