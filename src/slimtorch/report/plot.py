"""Plots (matplotlib, the optional ``report`` extra), written to image files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .._files import check_output_path
from ..errors import ConfigError

__all__ = ["pareto_plot"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'slimtorch[report]'") from None
    return plt


def pareto_plot(
    points: Sequence[tuple[float, float]],
    front: Sequence[tuple[float, float]],
    target_ms: float,
    original_ms: float,
    path: str | os.PathLike,
) -> Path:
    """Proxy loss against measured latency: every candidate, the front joined, the budget."""
    out = check_output_path(path, "plot")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, c="0.6", label="candidates")
    ax.plot([p[0] for p in front], [p[1] for p in front], "o-", c="C0", ms=5, label="Pareto front")
    ax.axvline(target_ms, c="C3", ls="--", lw=1, label=f"budget {target_ms:.2f} ms")
    ax.set_xlabel(f"measured latency, ms (original {original_ms:.2f} ms)")
    ax.set_ylabel("proxy loss (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
