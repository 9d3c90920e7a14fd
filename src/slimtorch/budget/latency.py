"""A latency model of this CPU: per-layer times measured once, cached, summed into a prediction.

``LatencyTable`` times each distinct conv / linear shape it is asked about (a standalone layer
of that shape on an input of that shape, in inference mode at a fixed thread count, median of
interleaved runs) and keeps the result in a JSON file under ``~/.cache/slimtorch/latency``
(``SLIMTORCH_CACHE`` overrides the folder). The file is keyed by this machine: CPU model, ISA
level, torch version and thread count; a file written elsewhere is not trusted but rebuilt,
with a warning. ``predict_ms`` sums the table over a model's layers and adds what the layers
do not explain (norms, activations, pooling, Python), calibrated once on a reference model by
a real measurement and scaled by activation volume.

Example:
    >>> table = LatencyTable(threads=1)
    >>> model = LatencyModel(table, reference, x)   # times reference once
    >>> model.predict_ms(pruned)                     # no timing of pruned itself
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._files import atomic_write
from .._forward import Inputs, check_threads
from ..graph.trace import trace
from ..measure.latency import benchmark, fixed_threads
from ..measure.timing import interleaved_times

__all__ = ["LatencyModel", "LatencyTable", "LayerShape", "layer_shapes", "machine_key"]

_FORMAT = 1


@dataclass(frozen=True)
class LayerShape:
    """One conv or linear layer as it runs: its sizes and the shape of its input."""

    kind: str  # "conv1d", "conv2d" or "linear"
    in_ch: int
    out_ch: int
    input: tuple[int, ...]
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    bias: bool = True

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def build(self) -> tuple[nn.Module, torch.Tensor]:
        """A standalone layer of this shape and a random input for it."""
        if self.kind == "linear":
            layer: nn.Module = nn.Linear(self.in_ch, self.out_ch, bias=self.bias)
        else:
            cls = nn.Conv1d if self.kind == "conv1d" else nn.Conv2d
            layer = cls(self.in_ch, self.out_ch, self.kernel, self.stride, self.padding,
                        self.dilation, self.groups, bias=self.bias)  # fmt: skip
        return layer.eval(), torch.randn(self.input)

    def out_elements(self) -> int:
        """Elements of the layer's output (activation volume, for the unexplained rest)."""
        if self.kind == "linear":
            return int(torch.Size(self.input[:-1]).numel()) * self.out_ch
        spatial = [
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, k, s, p, d in zip(
                self.input[2:], self.kernel, self.stride, self.padding, self.dilation
            )
        ]
        return self.input[0] * self.out_ch * int(torch.Size(spatial).numel())


def layer_shapes(model: nn.Module, example_inputs: Inputs) -> dict[str, LayerShape]:
    """Every ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` that ran, with its input shape
    (from one shape-only trace)."""
    graph = trace(model, example_inputs, meta=True)
    modules = dict(model.named_modules())
    out: dict[str, LayerShape] = {}
    for name, call in graph.calls.items():
        m = modules.get(name)
        args = call.in_shapes[0] if isinstance(call.in_shapes, tuple) else ()
        if not args or not isinstance(args[0], tuple):
            continue
        shape = tuple(args[0])
        bias = getattr(m, "bias", None) is not None
        if type(m) is nn.Linear:
            out[name] = LayerShape("linear", m.in_features, m.out_features, shape, bias=bias)
        elif type(m) in (nn.Conv1d, nn.Conv2d) and isinstance(m.padding, tuple):
            out[name] = LayerShape(
                "conv1d" if type(m) is nn.Conv1d else "conv2d", m.in_channels, m.out_channels,
                shape, tuple(m.kernel_size), tuple(m.stride), tuple(m.padding),
                tuple(m.dilation), m.groups, bias,
            )  # fmt: skip
    return out


def machine_key(threads: int) -> dict[str, Any]:
    """What a latency table is only valid for."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "format": _FORMAT,
        "cpu": cpu,
        "isa": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": threads,
    }


def _cache_dir() -> Path:
    root = os.environ.get("SLIMTORCH_CACHE") or Path.home() / ".cache" / "slimtorch"
    return Path(root) / "latency"


class LatencyTable:
    """Measured milliseconds per layer shape on this CPU at ``threads``, cached on disk.

    Args:
        threads: intra-op threads the layers are timed at (1: a single-core device).
        path: the cache file; by default one per machine key in ``~/.cache/slimtorch/latency``.
        rounds: timed runs per layer shape (median).
    """

    def __init__(
        self, threads: int = 1, path: str | os.PathLike | None = None, rounds: int = 15
    ) -> None:
        self.threads = check_threads(threads)
        self.key = machine_key(self.threads)
        if path is None:
            tag = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:10]
            name = f"{self.key['isa']}-t{self.threads}-torch{self.key['torch']}-{tag}.json"
            path = _cache_dir() / name.replace("+", "_").replace("/", "_")
        self.path = Path(path)
        self.rounds = rounds
        self.entries: dict[str, float] = {}
        self.measured = 0  # shapes timed by this object (not read from the cache)
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            ok = isinstance(data, dict) and data.get("machine") == self.key
            entries = data.get("entries", {}) if ok else {}
            valid = isinstance(entries, dict) and all(
                isinstance(v, int | float) and v > 0 for v in entries.values()
            )
        except (OSError, ValueError):
            ok = valid = False
        if ok and valid:
            self.entries = dict(entries)
            return
        warnings.warn(
            f"latency cache {self.path} was written for another machine, torch version or "
            "thread count (or is damaged); it is not used, and rebuilt as layers are timed",
            UserWarning,
            stacklevel=3,
        )

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"machine": self.key, "entries": self.entries}, indent=0)
        atomic_write(self.path, text)

    def ms(self, shape: LayerShape) -> float:
        """The layer's median latency in ms, timed now if the table does not hold it."""
        key = shape.key()
        if key not in self.entries:
            layer, x = shape.build()
            with torch.inference_mode(), fixed_threads(self.threads):
                (times,) = interleaved_times([lambda: layer(x)], warmup=3, rounds=self.rounds)
            self.entries[key] = 1e3 * statistics.median(times)
            self.measured += 1
        return self.entries[key]

    def layers_ms(self, shapes: dict[str, LayerShape]) -> float:
        total = sum(self.ms(s) for s in shapes.values())
        if self.measured:
            self.save()
        return total


class LatencyModel:
    """A whole-model latency prediction calibrated on ``reference`` (timed once, for real).

    ``predict_ms(m) = table(m's layers) + rest * volume(m) / volume(reference)``, where
    ``rest`` is the reference's measured time minus its layers' table time, and ``volume``
    the layers' output elements: norms and activations scale with the activations.

    Calibrate on the reference in the form the predicted models take: for pruned models,
    ``prune_channels(model, x, 0.0).model`` (the same function, with ``nn.MultiheadAttention``
    swapped for its twin, whose q/k/v are linears the table sees).
    """

    def __init__(self, table: LatencyTable, reference: nn.Module, example_inputs: Inputs) -> None:
        self.table, self.x = table, example_inputs
        shapes = layer_shapes(reference, example_inputs)
        self.reference_ms = benchmark(
            reference, example_inputs, table.threads, repeats=15
        ).median_ms
        self.layers_ms = table.layers_ms(shapes)  # the reference's layers, by the table
        self.rest_ms = max(self.reference_ms - self.layers_ms, 0.0)
        self.volume = max(sum(s.out_elements() for s in shapes.values()), 1)

    def predict_ms(self, model: nn.Module) -> float:
        shapes = layer_shapes(model, self.x)
        volume = sum(s.out_elements() for s in shapes.values())
        return self.table.layers_ms(shapes) + self.rest_ms * volume / self.volume
