"""Keeping a Hugging Face model's ``config`` in step with its pruned shapes.

After channel pruning, ``config`` should describe the smaller model so that
``save_pretrained``/``from_pretrained`` work. The new values are read off the pruned modules;
they are accepted only if a model built from the new config (on the ``meta`` device) has
exactly the pruned shapes, since per-layer widths cannot be written in one config.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["CONFIG_KEYS", "config_updates"]

# The config fields a prune edit may change (only ever lowered).
CONFIG_KEYS = frozenset(
    [
        "hidden_size",
        "n_inner",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
    ]
)

_MLP_IN = ("gate_proj", "up_proj", "fc1", "c_fc", "intermediate.dense", "mlp.0", "w1")


def _width(m: nn.Module) -> int:
    w = m.weight
    return int(w.shape[1] if hasattr(m, "nf") else w.shape[0])


def _uniform(values: list[int]) -> int | None:
    return values[0] if values and len(set(values)) == 1 else None


def _candidates(model: nn.Module) -> dict[str, Any]:
    config = model.config
    out: dict[str, Any] = {}
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is not None and hasattr(emb, "weight"):
        out["hidden_size"] = int(emb.weight.shape[1])
    mlp = [
        _width(m)
        for n, m in model.named_modules()
        if n.endswith(_MLP_IN) and hasattr(m, "weight") and m.weight.dim() == 2
    ]
    if (width := _uniform(mlp)) is not None:
        out["n_inner" if hasattr(config, "n_inner") else "intermediate_size"] = width
    heads, kv = [], []
    head_dim = None
    for m in model.modules():
        hd = getattr(m, "head_dim", None) or getattr(m, "attention_head_size", None)
        children = dict(m.named_children())
        q = next((children[n] for n in ("q_proj", "query") if n in children), None)
        qkv = children.get("c_attn")
        if not isinstance(hd, int) or (q is None and qkv is None):
            continue
        head_dim = hd
        heads.append(_width(q) // hd if q is not None else _width(qkv) // (3 * hd))
        k = next((children[n] for n in ("k_proj", "key") if n in children), None)
        if k is not None:
            kv.append(_width(k) // hd)
    if (h := _uniform(heads)) is not None:
        out["num_attention_heads"] = h
        if hasattr(config, "num_key_value_heads") and (k := _uniform(kv)) is not None:
            out["num_key_value_heads"] = k
        if hasattr(config, "head_dim") and head_dim is not None:
            out["head_dim"] = head_dim
    return out


def config_updates(model: nn.Module) -> tuple[dict[str, Any], list[str]]:
    """Config values that describe the pruned ``model``, and warnings when none can."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict") or not hasattr(model, "config_class"):
        return {}, []
    updates = {k: v for k, v in _candidates(model).items() if getattr(config, k, None) != v}
    new = copy.deepcopy(config)
    for key, value in updates.items():
        setattr(new, key, value)
    # Accepted only if the config rebuilds exactly the pruned shapes; checked even when no
    # known key changed, so a model whose config uses other names is never left stale silently.
    try:
        with torch.device("meta"):
            rebuilt = type(model)(new)
        same = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == {
            k: tuple(v.shape) for k, v in model.state_dict().items()
        }
    except Exception:  # a config the model class rejects
        same = False
    if same and not updates:
        return {}, []
    if not same:
        return {}, [
            "the pruned widths differ between layers (or from what the config can express), "
            "so model.config was left as is: save_pretrained would not reload it; use "
            "slimtorch.save, or prune with the same ratio in every layer"
        ]
    return updates, []
