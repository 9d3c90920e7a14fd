"""``slimtorch demo``: the whole pipeline on the embedded default, the shipped ``demo`` recipe.

A small CNN is trained on scikit-learn's digits (seconds), pruned until it runs twice as fast
on this CPU (timed), recovered by distillation from the trained model, exported to ONNX (float
and int8, checked against PyTorch), measured on torch and ONNX Runtime at 1 and all threads,
and reported as one HTML file.
"""

from __future__ import annotations

import os
import time

from .recipe import run_recipe

__all__ = ["run_demo"]


def run_demo(out: str | os.PathLike = "slimtorch-demo") -> None:
    began = time.perf_counter()
    result = run_recipe("demo", out)
    print(result.summary())
    print(f"\ndone in {time.perf_counter() - began:.0f} s")
    if result.report:
        print(f"report: {result.report.resolve()}")
