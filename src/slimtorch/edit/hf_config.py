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

__all__ = ["config_updates"]

_MLP_IN = ("gate_proj", "up_proj", "fc1", "c_fc", "intermediate.dense", "mlp.0", "w1")


def _width(m: nn.Module) -> int | None:
    """Output width of a linear layer (GPT-2's Conv1D stores it transposed), or None for a
    module without a 2-D ``weight`` (a model's own projection class)."""
    w = getattr(m, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        return None
    return int(w.shape[1] if hasattr(m, "nf") else w.shape[0])


def _uniform(values: list[int]) -> int | None:
    return values[0] if values and len(set(values)) == 1 else None


def _candidates(model: nn.Module) -> dict[str, Any]:
    config = model.config
    out: dict[str, Any] = {}
    try:  # transformers' base method raises NotImplementedError where a model has none
        emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    except NotImplementedError:
        emb = None
    if emb is not None and hasattr(emb, "weight"):
        out["hidden_size"] = int(emb.weight.shape[1])
    mlp = [w for n, m in model.named_modules() if n.endswith(_MLP_IN) and (w := _width(m))]
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
        width = _width(q) if q is not None else _width(qkv)
        if width is None:
            continue
        head_dim = hd
        heads.append(width // hd if q is not None else width // (3 * hd))
        k = next((children[n] for n in ("k_proj", "key") if n in children), None)
        if k is not None and (k_width := _width(k)) is not None:
            kv.append(k_width // hd)
    if (h := _uniform(heads)) is not None:
        out["num_attention_heads"] = h
        if hasattr(config, "num_key_value_heads") and (k := _uniform(kv)) is not None:
            out["num_key_value_heads"] = k
        if hasattr(config, "head_dim") and head_dim is not None:
            out["head_dim"] = head_dim
    return out


def _generic(config: Any, sizes: dict[int, int], named: dict[str, Any]) -> dict[str, Any]:
    """Integer fields of the config whose value is a size that pruning changed: the config
    names of models that follow no convention above (T5's ``d_model``, ``d_ff``, ``d_kv``)."""
    out = {}
    for key, value in config.to_dict().items():
        if key in named or isinstance(value, bool) or not isinstance(value, int):
            continue
        if sizes.get(value, value) != value:
            out[key] = sizes[value]
    return out


def _mismatch(model: nn.Module, config: Any, updates: dict[str, Any]) -> int | None:
    """How many tensors a model built from the updated config shapes differently (None if
    the class rejects the config)."""
    new = copy.deepcopy(config)
    for key, value in updates.items():
        setattr(new, key, value)
    try:
        with torch.device("meta"):
            rebuilt = type(model)(new)
    except Exception:  # a config the model class rejects
        return None
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if want.keys() != got.keys():
        return len(want.keys() ^ got.keys()) + len(want)
    return sum(want[k] != got[k] for k in want)


def config_updates(
    model: nn.Module, sizes: dict[int, int] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Config values that describe the pruned ``model``, and warnings when none can.

    ``sizes`` maps each size pruning changed (a dim, or a factor of one such as the head
    count) to its new value; config fields holding such a size are tried as well as the
    conventional names, and a set is accepted only if the config rebuilds the pruned shapes.
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict") or not hasattr(model, "config_class"):
        return {}, []
    named = {
        k: v
        for k, v in _candidates(model).items()
        if hasattr(config, k) and getattr(config, k, None) != v
    }
    generic = _generic(config, dict(sizes or {}), named)
    updates = {**named, **generic}
    # Checked even when no field changed, so a model whose config uses other names is never
    # left stale silently; fields that happen to hold a pruned size are dropped one at a time
    # while that brings the rebuilt shapes closer.
    best = _mismatch(model, config, updates)
    for key in list(generic):
        if best == 0:
            break
        trial = {k: v for k, v in updates.items() if k != key}
        n = _mismatch(model, config, trial)
        if n is not None and (best is None or n < best):
            updates, best = trial, n
    if best == 0:
        return updates, []
    return {}, [
        "the pruned widths differ between layers (or from what the config can express), "
        "so model.config was left as is: save_pretrained would not reload it; use "
        "slimtorch.save, or prune with the same ratio in every layer"
    ]
