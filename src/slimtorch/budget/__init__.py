"""The latency budget of the target CPU: per-layer latency tables and a
whole-model prediction (``latency``), and the allocation of channel cuts to a latency budget
(``allocate``). Pruning uses them; the policy search (``slimtorch.nas``) builds on both."""

from .allocate import LayerCurves, LayerTerms, allocate, layer_terms
from .latency import LatencyModel, LatencyTable, LayerShape, layer_shapes, machine_key

__all__ = [
    "LatencyModel",
    "LatencyTable",
    "LayerCurves",
    "LayerShape",
    "LayerTerms",
    "allocate",
    "layer_shapes",
    "layer_terms",
    "machine_key",
]
