"""slimtorch: make trained PyTorch models smaller and measurably faster on CPUs.

Example:
    >>> import slimtorch as st, torch, torchvision
    >>> report = st.analyze(torchvision.models.resnet18(), torch.randn(1, 3, 224, 224))
    >>> stats = st.benchmark(torchvision.models.resnet18(), torch.randn(1, 3, 224, 224), threads=1)
"""

from .errors import (
    ConfigError,
    ConvertError,
    FormatError,
    ForwardError,
    InputError,
    ModelSpecError,
    PruneError,
    SlimTorchError,
    TraceError,
)
from .graph.trace import ModelGraph, trace
from .io.spec import load_model
from .measure.analyze import LayerRow, ModelReport, analyze
from .measure.latency import Comparison, LatencyStats, benchmark, compare

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "ConfigError",
    "ConvertError",
    "FormatError",
    "ForwardError",
    "InputError",
    "LatencyStats",
    "LayerRow",
    "ModelGraph",
    "ModelReport",
    "ModelSpecError",
    "PruneError",
    "SlimTorchError",
    "TraceError",
    "analyze",
    "benchmark",
    "compare",
    "load_model",
    "trace",
]
