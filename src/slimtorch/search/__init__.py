"""Search against latency measured on the target CPU: per-layer latency tables and a
whole-model prediction (``latency``); allocation and policy search build on them."""

from .latency import LatencyModel, LatencyTable, LayerShape, layer_shapes, machine_key

__all__ = ["LatencyModel", "LatencyTable", "LayerShape", "layer_shapes", "machine_key"]
