"""``export``: a model written for a deployment runtime, checked against PyTorch's outputs.

The model is captured once with ``torch.export`` (so data-dependent Python control flow is
named here, not deep inside a converter), then written by the runtime's own converter, loaded
back in that runtime and run on the example inputs; the file is kept only if its outputs match
PyTorch's within tolerance. Shapes are those of the example inputs (a static graph, which is
what edge runtimes want).

Example:
    >>> result = export(torch.nn.Linear(8, 4), torch.randn(2, 8), "fc.onnx")
    >>> result.max_abs_error < 1e-5
    True
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from .._files import check_output_path
from .._forward import Inputs, check_model, check_threads, eval_mode, run_forward, split_inputs
from .._validate import check_number
from ..errors import ExportError, InputError
from .backends import BACKENDS, Backend, Session, get_backend, quiet

__all__ = ["ExportResult", "export", "flat_inputs", "capture"]

_SUFFIX_FORMAT = {".onnx": "onnx", ".pte": "executorch", ".xml": "openvino"}


@dataclass(frozen=True)
class ExportResult:
    """A model file for a deployment runtime and how well it matches PyTorch.

    Attributes:
        path: the file (OpenVINO also writes ``path.with_suffix(".bin")``).
        format: ``"onnx"``, ``"executorch"`` or ``"openvino"``.
        runtime: what runs it (``"onnxruntime"``, ...): the ``backend=`` of ``benchmark``.
        size_bytes: size on disk (all files of the model).
        max_abs_error: largest absolute difference from PyTorch's outputs on the example
            inputs (NaN when not checked).
        rel_error: ``||file - torch|| / ||torch||`` over all outputs.
        seconds: time the export and check took.
        int8: the file holds an int8-quantized model.
        kwarg_order: keyword inputs in the order the file takes them.
    """

    path: Path
    format: str
    runtime: str
    size_bytes: int
    max_abs_error: float
    rel_error: float
    seconds: float
    int8: bool = False
    kwarg_order: tuple[str, ...] = field(default=())

    def load(self, threads: int | None = None) -> Session:
        """The file loaded in its runtime at ``threads`` intra-op threads (default: torch's)."""
        return get_backend(self.runtime).load(self.path, check_threads(threads))

    def inputs(self, example_inputs: Inputs) -> list[torch.Tensor]:
        """``example_inputs`` as the flat list of tensors the file takes."""
        return flat_inputs(example_inputs, self.kwarg_order)

    def __str__(self) -> str:
        kind = f"{self.format}{' int8' if self.int8 else ''}"
        return (
            f"{self.path} ({kind}, {self.size_bytes / 1e6:.2f} MB): max |{self.runtime} - torch| "
            f"{self.max_abs_error:.2e}, relative {self.rel_error:.2e}, {self.seconds:.1f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["path"] = str(self.path)
        out["kwarg_order"] = list(self.kwarg_order)
        return out

    @classmethod
    def of(
        cls,
        path: Path,
        backend: Backend,
        worst: float,
        rel: float,
        began: float,
        order: tuple[str, ...],
        int8: bool = False,
    ) -> ExportResult:
        """The result for a file just written and checked (size read from disk)."""
        size = sum(f.stat().st_size for f in model_files(path))
        seconds = time.perf_counter() - began
        return cls(path, backend.format, backend.runtime, size, worst, rel, seconds, int8, order)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportResult:
        """The result ``to_dict`` wrote (the file itself is not read until ``load``)."""
        data = dict(data)
        data["path"] = Path(data["path"])
        data["kwarg_order"] = tuple(data.get("kwarg_order", ()))
        return cls(**data)


def flat_inputs(example_inputs: Inputs, kwarg_order: tuple[str, ...] = ()) -> list[torch.Tensor]:
    """The tensors of ``example_inputs``: positional ones first, then keyword ones in
    ``kwarg_order`` (the order ``torch.export`` gave them), as exported files take them."""
    args, kwargs = split_inputs(example_inputs)
    order = list(kwarg_order) + [k for k in kwargs if k not in kwarg_order]
    leaves, _ = tree_flatten((args, [kwargs[k] for k in order if k in kwargs]))
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def capture(model: nn.Module, example_inputs: Inputs) -> torch.export.ExportedProgram:
    """The model as a ``torch.export`` program at the example inputs' shapes (eval mode)."""
    args, kwargs = split_inputs(example_inputs)
    try:
        with eval_mode(model), quiet():
            return torch.export.export(model, args, kwargs, strict=False)
    except Exception as exc:
        raise ExportError(
            f"torch.export cannot capture {type(model).__name__}: {_first_line(exc)}. The "
            "forward must run without data-dependent Python control flow on tensors (.item(), "
            "if tensor: ...); rewrite that part, or export the submodule that is deployed."
        ) from exc


def kwarg_order(program: torch.export.ExportedProgram) -> tuple[str, ...]:
    spec = program.call_spec.in_spec
    if spec is None or spec.num_children < 2:
        return ()
    return tuple(spec.child(1).context or ())


def resolve_format(path: Path, format: str | None) -> Backend:
    """The backend for ``format``, or for ``path``'s suffix when none is given."""
    if format is None:
        format = _SUFFIX_FORMAT.get(path.suffix.lower(), "onnx")
    backend = get_backend(format)
    if path.suffix.lower() != backend.suffix:
        raise InputError(
            f"{str(path)!r} is not a {backend.format} file name; a {backend.format} export "
            f"is written to a path ending in {backend.suffix!r} (e.g. model{backend.suffix})."
        )
    backend.check_installed()
    return backend


def model_files(path: Path) -> list[Path]:
    """The files of a written model: OpenVINO's weights sit beside its .xml."""
    extra = path.with_suffix(".bin")
    return [path, extra] if path.suffix == ".xml" and extra.exists() else [path]


def write_atomic(backend: Backend, program: torch.export.ExportedProgram, path: Path) -> None:
    """Writes the program with the backend, replacing ``path`` (and its sidecars) only once
    every file is complete."""
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        try:
            backend.write(program, staged)
        except Exception as exc:
            raise ExportError(
                f"the {backend.format} converter failed: {_first_line(exc)}. Export to another "
                f"format ({', '.join(sorted({b.format for _, b in BACKENDS.items()}))}), or "
                "report the op it names."
            ) from exc
        files = model_files(staged)
        for f in reversed(files):  # the .xml that names the weights goes in last
            os.replace(f, path.parent / f.name)


def compare_outputs(reference: Any, outputs: list[torch.Tensor]) -> tuple[float, float]:
    """(max abs error, relative error) of a runtime's outputs against PyTorch's."""
    ref = [t for t in tree_flatten(reference)[0] if isinstance(t, torch.Tensor)]
    if len(ref) != len(outputs):
        raise ExportError(
            f"the exported model returns {len(outputs)} tensors, PyTorch's {len(ref)}; export a "
            "model whose forward returns tensors (a tuple or dict of them)."
        )
    worst, num, den = 0.0, 0.0, 0.0
    for a, b in zip(ref, outputs):
        a, b = a.detach().double(), b.detach().double().reshape(a.shape)
        worst = max(worst, float((a - b).abs().max()) if a.numel() else 0.0)
        num += float((a - b).square().sum())
        den += float(a.square().sum())
    return worst, math.sqrt(num) / max(math.sqrt(den), 1e-30)


def export(
    model: nn.Module,
    example_inputs: Inputs,
    path: str | os.PathLike,
    format: str | None = None,
    *,
    check: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> ExportResult:
    """Writes ``model`` for a deployment runtime and checks the file against PyTorch.

    Args:
        model: the model (left untouched; exported in eval mode).
        example_inputs: a tensor, tuple or dict of inputs; the file is fixed to their shapes.
        path: the file to write: ``.onnx``, ``.pte`` (ExecuTorch) or ``.xml`` (OpenVINO,
            with a ``.bin`` beside it). Written only once complete.
        format: ``"onnx"``, ``"executorch"`` or ``"openvino"``; default from ``path``.
        check: run the file in its runtime and require its outputs to match PyTorch's:
            ``|file - torch| <= atol + rtol * max|torch|`` on every output.

    Returns:
        ``ExportResult`` with the path, size and the measured differences.

    Raises:
        ExportError: torch.export or the converter failed (the op is named), or the file's
            outputs differ from PyTorch's beyond the tolerance.
    """
    began = time.perf_counter()
    check_model(model)
    path = check_output_path(path, "export path")
    backend = resolve_format(path, format)
    check_number("rtol", rtol, low=0.0)
    check_number("atol", atol, low=0.0)
    program = capture(model, example_inputs)
    write_atomic(backend, program, path)
    order = kwarg_order(program)
    worst = rel = math.nan
    if check:
        reference, worst, rel = run_file(model, example_inputs, backend, path, order)
        scale = max(
            (float(t.abs().max()) for t in tree_flatten(reference)[0] if _nonempty(t)), default=0.0
        )
        if not worst <= atol + rtol * scale:
            raise ExportError(
                f"the {backend.format} file {str(path)!r} computes something else: max |"
                f"{backend.runtime} - torch| = {worst:.3g} (relative {rel:.3g}) > {atol:g} + "
                f"{rtol:g} x {scale:.3g}. Pass check=False to keep it anyway, or report the model."
            )
    return ExportResult.of(path, backend, worst, rel, began, order)


def run_file(
    model: nn.Module, example_inputs: Inputs, backend: Backend, path: Path, order: tuple[str, ...]
) -> tuple[Any, float, float]:
    """PyTorch's outputs on the example inputs, and the file's (max abs, relative) error."""
    with eval_mode(model), torch.no_grad():
        reference = run_forward(model, example_inputs)
    outputs = backend.load(path, torch.get_num_threads())(flat_inputs(example_inputs, order))
    return reference, *compare_outputs(reference, outputs)


def _nonempty(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.numel() > 0
