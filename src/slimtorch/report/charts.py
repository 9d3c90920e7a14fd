"""The charts of a run report, drawn with matplotlib (Agg) and returned as inline SVG text.

Each function takes plain numbers and labels (``report.html`` turns the run record into them)
and returns one ``<svg>`` element. Text stays text (``svg.fonttype: none``): the page stays
small and searchable, and the browser draws the labels.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Mapping, Sequence

from .plot import _pyplot

__all__ = [
    "breakdown_chart",
    "latency_chart",
    "pareto_chart",
    "sensitivity_chart",
    "widths_chart",
]

WIDTH_IN = 7.0
HEIGHT_IN = 3.5
MAX_HEIGHT_IN = 8.5
NAMED_CURVES = 8  # sensitivity curves named in the legend; the rest are drawn grey

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "slimtorch-report",  # ids are then the same from one run to the next
    "font.size": 8,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.axisbelow": True,
}


def _label(text: object) -> str:
    """A label shown as written: a ``$`` would otherwise start matplotlib's math mode."""
    return str(text).replace("$", r"\$")


def _legend_above(ax, entries: int) -> None:
    """The legend in a row above the axes, where it hides no bar."""
    ax.legend(
        fontsize=7, frameon=False, loc="lower left", bbox_to_anchor=(0, 1), ncol=min(entries, 4)
    )


def _rows_height(rows: int) -> float:
    """Figure height for a chart with one row of bars per item, within the page's bounds."""
    return min(MAX_HEIGHT_IN, max(HEIGHT_IN, 1.0 + 0.125 * rows))


def _svg(prefix: str, draw: Callable, height: float = HEIGHT_IN) -> str:
    plt = _pyplot()
    with plt.rc_context(_RC):
        fig = plt.figure(figsize=(WIDTH_IN, height), dpi=100)
        try:
            draw(fig)
            fig.tight_layout()
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None})
        finally:
            plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    # Several SVGs share one HTML document, where ids must be unique: prefix them.
    return re.sub(r'(id="|url\(#|href="#)', rf"\g<1>{prefix}-", text)


def latency_chart(
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None], Sequence[float | None]]],
) -> str:
    """Median latency, one group of bars per backend x threads and one bar per model.

    Args:
        groups: label of each group, e.g. ``"onnxruntime, 4 threads"``.
        series: ``(model, medians, spreads)`` per model, one value per group (None: not
            measured); the spread (half the IQR) is drawn as an error bar.
    """

    def draw(fig):
        ax = fig.add_subplot()
        n = max(len(series), 1)
        width = 0.8 / n
        for i, (name, medians, spreads) in enumerate(series):
            xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
            ys = [math.nan if m is None else m for m in medians]
            err = [0.0 if s is None else s for s in spreads]
            ax.bar(xs, ys, width * 0.92, yerr=err, capsize=2, label=_label(name), color=f"C{i}")
        ax.set_xticks(range(len(groups)), [_label(g) for g in groups])
        ax.set_ylabel("median latency, ms (± IQR/2)")
        ax.grid(axis="y", lw=0.4, alpha=0.5)
        _legend_above(ax, len(series))

    return _svg("latency", draw)


def widths_chart(rows: Sequence[tuple[str, int, int]]) -> str:
    """Output width of each layer before (grey) and after (colour), one row per layer."""

    def draw(fig):
        ax = fig.add_subplot()
        ys = range(len(rows))
        ax.barh(ys, [r[1] for r in rows], 0.8, color="0.82", label="before")
        ax.barh(ys, [r[2] for r in rows], 0.5, color="C0", label="after")
        ax.set_yticks(ys, [_label(r[0]) for r in rows], fontsize=7)
        ax.set_ylim(len(rows) - 0.5, -0.5)  # the first layer at the top
        ax.set_xlabel("output width (channels / features)")
        ax.grid(axis="x", lw=0.4, alpha=0.5)
        _legend_above(ax, 2)

    return _svg("widths", draw, _rows_height(len(rows)))


def breakdown_chart(layers: Sequence[str], series: Sequence[tuple[str, Sequence[float]]]) -> str:
    """Milliseconds spent in each layer, one horizontal bar per model (NaN: no bar)."""

    def draw(fig):
        ax = fig.add_subplot()
        n = max(len(series), 1)
        height = 0.8 / n
        for i, (name, ms) in enumerate(series):
            ys = [j + (i - (n - 1) / 2) * height for j in range(len(layers))]
            ax.barh(ys, ms, height * 0.92, label=_label(name), color=f"C{i}")
        ax.set_yticks(range(len(layers)), [_label(name) for name in layers], fontsize=7)
        ax.set_ylim(len(layers) - 0.5, -0.5)  # the slowest layer at the top
        ax.set_xlabel("ms per forward")
        ax.grid(axis="x", lw=0.4, alpha=0.5)
        _legend_above(ax, len(series))

    return _svg("breakdown", draw, _rows_height(len(layers) * max(1, len(series)) * 0.6))


def pareto_chart(
    points: Sequence[Sequence[float]],
    front: Sequence[Sequence[float]],
    target_ms: float | None,
    original_ms: float | None,
) -> str:
    """Proxy loss against measured latency: candidates grey, the front joined, the budget dashed."""

    def draw(fig):
        ax = fig.add_subplot()
        ax.scatter(
            [p[0] for p in points], [p[1] for p in points], s=12, c="0.65", label="candidates"
        )
        if front:
            front_sorted = sorted(front, key=lambda p: p[0])
            xs, ys = [p[0] for p in front_sorted], [p[1] for p in front_sorted]
            ax.plot(xs, ys, "o-", c="C0", ms=4, label="Pareto front")
        if target_ms is not None:
            ax.axvline(target_ms, c="C3", ls="--", lw=1, label=f"budget {target_ms:.2f} ms")
        xlabel = "measured latency, ms"
        if original_ms is not None:
            xlabel += f" (original {original_ms:.2f} ms)"
        ax.set_xlabel(xlabel)
        ax.set_ylabel("proxy loss (lower is better)")
        ax.grid(lw=0.4, alpha=0.5)
        _legend_above(ax, 3)

    return _svg("pareto", draw)


def sensitivity_chart(curves: Mapping[str, Sequence[Sequence[float]]]) -> str:
    """Metric against sparsity, one line per layer; the layers that move most are named.

    Returns:
        The SVG; with over ``NAMED_CURVES`` layers only the ``NAMED_CURVES`` whose metric
        changes most are coloured and named, the others are thin grey lines.
    """

    def spread(points):
        ms = [p[1] for p in points]
        return max(ms) - min(ms) if ms else 0.0

    named = set(sorted(curves, key=lambda k: spread(curves[k]), reverse=True)[:NAMED_CURVES])

    def draw(fig):
        ax = fig.add_subplot()
        colour = 0
        for layer, points in curves.items():
            pts = sorted(points, key=lambda p: p[0])
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            if layer in named:
                ax.plot(xs, ys, "o-", ms=3, lw=1.2, c=f"C{colour}", label=_label(layer))
                colour += 1
            else:
                ax.plot(xs, ys, "-", lw=0.6, c="0.75", zorder=1)
        ax.set_xlabel("sparsity of the layer")
        ax.set_ylabel("metric")
        ax.grid(lw=0.4, alpha=0.5)
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))

    return _svg("sensitivity", draw)
