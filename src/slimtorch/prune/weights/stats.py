"""How sparse a model's prunable weights are: ``sparsity`` and ``zeroed_channels``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..._forward import check_model
from ...errors import ConfigError
from ...report.table import format_table, human
from .layers import prunable_layers
from .options import suggest

__all__ = ["LayerSparsity", "SparsityReport", "sparsity", "zeroed_channels"]


@dataclass(frozen=True)
class LayerSparsity:
    """Zeros of one layer's weight.

    Attributes:
        name: module name.
        shape: the weight's shape.
        zeros: weights equal to zero (``-0.0`` included).
        target: the fraction asked for, when the report comes from ``prune_weights_``.
    """

    name: str
    shape: tuple[int, ...]
    zeros: int
    target: float | None = None

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0


@dataclass(frozen=True)
class SparsityReport:
    """Per-layer and total fraction of zero weights over the prunable layers.

    ``report.total`` is the fraction over all listed weights, ``report["layer1.0.conv1"]`` one
    layer's fraction, ``print(report)`` an aligned table. ``target`` is the fraction asked of
    the whole selection (global scope or one uniform fraction), when known.
    """

    layers: tuple[LayerSparsity, ...]
    target: float | None = None

    @property
    def zeros(self) -> int:
        return sum(r.zeros for r in self.layers)

    @property
    def numel(self) -> int:
        return sum(r.numel for r in self.layers)

    @property
    def total(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0

    @property
    def by_layer(self) -> dict[str, float]:
        return {r.name: r.sparsity for r in self.layers}

    def __getitem__(self, name: str) -> float:
        for r in self.layers:
            if r.name == name:
                return r.sparsity
        raise KeyError(
            f"{name!r} is not a prunable layer of this report{suggest(name, self.names)}"
        )

    @property
    def collapsed(self) -> list[str]:
        """Layers left entirely zero although less was asked (global scope can do this)."""
        return [
            r.name
            for r in self.layers
            if r.zeros == r.numel and (r.target is None or r.target < 1) and self.target != 1
        ]

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.layers]

    def table(self, max_rows: int | None = None) -> str:
        """Aligned table: one row per layer (the first ``max_rows``) and a total row."""
        show_target = self.target is not None or any(r.target is not None for r in self.layers)

        def pct(x: float | None) -> str:
            return "-" if x is None else f"{100 * x:.2f}%"

        headers = ["layer", "shape", "weights", "zeros", "sparsity"] + ["target"] * show_target
        rows = []
        for r in self.layers[:max_rows]:
            shape = "x".join(map(str, r.shape))
            row = [r.name, shape, human(r.numel), human(r.zeros), pct(r.sparsity)]
            rows.append(row + [pct(r.target)] * show_target)
        total = ["total", "", human(self.numel), human(self.zeros), pct(self.total)]
        rows.append(total + [pct(self.target)] * show_target)
        return format_table(headers, rows)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        layers = [asdict(r) | {"sparsity": r.sparsity} for r in self.layers]
        return {"total": self.total, "target": self.target, "layers": layers}


def layer_report(
    model: nn.Module,
    names: Iterable[str],
    targets: dict[str, float] | None = None,
    total_target: float | None = None,
) -> SparsityReport:
    layers = prunable_layers(model)
    rows = []
    with torch.no_grad():
        for name in names:
            module, param = layers[name]
            w = getattr(module, param)
            rows.append(
                LayerSparsity(name, tuple(w.shape), int((w == 0).sum()), (targets or {}).get(name))
            )
    return SparsityReport(tuple(rows), total_target)


def sparsity(model: nn.Module, layers: Iterable[str] | None = None) -> SparsityReport:
    """Fraction of zero weights per prunable layer (Conv, Linear, masked layers) and in total.

    Biases and normalization layers are not counted. Zeros are counted in the weight the
    layer computes with (after masks).

    Args:
        model: any model.
        layers: module names to report; all prunable layers by default.

    Returns:
        A ``SparsityReport``; ``.total`` is zeros / weights over the listed layers.

    Example:
        >>> net = torch.nn.Linear(4, 4)
        >>> sparsity(net).total
        0.0
    """
    known = prunable_layers(check_model(model))
    names = list(known) if layers is None else list(layers)
    for name in names:
        if name not in known:
            raise ConfigError(
                f"layers names {name!r}, which is not a prunable layer of the model"
                f"{suggest(name, known)}; use names from slimtorch sparsity(model).names."
            )
    return layer_report(model, names)


def zeroed_channels(model: nn.Module) -> dict[str, list[int]]:
    """Output channels (rows of ``[out, in, *k]`` weights) that are entirely zero, per layer.

    Only layers with at least one such channel are listed. A zeroed channel still outputs its
    bias (and a following norm's shift): whoever removes it must fold that constant into the
    consumer or accept the change.

    Returns:
        ``{module name: sorted output-channel indices}``.

    Example:
        >>> conv = torch.nn.Conv2d(1, 3, 1)
        >>> with torch.no_grad():
        ...     conv.weight[1] = 0
        >>> zeroed_channels(torch.nn.Sequential(conv))
        {'0': [1]}
    """
    out: dict[str, list[int]] = {}
    with torch.no_grad():
        for name, (module, param) in prunable_layers(check_model(model)).items():
            w = getattr(module, param)
            dead = (w.reshape(w.shape[0], -1) == 0).all(1)
            if dead.any():
                out[name] = torch.nonzero(dead).flatten().tolist()
    return out
