"""CPU latency: ``benchmark`` for one model, ``compare`` for several, interleaved.

Every timed run is one eval-mode forward under ``torch.inference_mode`` with the thread count
fixed, timed on its own by ``measure.timing.interleaved_times``. With ``backend=`` other than
``"torch"`` the model is exported to that runtime first (``slimtorch.runtime``, checked against
PyTorch) and the runtime's session is timed the same way, at the same thread count; an
``ExportResult`` (an exported or int8 file) is timed on its own runtime.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._forward import Inputs, check_model, check_threads, eval_mode, run_forward, split_inputs
from .._registry import suggest
from .._validate import check_int
from ..errors import ConfigError, InputError
from ..report.table import format_table, human
from .timing import interleaved_times

__all__ = ["Comparison", "LatencyStats", "benchmark", "compare"]


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one forward pass, in milliseconds, over ``repeats`` timed runs."""

    median_ms: float
    p90_ms: float
    iqr_ms: float
    mean_ms: float
    threads: int
    batch_size: int
    repeats: int
    backend: str = "torch"

    def __str__(self) -> str:
        on = "" if self.backend == "torch" else f" on {self.backend}"
        return (
            f"{self.median_ms:.2f} ms median (p90 {self.p90_ms:.2f}, IQR {self.iqr_ms:.2f}) "
            f"at {self.threads} thread(s){on}, batch {self.batch_size}, {self.repeats} runs"
        )

    @classmethod
    def from_times(
        cls, times_s: list[float], threads: int, batch: int, backend: str = "torch"
    ) -> LatencyStats:
        ms = sorted(t * 1e3 for t in times_s)
        q = statistics.quantiles(ms, n=20, method="inclusive") if len(ms) > 1 else ms * 19
        quart = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else ms * 3
        return cls(
            median_ms=statistics.median(ms),
            p90_ms=q[17],
            iqr_ms=quart[2] - quart[0],
            mean_ms=statistics.fmean(ms),
            threads=threads,
            batch_size=batch,
            repeats=len(ms),
            backend=backend,
        )


def _batch_size(example_inputs: Inputs) -> int:
    args, kwargs = split_inputs(example_inputs)
    for x in (*args, *kwargs.values()):
        if isinstance(x, torch.Tensor) and x.dim() > 0:
            return int(x.shape[0])
    return 1


@contextlib.contextmanager
def fixed_threads(threads: int):
    """Sets torch's intra-op thread count, restoring the previous one afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def forward_fn(model: nn.Module, example_inputs: Inputs) -> Callable[[], Any]:
    """A zero-argument call of one forward on the inputs (what the timing loop times)."""
    args, kwargs = split_inputs(example_inputs)
    return lambda: model(*args, **kwargs)


def check_backend(backend: str) -> str:
    """``backend`` if it names torch or a registered runtime, else ``ConfigError``."""
    from ..runtime import backend_names

    known = ["torch", *backend_names()]
    if backend not in known and not _is_format(backend):
        raise ConfigError(
            f"unknown backend {backend!r}{suggest(backend, known)}; choose one of "
            f"{', '.join(known)}."
        )
    return backend


def _is_format(name: str) -> bool:
    from ..runtime.backends import BACKENDS

    return name in BACKENDS


def _runtime_name(model: Any, backend: str) -> str:
    if isinstance(model, nn.Module):
        if backend == "torch":
            return "torch"
        from ..runtime import get_backend

        return get_backend(backend).runtime
    return model.runtime


@contextlib.contextmanager
def timed_calls(models: list[Any], example_inputs: Inputs, backend: str, threads: int):
    """A zero-argument call per model, ready to time: a forward in eval mode and inference
    mode for a module on torch; a runtime session otherwise (modules exported first, into a
    folder removed afterwards). Thread count fixed while the block runs."""
    from ..runtime import ExportResult, export, get_backend

    with contextlib.ExitStack() as stack:
        calls = []
        tmp = None
        for i, model in enumerate(models):
            if isinstance(model, nn.Module) and backend == "torch":
                stack.enter_context(eval_mode(model))
                calls.append(forward_fn(model, example_inputs))
                continue
            if isinstance(model, nn.Module):
                if tmp is None:
                    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                suffix = get_backend(backend).suffix
                model = export(model, example_inputs, tmp / f"model{i}{suffix}", backend)
            elif not isinstance(model, ExportResult):
                raise InputError(
                    f"expected a torch.nn.Module or an ExportResult (from slimtorch.export or "
                    f"slimtorch.quantize), got {type(model).__name__}."
                )
            calls.append(model.load(threads).prepared(model.inputs(example_inputs)))
        stack.enter_context(torch.inference_mode())
        stack.enter_context(fixed_threads(threads))
        yield calls


def benchmark(
    model: Any,
    example_inputs: Inputs,
    threads: int | None = None,
    *,
    backend: str = "torch",
    warmup: int = 5,
    repeats: int = 30,
    min_time_s: float = 0.0,
) -> LatencyStats:
    """Measures the CPU latency of one forward pass.

    The model runs in eval mode under ``torch.inference_mode`` with the thread count fixed;
    each module's mode and torch's thread setting are restored afterwards.

    Args:
        model: the model to time, or an ``ExportResult`` (an exported file, timed on its
            runtime).
        example_inputs: a tensor, tuple or dict of inputs; dim 0 of the first tensor is
            reported as the batch size.
        threads: intra-op threads; 1 stands for a single-core low-power device, ``None``
            uses what torch uses now.
        backend: ``"torch"``, or a runtime the model is exported to and timed on:
            ``"onnxruntime"``, ``"executorch"`` (XNNPACK), ``"openvino"``.
        warmup: untimed runs first (allocator, oneDNN primitive caches).
        repeats: timed runs; more runs are made until ``min_time_s`` has passed.
        min_time_s: minimum total timed duration.

    Returns:
        ``LatencyStats`` with median, p90 and IQR in milliseconds.

    Example:
        >>> stats = benchmark(torch.nn.Linear(64, 64), torch.randn(8, 64), threads=1)
        >>> stats.threads
        1
    """
    if not hasattr(model, "runtime"):
        check_model(model)
    check_backend(backend)
    n_threads = check_threads(threads)
    check_int("repeats", repeats)
    if isinstance(model, nn.Module):
        with eval_mode(model), torch.inference_mode():
            run_forward(model, example_inputs)  # a failing forward is named before timing
    with timed_calls([model], example_inputs, backend, n_threads) as calls:
        (times,) = interleaved_times(calls, warmup=warmup, rounds=repeats, min_time_s=min_time_s)
    return LatencyStats.from_times(
        times, n_threads, _batch_size(example_inputs), _runtime_name(model, backend)
    )


@dataclass(frozen=True)
class Comparison:
    """Side-by-side measurements of several models on the same inputs."""

    rows: list[dict[str, Any]]
    threads: int

    def __str__(self) -> str:
        base = self.rows[0]["median_ms"] if self.rows else 1.0
        table = [
            (
                r["name"],
                r.get("backend", "torch"),
                "-" if r["params"] is None else human(r["params"]),
                "-" if r["macs"] is None else human(r["macs"]),
                f"{r['median_ms']:.2f}",
                f"{r['p90_ms']:.2f}",
                f"{r['median_ms'] / base:.2f}x",
            )
            for r in self.rows
        ]
        title = f"latency at {self.threads} thread(s), interleaved runs"
        headers = ("model", "backend", "params", "MACs", "median ms", "p90 ms", "vs first")
        return format_table(headers, table, title)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    models: Mapping[str, Any],
    example_inputs: Inputs,
    threads: int | None = None,
    *,
    backend: str = "torch",
    warmup: int = 3,
    rounds: int = 20,
    per_round: int = 1,
) -> Comparison:
    """Measures several models in interleaved runs (A B A B ...), so the machine's drift cancels.

    Args:
        models: name -> model (or ``ExportResult``, timed on its runtime); the first is the
            baseline of the ratio column.
        example_inputs: inputs given to every model.
        threads: intra-op threads (see ``benchmark``).
        backend: where modules run (see ``benchmark``); files run on their own runtime.
        warmup: untimed runs of each model before the first round.
        rounds: rounds; each round times every model ``per_round`` times.

    Returns:
        A ``Comparison``; ``print()`` shows params, MACs, median and p90 latency, and each
        model's latency ratio to the first.

    Example:
        >>> table = compare({"a": torch.nn.Linear(8, 8), "b": torch.nn.Linear(8, 4)},
        ...                 torch.randn(1, 8), threads=1, rounds=3)
        >>> [r["name"] for r in table.rows]
        ['a', 'b']
    """
    from .analyze import analyze

    if not models:
        raise ConfigError("compare() got no models; pass a dict such as {'resnet50': model}.")
    n_threads = check_threads(threads)
    check_backend(backend)
    reports = {
        name: analyze(check_model(m), example_inputs)
        for name, m in models.items()
        if not hasattr(m, "runtime")
    }
    with timed_calls(list(models.values()), example_inputs, backend, n_threads) as runs:
        measured = interleaved_times(runs, warmup=warmup, rounds=rounds, per_round=per_round)
        times = dict(zip(models, measured))
    batch = _batch_size(example_inputs)
    rows = []
    for name, model in models.items():
        stats = LatencyStats.from_times(
            times[name], n_threads, batch, _runtime_name(model, backend)
        )
        report = reports.get(name)
        rows.append(
            {
                "name": name,
                "params": report.params if report else None,
                "macs": report.macs if report else None,
            }
            | asdict(stats)
        )
    return Comparison(rows, n_threads)
