"""slimtorch: make trained PyTorch models smaller and measurably faster on CPUs.

Example:
    >>> import slimtorch as st, torch, torchvision
    >>> report = st.analyze(torchvision.models.resnet18(), torch.randn(1, 3, 224, 224))
    >>> stats = st.benchmark(torchvision.models.resnet18(), torch.randn(1, 3, 224, 224), threads=1)
"""

from .convert import (
    ConvertResult,
    conversion_kinds,
    convert,
    dilate_to_restore,
    register_conversion,
)
from .edit import register_surgery
from .edit.refit import CompensationReport, compensate_
from .errors import (
    CheckpointError,
    ConfigError,
    ConvertError,
    ExportError,
    FormatError,
    ForwardError,
    InputError,
    ModelSpecError,
    PruneError,
    RecipeError,
    SlimTorchError,
    TraceError,
)
from .graph.groups import register_constraint
from .graph.rules import register_rule
from .graph.trace import ModelGraph, trace
from .io.slim import load, save
from .io.spec import load_model
from .measure.analyze import LayerRow, ModelReport, analyze
from .measure.latency import Comparison, LatencyStats, benchmark, compare
from .nas import SearchOptions, SearchResult, search
from .prune.channels import (
    PruneResult,
    prune_channels,
    register_importance,
    regularizer,
    simd_channels,
)
from .prune.depth import LayerOptions, prune_layers
from .prune.weights import (
    AGP,
    Iterative,
    OneShot,
    PruningSchedule,
    SensitivityResult,
    SparsifyResult,
    SparsityReport,
    WeightOptions,
    make_permanent_,
    prune_weights_,
    register_prunable,
    register_weight_criterion,
    sensitivity,
    sparsify_for_inference,
    sparsity,
    zeroed_channels,
)
from .recipe import RunResult, run_recipe
from .runtime import ExportResult, export, quantize, register_backend
from .train import FinetuneOptions, FinetuneResult, IterativePruning, IterativeResult, finetune

__version__ = "0.1.0"

__all__ = [
    "ConvertResult",
    "conversion_kinds",
    "convert",
    "dilate_to_restore",
    "register_conversion",
    "AGP",
    "Iterative",
    "OneShot",
    "PruningSchedule",
    "SensitivityResult",
    "SparsifyResult",
    "SparsityReport",
    "WeightOptions",
    "make_permanent_",
    "prune_weights_",
    "register_prunable",
    "register_weight_criterion",
    "sensitivity",
    "sparsify_for_inference",
    "sparsity",
    "zeroed_channels",
    "CheckpointError",
    "Comparison",
    "CompensationReport",
    "ConfigError",
    "ConvertError",
    "ExportError",
    "ExportResult",
    "FormatError",
    "ForwardError",
    "InputError",
    "LatencyStats",
    "LayerRow",
    "LayerOptions",
    "PruneResult",
    "SearchOptions",
    "SearchResult",
    "ModelGraph",
    "ModelReport",
    "ModelSpecError",
    "PruneError",
    "RecipeError",
    "RunResult",
    "SlimTorchError",
    "TraceError",
    "FinetuneOptions",
    "FinetuneResult",
    "IterativePruning",
    "IterativeResult",
    "analyze",
    "benchmark",
    "compare",
    "compensate_",
    "export",
    "finetune",
    "load",
    "load_model",
    "prune_channels",
    "prune_layers",
    "quantize",
    "register_backend",
    "register_constraint",
    "register_importance",
    "register_rule",
    "register_surgery",
    "regularizer",
    "run_recipe",
    "save",
    "search",
    "simd_channels",
    "trace",
]
