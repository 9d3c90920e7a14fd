"""One self-contained HTML page of a compression run: tables, inline SVG charts, no scripts.

The run record (``RUN_DIR/run.json``, see ``report.record``) holds a title and the models
compared; every other section is optional and left out of the page when missing.

Example:
    >>> run = {"title": "demo", "models": [{"name": "baseline", "params": 10, "macs": 20}]}
    >>> render_report(run, "report.html")
    PosixPath('report.html')
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._files import atomic_write, check_output_path
from ..errors import ConfigError
from . import charts
from .record import Column, check_run, column_label, read_run
from .table import human

__all__ = ["build_html", "read_run", "render_report"]

MAX_WIDTH_ROWS = 60  # layers in the width chart; more would not be readable
TOP_LAYERS = 15  # slowest layers of each model in the breakdown chart

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
  color: #1d232a; max-width: 1100px; margin: 24px auto; padding: 0 20px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #dde1e6; padding-bottom: 3px; }
.meta { color: #57606a; margin: 0; }
code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 9px; border-bottom: 1px solid #e5e8eb; vertical-align: top; }
th { background: #f4f6f8; text-align: left; font-weight: 600; }
td.num, th.num { text-align: right; white-space: nowrap; }
.scroll { overflow-x: auto; }
.chart svg { display: block; width: 100%; max-width: 880px; height: auto; }
.speedup { color: #0b6e4f; font-weight: 600; }
.note { color: #57606a; font-size: 13px; margin: 4px 0; }
.warnings li { color: #8a4b00; }
footer { color: #8c959f; font-size: 12px; margin-top: 32px; }
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def render_report(run: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Writes the run as one self-contained HTML page (inline CSS and SVG, no scripts).

    Sections without data in ``run`` are left out. Charts need matplotlib (the ``report``
    extra); a run without chartable sections renders without it.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ConfigError: ``run`` is not a valid record, ``path`` cannot be written, or a chart is
            due and matplotlib is missing.
    """
    out = check_output_path(path, "report")
    if problems := check_run(run):
        raise ConfigError(f"the run record is malformed: {'; '.join(problems)}.")
    return atomic_write(out, build_html(run))


def build_html(run: Mapping[str, Any]) -> str:
    """The page's HTML text."""
    sections = [
        _summary(run["models"]),
        _latency(run["models"]),
        _widths(run.get("widths")),
        _breakdown(run.get("breakdown")),
        _pareto(run.get("pareto")),
        _sensitivity(run.get("sensitivity")),
        _steps(run.get("steps")),
        _warnings(run.get("warnings")),
    ]
    meta = []
    if run.get("recipe"):
        meta.append(f"recipe <code>{_esc(run['recipe'])}</code>")
    if run.get("created"):
        meta.append(f"created {_esc(run['created'])}")
    header = f"<h1>{_esc(run['title'])}</h1>"
    if meta:
        header += f'\n<p class="meta">{" · ".join(meta)}</p>'
    body = "\n".join(s for s in sections if s)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(run['title'])}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header>\n{header}\n</header>\n{body}\n"
        "<footer>written by slimtorch report</footer>\n</body>\n</html>\n"
    )


def _section(key: str, heading: str, *parts: str) -> str:
    inner = "\n".join(p for p in parts if p)
    return f'<section id="sec-{key}">\n<h2>{_esc(heading)}</h2>\n{inner}\n</section>'


def _chart(key: str, svg: str) -> str:
    return f'<div class="chart" id="chart-{key}">\n{svg}\n</div>'


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _table(headers: str, rows: Sequence[Sequence[tuple[str, bool]]]) -> str:
    """``headers`` is ready HTML; each cell is (escaped HTML, is a number)."""
    lines = []
    for row in rows:
        cells = "".join(f'<td class="num">{c}</td>' if n else f"<td>{c}</td>" for c, n in row)
        lines.append(f"<tr>{cells}</tr>")
    body = "\n".join(lines)
    return (
        f'<div class="scroll"><table>\n<thead>{headers}</thead>\n<tbody>\n{body}\n'
        "</tbody></table></div>"
    )


def _timings(models: Sequence[Mapping]) -> tuple[list[Column], list[dict[Column, Mapping]]]:
    """The latency columns, and each model's timing per column."""
    per_model = [
        {(t["backend"], t["threads"], bool(t.get("int8"))): t for t in m.get("latency") or []}
        for m in models
    ]
    order: dict[str, int] = {}
    for timings in per_model:
        for backend, _, _ in timings:
            order.setdefault(backend, len(order))
    columns = {key for timings in per_model for key in timings}
    return sorted(columns, key=lambda k: (order[k[0]], k[1], k[2])), per_model


def _speedup_reference(column: Column, per_model: list[dict]) -> float | None:
    """The first model's median on the column's backend and threads, in float if it has one."""
    backend, threads, _ = column
    for key in ((backend, threads, False), column):
        for timings in per_model:
            if key in timings:
                return timings[key]["median_ms"]
    return None


def _summary(models: Sequence[Mapping]) -> str:
    columns, per_model = _timings(models)
    heads = ["<th>model</th>"]
    heads += [f'<th class="num">{h}</th>' for h in ("params", "MACs", "size, MB", "accuracy")]
    heads += [
        f'<th class="num">{_esc(column_label(c)).replace(", ", "<br>", 1)}</th>' for c in columns
    ]
    rows = []
    for model, timings in zip(models, per_model):
        size, acc = model.get("size_bytes"), model.get("accuracy")
        row = [
            (_esc(model["name"]), False),
            ("–" if model.get("params") is None else human(model["params"]), True),
            ("–" if model.get("macs") is None else human(model["macs"]), True),
            ("–" if size is None else f"{size / 1e6:.2f}", True),
            ("–" if acc is None else f"{100 * acc:.2f}%", True),
        ]
        for column in columns:
            row.append(
                (_timing_cell(timings.get(column), _speedup_reference(column, per_model)), True)
            )
        rows.append(row)
    note = _note(
        "Latency: median ms of the timed runs ± half the interquartile range, and below it the "
        "speed-up against the first model timed on the same backend and threads."
    )
    return _section(
        "summary",
        "Before / after",
        _table(f"<tr>{''.join(heads)}</tr>", rows),
        note if columns else "",
    )


def _timing_cell(timing: Mapping | None, reference: float | None) -> str:
    if timing is None:
        return "–"
    median, iqr = timing["median_ms"], timing.get("iqr_ms")
    spread = "" if iqr is None else f" ± {iqr / 2:.2f}"
    speedup = f"{reference / median:.2f}×" if reference is not None and median > 0 else "–"
    return f'{median:.2f}{spread}<br><span class="speedup">{speedup}</span>'


def _latency(models: Sequence[Mapping]) -> str:
    columns, per_model = _timings(models)
    if not columns:
        return ""
    series = []
    for model, timings in zip(models, per_model):
        medians = [timings[c]["median_ms"] if c in timings else None for c in columns]
        spreads = [(timings[c].get("iqr_ms") or 0) / 2 if c in timings else None for c in columns]
        series.append((model["name"], medians, spreads))
    svg = charts.latency_chart([column_label(c).replace(", ", "\n", 1) for c in columns], series)
    return _section("latency", "Latency", _chart("latency", svg))


def _widths(widths: Sequence[Mapping] | None) -> str:
    if not widths:
        return ""
    changed = [(w["layer"], w["before"], w["after"]) for w in widths if w["before"] != w["after"]]
    notes = []
    if len(changed) < len(widths):
        n = len(widths) - len(changed)
        notes.append(f"{n} of {len(widths)} layers keep their width and are not shown.")
    if not changed:
        return _section("widths", "Layer widths", _note(notes[0]))
    if len(changed) > MAX_WIDTH_ROWS:

        def change(r):
            return abs(1 - r[2] / r[1]) if r[1] else math.inf

        keep = set(sorted(range(len(changed)), key=lambda i: -change(changed[i]))[:MAX_WIDTH_ROWS])
        notes.append(
            f"The {MAX_WIDTH_ROWS} layers whose width changed most are shown, of "
            f"{len(changed)} that changed."
        )
        changed = [r for i, r in enumerate(changed) if i in keep]
    before, after = sum(w["before"] for w in widths), sum(w["after"] for w in widths)
    if before:
        notes.append(
            f"All layers: {before:,} outputs before, {after:,} after ({after / before:.0%})."
        )
    svg = charts.widths_chart(changed)
    return _section("widths", "Layer widths", _chart("widths", svg), *map(_note, notes))


def _breakdown(breakdown: Mapping[str, Sequence[Mapping]] | None) -> str:
    if not breakdown or not any(breakdown.values()):
        return ""
    per_model = {name: {r["layer"]: r["ms"] for r in rows} for name, rows in breakdown.items()}
    slowest = {
        k: max(ms.get(k, 0) for ms in per_model.values()) for ms in per_model.values() for k in ms
    }
    layers = sorted(slowest, key=slowest.get, reverse=True)[:TOP_LAYERS]
    series = [(name, [ms.get(k, math.nan) for k in layers]) for name, ms in per_model.items()]
    totals = ", ".join(f"{name} {sum(ms.values()):.2f} ms" for name, ms in per_model.items())
    note = f"The {TOP_LAYERS} layers slowest in any model. Sum over all layers: {totals}."
    svg = charts.breakdown_chart(layers, series)
    return _section("breakdown", "Latency by layer", _chart("breakdown", svg), _note(note))


def _pareto(pareto: Mapping | None) -> str:
    if not pareto or not (pareto.get("points") or pareto.get("front")):
        return ""
    points, front = pareto.get("points") or [], pareto.get("front") or []
    target, original = pareto.get("target_ms"), pareto.get("original_ms")
    svg = charts.pareto_chart(points, front, target, original)
    note = f"{len(points)} candidates measured, {len(front)} on the front."
    if target is not None:
        note += f" Budget {target:.2f} ms"
        note += f" ({original / target:.2f}× faster than the original)." if original else "."
    return _section("pareto", "Pareto front", _chart("pareto", svg), _note(note))


def _sensitivity(sensitivity: Mapping[str, Sequence] | None) -> str:
    curves = {k: v for k, v in (sensitivity or {}).items() if v}
    if not curves:
        return ""
    svg = charts.sensitivity_chart(curves)
    note = ""
    if len(curves) > charts.NAMED_CURVES:
        note = _note(
            f"{len(curves)} layers; the {charts.NAMED_CURVES} whose metric changes most are "
            "named, the others are grey."
        )
    return _section("sensitivity", "Sensitivity", _chart("sensitivity", svg), note)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    return (
        f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
    )


def _steps(steps: Sequence[Mapping] | None) -> str:
    if not steps:
        return ""
    head = '<tr><th>step</th><th class="num">time</th><th>summary</th></tr>'
    rows = [
        [
            (_esc(s["step"]), False),
            (_duration(s.get("seconds")), True),
            (_esc(s.get("summary") or ""), False),
        ]
        for s in steps
    ]
    total = sum(s.get("seconds") or 0 for s in steps)
    rows.append([("<b>total</b>", False), (f"<b>{_duration(total)}</b>", True), ("", False)])
    return _section("steps", "Steps", _table(head, rows))


def _warnings(warnings: Sequence[str] | None) -> str:
    if not warnings:
        return ""
    items = "\n".join(f"<li>{_esc(w)}</li>" for w in warnings)
    items = f'<ul class="warnings">\n{items}\n</ul>'
    return _section("warnings", f"Warnings ({len(warnings)})", items)
