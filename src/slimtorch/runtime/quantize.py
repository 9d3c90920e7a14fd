"""Post-training int8 quantization through a runtime's own quantizer, with calibration data.

- ``onnx``: ONNX Runtime's ``quantize_static`` (QDQ, int8 weights per channel, uint8
  activations, min-max calibration on the batches given) after its ``quant_pre_process``;
  ``method="dynamic"`` uses ``quantize_dynamic`` (int8 weights, activations quantized at run
  time: the usual choice for transformers).
- ``executorch``: the PT2E flow with ExecuTorch's ``XNNPACKQuantizer`` (symmetric, per
  channel), calibrated on the batches, then lowered to XNNPACK.

PyTorch eager itself runs no int8 convolutions on the CPU outside ``torch.compile``, so there
is no ``torch`` int8 here: an int8 model is a file for its runtime.

Example:
    >>> q = quantize(model, x, "m.int8.onnx", data=[x])  # doctest: +SKIP
    >>> q.int8, q.rel_error < 0.1  # doctest: +SKIP
    (True, True)
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._files import check_output_path
from .._forward import (
    Inputs,
    calibration_batches,
    check_model,
    split_inputs,
)
from ..errors import ConfigError, ExportError, InputError
from .backends import quiet
from .export import (
    ExportResult,
    _first_line,
    capture,
    flat_inputs,
    kwarg_order,
    resolve_format,
    run_file,
)

__all__ = ["quantize"]

METHODS = {"onnx": ("static", "dynamic"), "executorch": ("static",)}


def _rebatched(batches: list[Inputs], example_inputs: Inputs, order: tuple[str, ...]):
    """Calibration batches as flat input lists at the example's shapes (exported files are
    fixed to them): every input concatenated over the batches along dim 0, then cut into
    pieces of the example's batch size. A remainder shorter than that is dropped."""
    want = flat_inputs(example_inputs, order)
    flats = [flat_inputs(b, order) for b in batches]
    for i, flat in enumerate(flats):
        if len(flat) != len(want) or any(
            a.shape[1:] != b.shape[1:] or a.dtype != b.dtype for a, b in zip(flat, want)
        ):
            got = [tuple(t.shape) for t in flat]
            raise InputError(
                f"calibration batch {i} has inputs {got}, the example inputs "
                f"{[tuple(t.shape) for t in want]}: give batches shaped like example_inputs "
                "(any batch size)."
            )
    joined = [torch.cat([f[j] for f in flats]) for j in range(len(want))]
    size = want[0].shape[0] if want and want[0].dim() else 1
    n = joined[0].shape[0] // size if joined and joined[0].dim() else 0
    if n == 0:
        raise InputError(
            f"the calibration data holds fewer than {size} samples (the example's batch "
            "size); give more batches."
        )
    return [[t[k * size : (k + 1) * size] for t in joined] for k in range(n)]


def _onnx_int8(program, path: Path, calib: list[list[torch.Tensor]], method: str) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .backends import get_backend

    with tempfile.TemporaryDirectory(prefix=".int8.", dir=path.parent) as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        get_backend("onnx").write(program, fp32)
        staged = Path(tmp) / path.name
        with quiet():
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            if method == "dynamic":
                quantize_dynamic(str(pre), str(staged), weight_type=QuantType.QInt8)
            else:
                import onnxruntime as ort

                names = [i.name for i in ort.InferenceSession(str(pre)).get_inputs()]

                class Reader(CalibrationDataReader):
                    def __init__(self) -> None:
                        self._it = iter(calib)

                    def get_next(self) -> dict[str, Any] | None:
                        batch = next(self._it, None)
                        if batch is None:
                            return None
                        return {n: t.numpy() for n, t in zip(names, batch)}

                quantize_static(
                    str(pre),
                    str(staged),
                    Reader(),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                )
        os.replace(staged, path)


def _executorch_int8(model, example_inputs, path: Path, calib) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    args, kwargs = split_inputs(example_inputs)
    with quiet():
        graph = capture(model, example_inputs).module()
        quantizer = XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=True)
        )
        prepared = prepare_pt2e(graph, quantizer)
        order = tuple(kwargs)
        with torch.no_grad():
            for batch in calib:
                n_args = len([a for a in args if isinstance(a, torch.Tensor)])
                prepared(*batch[:n_args], **dict(zip(order, batch[n_args:])))
        converted = convert_pt2e(prepared)
        program = torch.export.export(converted, args, kwargs, strict=False)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        staged = path.with_name(f".{path.name}.tmp")
        staged.write_bytes(lowered.to_executorch().buffer)
    os.replace(staged, path)


def quantize(
    model: nn.Module,
    example_inputs: Inputs,
    path: str | os.PathLike,
    *,
    data: Any,
    format: str | None = None,
    method: str = "static",
) -> ExportResult:
    """Writes an int8 version of ``model`` for a runtime, quantized by that runtime's tools.

    Args:
        model: a float model (pruned or not); left untouched.
        example_inputs: inputs that fix the file's shapes.
        path: ``.onnx`` (ONNX Runtime) or ``.pte`` (ExecuTorch with XNNPACK).
        data: calibration batches shaped like ``example_inputs`` (any batch size); a few
            hundred samples from the training set.
        format: ``"onnx"`` or ``"executorch"``; default from ``path``.
        method: ``"static"`` (calibrated activations) or, for ONNX, ``"dynamic"``.

    Returns:
        ``ExportResult`` with ``int8=True``; its errors are against the float model, a measure
        of what int8 costs (not a pass/fail check).
    """
    began = time.perf_counter()
    check_model(model)
    path = check_output_path(path, "quantized model path")
    backend = resolve_format(path, format)
    if backend.format not in METHODS:
        raise ConfigError(
            f"int8 quantization is available for {', '.join(METHODS)}, not {backend.format!r}."
        )
    if method not in METHODS[backend.format]:
        raise ConfigError(
            f"method={method!r} is not available for {backend.format}; choose one of "
            f"{', '.join(METHODS[backend.format])}."
        )
    if backend.format == "executorch":
        backend.check_installed()
    batches = calibration_batches(data, "int8 quantization", limit=64)
    program = capture(model, example_inputs)
    order = kwarg_order(program)
    calib = _rebatched(batches, example_inputs, order)
    try:
        if backend.format == "onnx":
            _onnx_int8(program, path, calib, method)
        else:
            _executorch_int8(model, example_inputs, path, calib)
    except (ExportError, InputError, ConfigError):
        raise
    except Exception as exc:
        raise ExportError(
            f"{backend.format} int8 quantization failed: {_first_line(exc)}. Export the float "
            "model instead, or report the op it names."
        ) from exc
    _, worst, rel = run_file(model, example_inputs, backend, path, order)
    return ExportResult.of(path, backend, worst, rel, began, order, int8=True)
