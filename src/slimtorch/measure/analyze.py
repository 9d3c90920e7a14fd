"""``analyze``: parameters, MACs, size and receptive field of a model, per layer and in total."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from .._forward import Inputs
from ..graph.trace import ModelGraph, trace
from ..report.table import format_table, human
from .macs import node_macs
from .receptive import ReceptiveField, receptive_fields
from .size import state_dict_bytes

__all__ = ["LayerRow", "ModelReport", "analyze", "count_macs"]


@dataclass(frozen=True)
class LayerRow:
    """One module that owns parameters or does multiply-accumulate work itself."""

    name: str
    type: str
    in_shapes: Any
    out_shapes: Any
    params: int
    macs: int
    share: float  # of the model's total MACs
    receptive_field: str = ""


@dataclass(frozen=True)
class ModelReport:
    """What ``analyze`` measured.

    Attributes:
        params: parameters the forward pass reads (tied weights counted once).
        unused_params: parameters the forward pass never read (e.g. GoogLeNet's auxiliary
            heads in eval mode), counted apart.
        macs: multiply-accumulates of one forward pass on the example inputs.
        size_bytes: bytes of the saved state_dict.
        layers: one row per module with parameters or MACs of its own.
        receptive_field: field of the last spatial feature map, or None without convolutions.
    """

    params: int
    unused_params: int
    macs: int
    size_bytes: int
    layers: list[LayerRow] = field(default_factory=list)
    receptive_field: ReceptiveField | None = None
    unused: list[str] = field(default_factory=list)

    def table(self, max_rows: int | None = None) -> str:
        rows = [
            (
                r.name or "(root)",
                r.type,
                _fmt_shapes(r.out_shapes),
                human(r.params),
                human(r.macs),
                f"{100 * r.share:.1f}%",
                r.receptive_field,
            )
            for r in self.layers[:max_rows]
        ]
        headers = ("layer", "type", "output", "params", "MACs", "share", "RF")
        return format_table(headers, rows)

    def summary(self) -> str:
        rf = f", receptive field {self.receptive_field}" if self.receptive_field else ""
        unused = f" (+{human(self.unused_params)} unused)" if self.unused_params else ""
        return (
            f"params {human(self.params)}{unused}, MACs {human(self.macs)}, "
            f"size {human(self.size_bytes, 'B')}{rf}"
        )

    def __str__(self) -> str:
        return self.table() + "\n" + self.summary()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["receptive_field"] = (
            asdict(self.receptive_field) if self.receptive_field is not None else None
        )
        return json.loads(json.dumps(d, default=str))


def _fmt_shapes(shapes: Any) -> str:
    if isinstance(shapes, tuple) and all(isinstance(i, int) for i in shapes):
        return "x".join(map(str, shapes)) or "scalar"
    if isinstance(shapes, list | tuple):
        return ", ".join(_fmt_shapes(s) for s in shapes if s is not None)
    if isinstance(shapes, dict):
        return ", ".join(f"{k}: {_fmt_shapes(v)}" for k, v in shapes.items() if v is not None)
    return "" if shapes is None else str(shapes)


def count_macs(graph: ModelGraph) -> dict[str, int]:
    """MACs per calling module (innermost) of a traced graph."""
    per: dict[str, int] = {}
    for node in graph.nodes:
        macs = node_macs(graph, node)
        if macs:
            per[node.module] = per.get(node.module, 0) + macs
    return per


def analyze(model: nn.Module, example_inputs: Inputs) -> ModelReport:
    """Counts parameters, MACs, saved size and receptive field of ``model``.

    One eval-mode forward pass on ``example_inputs`` is recorded; tensors on the ``meta``
    device work and cost almost nothing.

    Args:
        model: the model; it is not modified.
        example_inputs: e.g. ``torch.randn(1, 3, 224, 224)``: batch size and resolution set
            the MACs.

    Returns:
        A ``ModelReport``; ``print(report)`` shows the per-layer table.

    Example:
        >>> import torchvision
        >>> r = analyze(torchvision.models.resnet18(), torch.randn(1, 3, 224, 224))
        >>> r.params, round(r.macs / 1e9, 2)
        (11689512, 1.81)
    """
    graph = trace(model, example_inputs)
    macs = count_macs(graph)
    total = sum(macs.values())
    params = dict(model.named_parameters())  # deduplicated: tied weights count once
    used = {n for n in params if n in graph.used_params}
    fields = receptive_fields(graph)
    rf_by_module: dict[str, ReceptiveField] = {}
    last_rf = None
    for node in graph.nodes:
        for out in node.outputs:
            if out in fields and fields[out].module == node.module:
                rf_by_module.setdefault(node.module, fields[out])
                last_rf = fields[out]
    modules = dict(model.named_modules())
    rows = []
    for name, call in graph.calls.items():
        module = modules.get(name)
        own = 0
        if module is not None:
            own = sum(
                p.numel()
                for pn, p in module.named_parameters(recurse=False, prefix=name)
                if pn in used
            )
        m = macs.get(name, 0)
        if own or m:
            rf = rf_by_module.get(name)
            rows.append(
                LayerRow(
                    name,
                    call.type,
                    call.in_shapes,
                    call.out_shapes,
                    own,
                    m,
                    m / total if total else 0.0,
                    str(rf) if rf else "",
                )
            )
    unused = sorted(n for n in params if n not in used)
    return ModelReport(
        params=sum(params[n].numel() for n in used),
        unused_params=sum(params[n].numel() for n in unused),
        macs=total,
        size_bytes=state_dict_bytes(model),
        layers=rows,
        receptive_field=last_rf,
        unused=unused,
    )
