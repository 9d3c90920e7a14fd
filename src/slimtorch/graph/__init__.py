"""Tracing a model into a graph of ATen ops, and reasoning on that graph."""

from .trace import ModelGraph, ModuleCall, OpNode, TensorInfo, TensorRef, trace

__all__ = ["ModelGraph", "ModuleCall", "OpNode", "TensorInfo", "TensorRef", "trace"]
