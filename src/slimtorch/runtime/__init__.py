"""Deployment runtimes: export a model to ONNX Runtime, ExecuTorch or OpenVINO, checked
against PyTorch; int8 quantization through the runtime's own quantizer; sessions that
``benchmark(backend=...)`` times."""

from .backends import Backend, Session, backend_names, get_backend, register_backend
from .export import ExportResult, export, flat_inputs
from .quantize import quantize

__all__ = [
    "Backend",
    "ExportResult",
    "Session",
    "backend_names",
    "export",
    "flat_inputs",
    "get_backend",
    "quantize",
    "register_backend",
]
