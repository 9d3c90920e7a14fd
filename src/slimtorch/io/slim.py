"""The ``.slim`` file: how to rebuild a model, and its weights, without pickle.

A ``.slim`` file is a zip holding ``plan.json`` (the original model's spec plus the structural
edits it went through: channel pruning, module replacements) and ``weights.safetensors``.
Loading rebuilds the architecture from the spec, replays the edits and loads the weights; it
never unpickles. Sparse tensors are stored as a bitmask plus their non-zero values.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ..edit import densified, edits_of, remove_masks_, replay_, set_meta
from ..errors import ConfigError, FormatError, ModelSpecError
from .sparse import pack, unpack
from .spec import ensure_spec, load_model, set_spec, spec_of

__all__ = ["save", "load", "FORMAT"]

FORMAT = "slimtorch/1"
_PLAN, _WEIGHTS = "plan.json", "weights.safetensors"
_SAFE_SOURCES = ("torchvision:", "timm:", "hf:")


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
    model = getattr(model, "model", model)
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
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    path = Path(path)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(_PLAN, json.dumps(plan, indent=1), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(_WEIGHTS, weights, compress_type=zipfile.ZIP_STORED)
    return path


def _read(path: Path) -> tuple[dict[str, Any], bytes]:
    if not path.is_file():
        raise FormatError(f"{str(path)!r} does not exist or is not a file")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if names != {_PLAN, _WEIGHTS}:
                raise FormatError(
                    f"{str(path)!r} holds {sorted(names)}, not a .slim file's {_PLAN} and "
                    f"{_WEIGHTS}"
                )
            plan_bytes, weights = zf.read(_PLAN), zf.read(_WEIGHTS)
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as exc:
        raise FormatError(
            f"{str(path)!r} is not a readable .slim file (truncated or corrupted: {exc}); "
            "save it again with slimtorch.save()."
        ) from exc
    try:
        plan = json.loads(plan_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{str(path)!r} has a corrupted plan.json ({exc})") from exc
    if not isinstance(plan, dict) or plan.get("format") != FORMAT:
        raise FormatError(
            f"{str(path)!r} is format {plan.get('format') if isinstance(plan, dict) else '?'}"
            f", this slimtorch reads {FORMAT}"
        )
    if hashlib.sha256(weights).hexdigest() != plan.get("weights_sha256"):
        raise FormatError(
            f"{str(path)!r}: the weights do not match the checksum in plan.json; the file was "
            "modified or damaged after saving."
        )
    return plan, weights


def _check_spec(spec: Any, trust_code: bool, path: Path) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, dict) or not isinstance(spec.get("spec"), str):
        raise FormatError(f"{str(path)!r}: plan.json has no valid model spec")
    name, kwargs = spec["spec"], spec.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise FormatError(f"{str(path)!r}: plan.json has invalid spec kwargs")
    if not name.startswith(_SAFE_SOURCES) and not trust_code:
        raise FormatError(
            f"{str(path)!r} rebuilds its model by calling {name!r}, which runs that package's "
            "code; load it with slimtorch.load(path, trust_code=True) if you trust the file."
        )
    return name, kwargs


def load(path: str | os.PathLike, *, trust_code: bool = False) -> nn.Module:
    """Rebuilds a model saved by ``save``, in eval mode; never unpickles.

    Args:
        path: a ``.slim`` file.
        trust_code: allow specs of the form ``package.module:factory``, which import and call
            that factory (torchvision, timm and Hugging Face specs never need it).

    Raises:
        FormatError: the file is truncated, tampered with, or not a ``.slim`` file.
    """
    path = Path(path)
    plan, weights = _read(path)
    name, kwargs = _check_spec(plan.get("spec"), trust_code, path)
    try:
        model = load_model(name, **kwargs)
    except ModelSpecError as exc:
        raise FormatError(f"{str(path)!r}: cannot rebuild the model: {exc}") from exc
    edits = plan.get("edits", [])
    if not isinstance(edits, list):
        raise FormatError(f"{str(path)!r}: plan.json has an invalid edit list")
    try:
        replay_(model, edits, "structure")
    except FormatError as exc:
        raise FormatError(f"{str(path)!r}: {exc}") from exc
    try:
        tensors = st_load(weights)
    except Exception as exc:  # safetensors raises its own error types
        raise FormatError(f"{str(path)!r}: unreadable weights ({exc})") from exc
    state: dict[str, torch.Tensor] = {}
    for key, meta in plan.get("packed", {}).items():
        parts = {k.split("::", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{key}::")}
        dtype = getattr(torch, str(meta["dtype"]), None)
        if not isinstance(dtype, torch.dtype):
            raise FormatError(f"{str(path)!r}: unknown dtype {meta['dtype']!r} for {key!r}")
        state[key] = unpack(parts, tuple(meta["shape"]), dtype)
    state.update({k: v for k, v in tensors.items() if "::" not in k})
    for key, target in plan.get("aliases", {}).items():
        if target not in state:
            raise FormatError(f"{str(path)!r}: alias {key!r} points to missing {target!r}")
        state[key] = state[target]
    ordered = collections.OrderedDict(state)
    # Per-module versions (e.g. MNASNet checks one) come from the freshly built model.
    ordered._metadata = getattr(model.state_dict(), "_metadata", None)  # type: ignore[attr-defined]
    try:
        model.load_state_dict(ordered, strict=True)
    except RuntimeError as exc:
        raise FormatError(
            f"{str(path)!r}: the weights do not fit the rebuilt model ({str(exc)[:300]})"
        ) from exc
    try:
        replay_(model, edits, "after_weights")
    except FormatError as exc:
        raise FormatError(f"{str(path)!r}: {exc}") from exc
    set_meta(model, "edits", copy.deepcopy(edits))
    return model.eval()
