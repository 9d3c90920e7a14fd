"""The ``.slim`` file: how to rebuild a model, and its weights, without pickle.

A ``.slim`` file is a zip holding ``plan.json`` (the original model's spec plus the structural
edits it went through: channel pruning, module replacements) and ``weights.safetensors``.
Loading rebuilds the architecture from the spec, replays the edits and loads the weights; it
never unpickles, never touches the network or any file but the one given, and keeps memory
within what the file's weights describe. Any failure inside ``load`` is a ``FormatError``
(the cause chained). Sparse tensors are stored as a bitmask plus their non-zero values.
``docs/format.md`` describes the format and its threat model.
"""

from __future__ import annotations

import collections
import copy
import json
import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .._files import check_output_path, open_atomic
from ..edit import check_edits, densified, edits_of, remove_masks_, replay_, set_meta
from ..errors import ConfigError, FormatError, ModelSpecError
from ._plan import FORMAT, check_plan, checksum, parse_plan, verify
from ._zip import read_entries
from .sparse import pack, unpack
from .spec import ensure_spec, load_model, model_nbytes, set_spec, spec_of

__all__ = ["save", "load", "FORMAT"]

_PLAN, _WEIGHTS = "plan.json", "weights.safetensors"
_SAFE_SOURCES = ("torchvision:", "timm:", "hf:")
_FACTORY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
MAX_WEIGHTS_BYTES = 1 << 40
_SLACK_BYTES = 64 << 20  # non-persistent buffers and builder temporaries
_BASE_FACTOR, _BASE_FLOOR_BYTES = 64, 1 << 30  # bound of the architecture before its edits


def _plain(model: nn.Module) -> nn.Module:
    """The model as stored: masks baked into the weights, sparse layers dense again (a copy
    when anything had to change)."""
    if any(hasattr(m, "parametrizations") for m in model.modules()):
        model = copy.deepcopy(model)
        remove_masks_(model)
    return densified(model)


def save(
    model: Any,
    path: str | os.PathLike,
    *,
    spec: str | None = None,
    spec_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Saves a model (or a result with ``.model``) as a ``.slim`` file.

    Args:
        model: a model built with ``load_model``, a torchvision/timm/Hugging Face model, or
            any result of slimtorch (pruning, conversion) made from one.
        path: where to write, conventionally ``*.slim``.
        spec: how to rebuild the original architecture when it cannot be inferred, e.g.
            ``"mypackage.models:make_net"`` (called with ``spec_kwargs``).

    Returns:
        The path written.

    Example:
        >>> save(load_model("torchvision:resnet18"), "r18.slim")
        PosixPath('r18.slim')
    """
    if not isinstance(model, nn.Module):  # a result; a model's own .model (a Hugging Face
        model = getattr(model, "model", model)  # causal LM's body) is not what to save
    path = check_output_path(path, "save() path")  # before any work
    if not isinstance(model, nn.Module):
        raise ConfigError(f"save() needs an nn.Module or a result with .model, got {type(model)}")
    if spec is not None:
        model = set_spec(copy.copy(model), spec, spec_kwargs)
    recorded = spec_of(ensure_spec(model))
    if recorded is None:
        raise ConfigError(
            f"cannot record how to rebuild {type(model).__name__}: build it with "
            "slimtorch.load_model('torchvision:NAME' | 'timm:NAME' | 'package.module:factory'),"
            " or pass spec='package.module:factory' (and spec_kwargs) to save()."
        )
    state = _plain(model).state_dict()
    tensors: dict[str, torch.Tensor] = {}
    packed: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for key, t in state.items():
        t = t.detach()
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if t.numel() and ident in seen:  # tied weights are stored once
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        parts = pack(t) if t.is_floating_point() else None
        if parts is None:
            tensors[key] = t.contiguous().clone()
        else:
            packed[key] = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
            for part, value in parts.items():
                tensors[f"{key}::{part}"] = value.contiguous()
    weights = st_save(tensors)
    plan = {
        "format": FORMAT,
        "spec": recorded,
        "edits": edits_of(model),
        "aliases": aliases,
        "packed": packed,
    }
    plan["checksum"] = checksum(plan, weights)
    with open_atomic(path) as f, zipfile.ZipFile(f, "w") as zf:
        zf.writestr(_PLAN, json.dumps(plan, indent=1), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(_WEIGHTS, weights, compress_type=zipfile.ZIP_STORED)
    return path


def _check_spec(spec: dict[str, Any], trust_code: bool) -> tuple[str, dict[str, Any]]:
    name, kwargs = spec["spec"], spec.get("kwargs", {})
    if name.endswith(".slim") or not (name.startswith(_SAFE_SOURCES) or _FACTORY.match(name)):
        raise FormatError(
            f"the plan's spec {name[:80]!r} is not 'torchvision:NAME', 'timm:NAME', 'hf:Class' "
            "or 'package.module:factory' (a spec never names a file)."
        )
    if not name.startswith(_SAFE_SOURCES) and not trust_code:
        raise FormatError(
            f"it rebuilds its model by calling {name!r}, which runs that package's code; load "
            "it with slimtorch.load(path, trust_code=True) if you trust the file."
        )
    return name, kwargs


def _split_weights(
    plan: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]], int]:
    """Plain tensors, packed parts by tensor name (one pass: linear in the entries), and the
    bytes of state the file describes."""
    packed = plan["packed"]
    plain: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {key: {} for key in packed}
    for name, t in tensors.items():
        key, sep, part = name.partition("::")
        if not sep:
            plain[name] = t
        elif key in parts and part in ("mask", "values", "negzero"):
            parts[key][part] = t
        else:
            raise FormatError(f"weights entry {name[:100]!r} is not declared in plan.json")
    described = sum(t.numel() * t.element_size() for t in plain.values())
    for key, meta in packed.items():
        if key in plain:
            raise FormatError(f"{key[:100]!r} is stored both dense and packed")
        mask = parts[key].get("mask")
        n = math.prod(meta["shape"])
        if mask is None or mask.dim() != 1 or mask.numel() != (n + 7) // 8:
            raise FormatError(f"packed tensor {key[:100]!r} has no mask of its declared size")
        described += n * torch.empty((), dtype=getattr(torch, meta["dtype"])).element_size()
    return plain, parts, described


def _check_aliases(model: nn.Module, aliases: dict[str, str], stored: set[str]) -> None:
    """An alias may only name a tie the rebuilt model has itself (tied embeddings)."""
    state = model.state_dict(keep_vars=True)
    for key, target in aliases.items():
        a, b = state.get(key), state.get(target)
        if key in stored or a is None or b is None or a is not b:
            raise FormatError(
                f"alias {key[:100]!r} -> {target[:100]!r} is not a tie of the rebuilt model; "
                "aliases may only name tensors the architecture itself shares."
            )


def _load(path: Path, trust_code: bool) -> nn.Module:
    if not path.is_file():
        raise FormatError("does not exist or is not a file")
    try:
        entries = read_entries(
            path, {_PLAN: 64 << 20, _WEIGHTS: min(MAX_WEIGHTS_BYTES, path.stat().st_size)}
        )
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise FormatError(
            f"is not a readable .slim file (truncated or corrupted: {exc}); save it again with "
            "slimtorch.save()."
        ) from exc
    plan, weights = parse_plan(entries[_PLAN]), entries[_WEIGHTS]
    check_plan(plan)
    verify(plan, weights)
    name, kwargs = _check_spec(plan["spec"], trust_code)
    try:
        tensors = st_load(weights)
    except Exception as exc:  # safetensors raises its own error types
        raise FormatError(f"unreadable weights ({str(exc)[:200]})") from exc
    plain, parts, described = _split_weights(plan, tensors)
    budget = described + described // 4 + _SLACK_BYTES
    try:
        size = model_nbytes(name, kwargs)
    except ModelSpecError as exc:
        raise FormatError(f"cannot rebuild the model: {exc}") from exc
    if size is None and name.startswith(_SAFE_SOURCES):
        raise FormatError(f"cannot rebuild {name!r} with {str(kwargs)[:200]}")
    # The original is built before the edits shrink it: a model pruned 50% holds ~1/4 of it.
    base_budget = max(_BASE_FACTOR * described, _BASE_FLOOR_BYTES)
    if size is not None and size > base_budget:
        raise FormatError(
            f"its spec builds a model of {size:,} bytes, over {_BASE_FACTOR}x the "
            f"{described:,} bytes of weights the file holds (and over "
            f"{_BASE_FLOOR_BYTES:,} bytes)"
        )
    edits = plan["edits"]
    check_edits(edits, budget)
    try:
        model = load_model(name, **kwargs)
    except ModelSpecError as exc:
        raise FormatError(f"cannot rebuild the model: {exc}") from exc
    replay_(model, edits, "structure")
    _check_aliases(model, plan["aliases"], set(plain) | set(parts))
    expected = set(model.state_dict())
    stored = set(plain) | set(parts) | set(plan["aliases"])
    if stored != expected:  # before unpacking anything
        missing, unexpected = sorted(expected - stored)[:3], sorted(stored - expected)[:3]
        raise FormatError(
            f"the weights do not fit the rebuilt model (missing {missing}, unexpected "
            f"{[u[:80] for u in unexpected]})"
        )
    state: dict[str, torch.Tensor] = dict(plain)
    for key, meta in plan["packed"].items():
        state[key] = unpack(parts[key], tuple(meta["shape"]), getattr(torch, meta["dtype"]))
    for key, target in plan["aliases"].items():
        if target not in state:
            raise FormatError(f"alias {key!r} points to missing {target!r}")
        state[key] = state[target]
    ordered = collections.OrderedDict(state)
    # Per-module versions (e.g. MNASNet checks one) come from the freshly built model.
    ordered._metadata = getattr(model.state_dict(), "_metadata", None)  # type: ignore[attr-defined]
    try:
        model.load_state_dict(ordered, strict=True)
    except RuntimeError as exc:
        raise FormatError(f"the weights do not fit the rebuilt model ({str(exc)[:300]})") from exc
    replay_(model, edits, "after_weights")
    set_meta(model, "edits", copy.deepcopy(edits))
    return model.eval()


def load(path: str | os.PathLike, *, trust_code: bool = False) -> nn.Module:
    """Rebuilds a model saved by ``save``, in eval mode; never unpickles.

    Reads only ``path``: no network, no other file, memory bounded by the weights the file
    holds (see docs/format.md for the threat model).

    Args:
        path: a ``.slim`` file.
        trust_code: allow specs of the form ``package.module:factory``, which import and call
            that factory (torchvision, timm and Hugging Face specs never need it).

    Raises:
        FormatError: for every failure: the file is truncated, tampered with, from a newer
            slimtorch, or not a ``.slim`` file (the underlying error is its ``__cause__``).
    """
    where = repr(str(path))
    try:
        return _load(Path(path), trust_code)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from (exc.__cause__ or exc)
    except Exception as exc:  # the one boundary: nothing else escapes load()
        raise FormatError(
            f"{where} cannot be loaded ({type(exc).__name__}: {str(exc)[:300]}); the file is "
            "damaged or was not written by slimtorch.save()."
        ) from exc
