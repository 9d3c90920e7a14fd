"""Torch-Pruning run as its README shows, shared by the benchmarks that compare against it.

``MetaPruner`` with L1 group magnitude, the 1000-class classifier ignored, head counts given
for ``nn.MultiheadAttention`` and timm-style ``qkv`` attention, and the attention metadata that
Torch-Pruning leaves to its users set after ``step()``.
"""

from __future__ import annotations

import time

from torch import nn

__all__ = ["tp_prune"]


def _is_classifier(m: nn.Module) -> bool:
    return (isinstance(m, nn.Linear) and m.out_features == 1000) or (
        isinstance(m, nn.Conv2d) and m.out_channels == 1000
    )


def _is_qkv_attention(m: nn.Module) -> bool:
    return isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(
        getattr(m, "num_heads", None), int
    )


def tp_prune(model: nn.Module, x, ratio: float) -> tuple[nn.Module, float]:
    """Prunes ``model`` in place; returns it and the seconds the pruner took."""
    import torch_pruning as tp

    ignored = [m for m in model.modules() if _is_classifier(m)]
    num_heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    timm_attn = [m for m in model.modules() if _is_qkv_attention(m)]
    num_heads.update({m.qkv: m.num_heads for m in timm_attn})
    start = time.perf_counter()
    pruner = tp.pruner.MetaPruner(
        model,
        x,
        importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=ratio,
        ignored_layers=ignored,
        num_heads=num_heads,
    )
    pruner.step()
    elapsed = time.perf_counter() - start
    for m in model.modules():  # TP leaves MHA metadata to the user
        if isinstance(m, nn.MultiheadAttention):
            m.embed_dim = m.in_proj_weight.shape[1]
            m.kdim = m.vdim = m.embed_dim
            m.head_dim = m.embed_dim // m.num_heads
    for m in timm_attn:
        if hasattr(m, "head_dim"):
            m.head_dim = m.qkv.out_features // (3 * m.num_heads)
    return model, elapsed
