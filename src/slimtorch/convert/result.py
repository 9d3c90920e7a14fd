"""What ``slimtorch.convert`` returns: the new model and one row per layer."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from ..report.table import format_table, human

__all__ = ["ConvertResult", "ConvertedLayer", "SkippedLayer"]


@dataclass(frozen=True)
class ConvertedLayer:
    """One rewritten layer.

    Attributes:
        name: module name in the model.
        before, after: module types.
        error: relative output error ``||after(x) - before(x)|| / ||before(x)||`` on the
            layer's input from the example inputs (None without example inputs).
        params_before, params_after: parameters of the layer (with its BatchNorm for fuse_bn).
        macs_before, macs_after: MACs on that input (None without example inputs).
        latency_ms: ``{threads: (before, after)}``, the fastest of the interleaved runs
            ``layers="auto"`` made.
        note: the rank chosen, the energy kept, ...
    """

    name: str
    before: str
    after: str
    error: float | None
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    latency_ms: dict[int, tuple[float, float]] | None = None
    note: str = ""


@dataclass(frozen=True)
class SkippedLayer:
    """A candidate layer left unchanged, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class ConvertResult:
    """The converted model and what happened to each layer.

    Attributes:
        model: a new model; the input model is untouched. Its edits are recorded for ``.slim``.
        kind: the conversion kind.
        options: the options used, as plain data.
        layers: rewritten layers, in model order.
        skipped: candidate layers left alone, with the reason.
        output_error: relative error of the whole model's output on the example inputs.
    """

    model: nn.Module
    kind: str
    options: dict[str, Any]
    layers: list[ConvertedLayer] = field(default_factory=list)
    skipped: list[SkippedLayer] = field(default_factory=list)
    output_error: float | None = None

    def table(self) -> str:
        """Per-layer table: types, error, params and MACs before -> after, latency if timed."""
        timed = sorted({t for r in self.layers if r.latency_ms for t in r.latency_ms})
        headers = ["layer", "before -> after", "rel err", "params", "MACs", "note"]
        headers += [f"best ms @{t}t" for t in timed]
        rows = []
        for r in self.layers:
            row = [
                r.name,
                f"{r.before} -> {r.after}",
                "-" if r.error is None else f"{r.error:.2e}",
                f"{human(r.params_before)} -> {human(r.params_after)}",
                "-"
                if r.macs_before is None or r.macs_after is None
                else f"{human(r.macs_before)} -> {human(r.macs_after)}",
                r.note,
            ]
            for t in timed:
                b, a = (r.latency_ms or {}).get(t, (None, None))
                row.append("-" if b is None else f"{b:.3f} -> {a:.3f}")
            rows.append(row)
        return format_table(headers, rows, f"convert: {self.kind}")

    def summary(self) -> str:
        """One line: layers rewritten and skipped, params and MACs saved, output error."""
        pb = sum(r.params_before for r in self.layers)
        pa = sum(r.params_after for r in self.layers)
        parts = [f"{len(self.layers)} layer(s) rewritten, {len(self.skipped)} left alone"]
        parts.append(f"params of rewritten layers {human(pb)} -> {human(pa)}")
        if all(r.macs_before is not None for r in self.layers) and self.layers:
            mb = sum(r.macs_before or 0 for r in self.layers)
            ma = sum(r.macs_after or 0 for r in self.layers)
            parts.append(f"MACs {human(mb)} -> {human(ma)}")
        if self.output_error is not None:
            parts.append(f"model output rel err {self.output_error:.2e}")
        return "; ".join(parts)

    def skipped_table(self) -> str:
        return format_table(
            ("left alone", "why"), [(s.name, s.reason) for s in self.skipped], "skipped"
        )

    def __str__(self) -> str:
        out = [self.table()]
        if self.skipped:
            out.append(self.skipped_table())
        out.append(self.summary())
        return "\n\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model, as JSON-ready data."""
        d = {
            "kind": self.kind,
            "options": self.options,
            "layers": [asdict(r) for r in self.layers],
            "skipped": [asdict(s) for s in self.skipped],
            "output_error": self.output_error,
        }
        return json.loads(json.dumps(d, default=str))
