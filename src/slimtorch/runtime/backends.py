"""Deployment runtimes: how a model is written in a runtime's format, and how the file runs.

A ``Backend`` turns a ``torch.export`` program into a file (``write``) and a file into a
``Session`` that runs it at a fixed thread count (``load``). Three are built in, each using
the runtime's own converter: ``onnx`` (ONNX Runtime, servers), ``executorch`` (ExecuTorch with
the XNNPACK delegate, phones and edge boards) and ``openvino`` (Intel CPUs). They are looked
up by format or runtime name (``"onnx"`` or ``"onnxruntime"``); ``register_backend`` adds
another.

Example:
    >>> backend = get_backend("onnxruntime")
    >>> backend.format, backend.suffix
    ('onnx', '.onnx')
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._registry import Registry
from ..errors import ConfigError

__all__ = ["Backend", "Session", "backend_names", "get_backend", "register_backend"]

BACKENDS: Registry[Backend] = Registry(
    "deployment backend", "name", hint="register one with slimtorch.register_backend."
)

_INSTALL = "pip install 'slimtorch[deploy]'"


class Session:
    """A loaded model file: ``session(inputs)`` runs it on a list of tensors (the flat tensor
    inputs of the exported program, in order) and returns its outputs as a list of tensors.

    ``prepared(inputs)`` converts the inputs once and returns a zero-argument call, so a timing
    loop times the runtime, not the conversion.
    """

    def __init__(self, prepare: Callable[[Sequence[torch.Tensor]], Callable[[], list[Any]]]):
        self._prepare = prepare

    def prepared(self, inputs: Sequence[torch.Tensor]) -> Callable[[], list[Any]]:
        return self._prepare(list(inputs))

    def __call__(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [_as_tensor(o) for o in self.prepared(inputs)()]


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return torch.from_numpy(np.ascontiguousarray(value))


@dataclass(frozen=True)
class Backend:
    """One deployment runtime.

    Attributes:
        format: the file format's name (``"onnx"``).
        runtime: the runtime that runs it (``"onnxruntime"``), the ``backend=`` of benchmark.
        suffix: the file name's ending (``".onnx"``).
        packages: the Python packages it needs (checked before any work).
        write: ``write(exported_program, path)`` writes the file.
        load: ``load(path, threads) -> Session``.
    """

    format: str
    runtime: str
    suffix: str
    packages: tuple[str, ...]
    write: Callable[[torch.export.ExportedProgram, Path], None]
    load: Callable[[Path, int], Session]

    def check_installed(self) -> None:
        missing = [p for p in self.packages if importlib.util.find_spec(p) is None]
        if missing:
            raise ConfigError(
                f"the {self.runtime} backend needs {', '.join(map(repr, missing))}, not "
                f"installed here; install it with {_INSTALL}."
            )


def register_backend(backend: Backend, *, override: bool = False) -> Backend:
    """Adds a deployment runtime, found by its format and its runtime name."""
    for key in dict.fromkeys((backend.format, backend.runtime)):
        BACKENDS.add(key, backend, override=override)
    return backend


def get_backend(name: str) -> Backend:
    """The backend for a format or runtime name; ``ConfigError`` lists the known ones."""
    if isinstance(name, Backend):
        return name
    return BACKENDS.get(name)


def backend_names() -> list[str]:
    """Runtime names of the registered backends (what ``benchmark(backend=)`` takes)."""
    return sorted({b.runtime for _, b in BACKENDS.items()})


@contextlib.contextmanager
def quiet():
    """Silences what converters print and warn (progress lines, deprecations) while they run."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield


# -- ONNX Runtime ---------------------------------------------------------------------------
def _write_onnx(program: torch.export.ExportedProgram, path: Path) -> None:
    with quiet():
        onnx_program = torch.onnx.export(program, dynamo=True, verbose=False)
        onnx_program.save(str(path))


def _load_onnx(path: Path, threads: int) -> Session:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # idle worker threads spin for a while after each run by default: with several sessions
    # timed in turn (compare), one session's spinning threads would slow down the next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def prepare(inputs: list[torch.Tensor]) -> Callable[[], list[Any]]:
        if len(inputs) != len(names):
            raise ConfigError(
                f"{path.name} takes {len(names)} inputs ({', '.join(names)}), got {len(inputs)}"
            )
        feed = {n: t.detach().cpu().numpy() for n, t in zip(names, inputs)}
        return lambda: session.run(None, feed)

    return Session(prepare)


# -- ExecuTorch (XNNPACK) ---------------------------------------------------------------------
def _write_executorch(program: torch.export.ExportedProgram, path: Path) -> None:
    with quiet():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        path.write_bytes(lowered.to_executorch().buffer)


def _load_executorch(path: Path, threads: int) -> Session:
    with quiet():
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        # XNNPACK's thread pool is process-wide; it is sized before the program is loaded
        # (resizing it under a loaded delegate is what the binding calls unsafe)
        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)
        program = Runtime.get().load_program(path)
        method = program.load_method("forward")

    def prepare(inputs: list[torch.Tensor]) -> Callable[[], list[Any]]:
        args = [t.detach().contiguous() for t in inputs]
        # the method reads the program's buffers: the closure keeps the program alive
        return lambda: list(method.execute(args)) if program is not None else []

    return Session(prepare)


# -- OpenVINO ---------------------------------------------------------------------------------
def _write_openvino(program: torch.export.ExportedProgram, path: Path) -> None:
    with quiet():
        import openvino as ov

        # float32 as exported: save_model would halve the weights to float16 by default
        ov.save_model(ov.convert_model(program), str(path), compress_to_fp16=False)


def _load_openvino(path: Path, threads: int) -> Session:
    import openvino as ov

    # f32: on CPUs with bf16 units OpenVINO would otherwise compute in bf16 by default
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
    }
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()

    def prepare(inputs: list[torch.Tensor]) -> Callable[[], list[Any]]:
        arrays = [t.detach().cpu().numpy() for t in inputs]

        def run() -> list[Any]:
            result = request.infer(arrays)
            return [result[o] for o in compiled.outputs]

        return run

    return Session(prepare)


register_backend(
    Backend("onnx", "onnxruntime", ".onnx", ("onnxruntime", "onnxscript"), _write_onnx, _load_onnx)
)
register_backend(
    Backend(
        "executorch", "executorch", ".pte", ("executorch",), _write_executorch, _load_executorch
    )
)
register_backend(
    Backend("openvino", "openvino", ".xml", ("openvino",), _write_openvino, _load_openvino)
)
