"""Channel surgery: slice parameters and buffers, and keep module metadata in step.

``slice_channels_`` removes channels along recorded positions, sets the module attributes
that describe the new shapes (``in_channels``, ``groups``, ``num_heads``, ...) so that
``repr(model)`` tells the truth, follows a Hugging Face ``config``, and records the edit.
``apply_prune_edit_`` applies a recorded edit again (``.slim`` loading). Module attributes come
from a registry keyed by module type; ``register_surgery`` extends it for your own layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .._registry import Registry
from ..errors import FormatError
from .hf_config import config_updates
from .log import record_edit

__all__ = [
    "SURGERY",
    "apply_prune_edit_",
    "module_attrs",
    "register_surgery",
    "settable_attrs",
    "slice_channels_",
]

Updater = Callable[[nn.Module, Mapping[str, Any]], dict[str, Any]]
SURGERY: Registry[Updater] = Registry(
    "surgery rule", "class", hint="Register one with slimtorch.register_surgery(MyLayer)."
)


def register_surgery(*types: type | str, override: bool = False) -> Callable[[Updater], Updater]:
    """Registers ``fn(module, info) -> {attribute: value}`` run after a module's tensors
    were sliced; ``info["groups"]`` holds a conv's new group count when known.

    Types may be classes or ``"package.module.ClassName"`` strings, so optional libraries
    need not be imported. Subclasses inherit the rule of their nearest registered base.

    Example:
        >>> @register_surgery(MyLinear)
        ... def _my_linear(m, info):
        ...     return {"in_features": m.weight.shape[1], "out_features": m.weight.shape[0]}
    """
    return SURGERY.register(*types, override=override)


@register_surgery(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(m: nn.Module, info: Mapping[str, Any]) -> dict[str, Any]:
    groups = int(info.get("groups") or m.groups)
    return {
        "groups": groups,
        "in_channels": m.weight.shape[1] * groups,
        "out_channels": m.weight.shape[0],
    }


@register_surgery(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_t(m: nn.Module, info: Mapping[str, Any]) -> dict[str, Any]:
    groups = int(info.get("groups") or m.groups)
    return {
        "groups": groups,
        "in_channels": m.weight.shape[0],
        "out_channels": m.weight.shape[1] * groups,
    }


@register_surgery(nn.Linear)
def _linear(m: nn.Module, info: Mapping[str, Any]) -> dict[str, Any]:
    return {"in_features": m.weight.shape[1], "out_features": m.weight.shape[0]}


@register_surgery(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d)
def _bn(m: nn.Module, info: Mapping[str, Any]) -> dict[str, Any]:
    t = m.weight if m.weight is not None else m.running_mean
    return {"num_features": t.shape[0]}


@register_surgery(nn.LayerNorm)
def _ln(m: nn.Module, info: Mapping[str, Any]) -> dict[str, Any]:
    return {"normalized_shape": list(m.weight.shape)} if m.weight is not None else {}


@register_surgery(nn.GroupNorm)
def _gn(m: nn.Module, info: Mapping[str, Any]) -> dict[str, Any]:
    return {"num_channels": m.weight.shape[0]}


@register_surgery("transformers.pytorch_utils.Conv1D")
def _hf_conv1d(m: nn.Module, info: Mapping[str, Any]) -> dict[str, Any]:
    # GPT-2's Conv1D holds its weight as [in, out] and reshapes with self.nf.
    return {"nx": m.weight.shape[0], "nf": m.weight.shape[1]}


@register_surgery(nn.Embedding)
def _embedding(m: nn.Module, info: Mapping[str, Any]) -> dict[str, Any]:
    return {"embedding_dim": m.weight.shape[1]}


# The names attention code of timm, Hugging Face and common repositories keeps its sizes under.
_HEAD_COUNT = (
    "num_heads", "num_attention_heads", "n_head", "n_heads", "heads", "nhead", "num_head",
    "attention_heads",
)  # fmt: skip
_KV_COUNT = ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "num_kv_head")
_HEAD_SIZE = (
    "head_dim", "attention_head_size", "head_size", "key_value_proj_dim", "dim_head",
    "d_k", "attn_head_size",
)  # fmt: skip
_INNER_WIDTH = ("all_head_size", "attn_dim", "inner_dim")
_Q_NAMES = ("q_proj", "query", "q", "wq", "to_q")
_K_NAMES = ("k_proj", "key", "k", "wk", "to_k")
_QKV_NAMES = ("qkv", "c_attn", "in_proj", "Wqkv", "query_key_value", "to_qkv")


@register_surgery("torchvision.models.vision_transformer.VisionTransformer")
def _tv_vit(m: nn.Module, info: Mapping[str, Any]) -> dict[str, Any]:
    # Its forward reshapes the patch embedding by self.hidden_dim.
    return {"hidden_dim": m.conv_proj.weight.shape[0]}  # read off the sliced tensor


def _out_width(module: nn.Module) -> int | None:
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        return None
    # torch Linear is [out, in]; Hugging Face's GPT-2 Conv1D is [in, out].
    return int(w.shape[1] if hasattr(module, "nf") else w.shape[0])


def _head_sizes(info: Mapping[str, Any], heads: int, head_dim: int) -> tuple[int, int] | None:
    """(heads, head_dim) kept, read off a projection's output factors as recorded by the
    planner (``{dim: [segment: [[size, kept], ...]]}``; the first segment is q's): the last
    factor of size ``head_dim`` and the one of size ``heads`` before it."""
    for segments in (info.get("factors") or {}).values():
        dims = segments[0] if segments else []
        sizes = [f[0] for f in dims]
        for j in range(len(sizes) - 1, 0, -1):
            if sizes[j] == head_dim and heads in sizes[:j]:
                i = max(k for k in range(j) if sizes[k] == heads)
                return dims[i][1], dims[j][1]
    return None


def _attention_attrs(
    m: nn.Module, name: str = "", info: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """Head counts and head size of attention modules (timm, Hugging Face) after slicing:
    from the factors the planner recorded for their projections where it did, else from
    the projection width at the old head size."""
    size_attr = next((n for n in _HEAD_SIZE if isinstance(getattr(m, n, None), int)), None)
    head_dim = getattr(m, size_attr) if size_attr else None
    if not isinstance(head_dim, int) or head_dim <= 0:
        return {}
    children = dict(m.named_children())
    attrs: dict[str, Any] = {}
    qname = next((n for n in _Q_NAMES if n in children), None)
    qkvname = next((n for n in _QKV_NAMES if n in children), None)
    width = _out_width(children[qname]) if qname else None
    if not width and qkvname and _out_width(children[qkvname]):
        width = _out_width(children[qkvname]) // 3
    if not width:
        return {}
    old_heads = next(
        (getattr(m, n) for n in _HEAD_COUNT if isinstance(getattr(m, n, None), int)), None
    )
    proj = qname or qkvname
    sizes = _head_sizes(
        (info or {}).get(f"{name}.{proj}" if name else proj, {}), old_heads or 0, head_dim
    )
    if sizes is not None and sizes[0] * sizes[1] == width and sizes[1] != head_dim:
        head_dim = sizes[1]
        for attr in _HEAD_SIZE:
            if isinstance(getattr(m, attr, None), int):
                attrs[attr] = head_dim
    heads = width // head_dim
    v_head_dim = getattr(m, "v_head_dim", None)
    v_proj = children.get("v_proj")
    if isinstance(v_head_dim, int) and v_proj is not None and _out_width(v_proj) and heads:
        attrs["v_head_dim"] = _out_width(v_proj) // heads
    for attr in _HEAD_COUNT:
        if isinstance(getattr(m, attr, None), int):
            attrs[attr] = heads
    k = next((children[n] for n in _K_NAMES if n in children), None)
    if k is not None and _out_width(k):
        kv = _out_width(k) // head_dim
        for attr in _KV_COUNT:
            if isinstance(getattr(m, attr, None), int):
                attrs[attr] = kv
        if isinstance(getattr(m, "num_key_value_groups", None), int) and kv:
            attrs["num_key_value_groups"] = heads // kv
    for attr in _INNER_WIDTH:
        if isinstance(getattr(m, attr, None), int):
            attrs[attr] = heads * head_dim
    if isinstance(getattr(m, "split_size", None), int) and qkvname is not None:
        attrs["split_size"] = heads * head_dim
    return attrs


def module_attrs(
    model: nn.Module, touched: set[str], info: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Attributes to set on each touched module (and attention parents) after slicing."""
    out: dict[str, dict[str, Any]] = {}
    modules = dict(model.named_modules())
    parents = {n.rpartition(".")[0] for n in touched} | touched
    for name in sorted(parents):
        m = modules.get(name)
        if m is None:
            continue
        attrs: dict[str, Any] = {}
        fn = SURGERY.lookup(type(m))
        if fn is not None and name in touched:
            attrs.update(fn(m, info.get(name, {})))
        attrs.update(_attention_attrs(m, name, info))
        attrs = {k: v for k, v in attrs.items() if _differs(getattr(m, k, None), v)}
        if attrs:
            out[name] = attrs
    return out


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, tuple):
        old = list(old)
    return old != new


def _owners(model: nn.Module) -> dict[str, list[tuple[nn.Module, str]]]:
    """Every (module, attribute) holding each tensor, keyed by its first qualified name."""
    by_id: dict[int, str] = {}
    owners: dict[str, list[tuple[nn.Module, str]]] = {}
    for mname, module in model.named_modules(remove_duplicate=False):
        items = list(module._parameters.items()) + list(module._buffers.items())
        for attr, t in items:
            if t is None:
                continue
            key = by_id.setdefault(id(t), f"{mname}.{attr}" if mname else attr)
            owners.setdefault(key, []).append((module, attr))
    return owners


def _kept(name: str, dim: Any, keep: Any, t: torch.Tensor) -> tuple[int, torch.Tensor]:
    """The dimension and kept positions of one tensor, checked: a prune edit only shrinks."""
    try:
        d = int(dim)
    except (TypeError, ValueError):
        d = -1
    if isinstance(dim, bool) or not 0 <= d < t.dim():
        raise FormatError(f"the plan prunes dim {dim!r} of {name!r}, which has {t.dim()} dims")
    if isinstance(keep, torch.Tensor):
        keep = keep.tolist()
    size = t.shape[d]
    if not isinstance(keep, list | tuple) or len(keep) > size:
        raise FormatError(
            f"the plan keeps {len(keep) if isinstance(keep, list | tuple) else keep!r} positions "
            f"of {name!r} dim {d}, which has {size}"
        )
    prev = -1
    for i in keep:
        if isinstance(i, bool) or not isinstance(i, int) or not prev < i < size:
            raise FormatError(
                f"the plan's kept positions for {name!r} dim {d} must be unique, sorted "
                f"integers in [0, {size}); found {i!r} after {prev}"
            )
        prev = i
    return d, torch.as_tensor(keep, dtype=torch.long)


def settable_attrs(module: nn.Module, groups: Any = None) -> dict[str, Any]:
    """The attributes an edit may set on ``module``, with the values its tensors imply.

    This is the allowlist per module type: the keys its surgery rule returns (plus the head
    counts of attention modules), read off the module's current (sliced) tensors.
    """
    return _settable(module, groups)[0]


def _heads_kept(module: nn.Module) -> dict[str, Any]:
    """Planner info under which an attention module kept its heads and head_dim shrank."""
    heads = next(
        (getattr(module, n) for n in _HEAD_COUNT if isinstance(getattr(module, n, None), int)),
        None,
    )
    head_dim = next(
        (getattr(module, n) for n in _HEAD_SIZE if isinstance(getattr(module, n, None), int)),
        None,
    )
    children = dict(module.named_children())
    proj = next((n for n in (*_Q_NAMES, *_QKV_NAMES) if n in children), None)
    width = _out_width(children[proj]) if proj else None
    if not (heads and head_dim and width):
        return {}
    width //= 3 if proj in _QKV_NAMES else 1
    if width % heads:
        return {}
    return {proj: {"factors": {0: [[[heads, heads], [head_dim, width // heads]]]}}}


def _settable(module: nn.Module, groups: Any = None) -> list[dict[str, Any]]:
    """The allowed attributes with the values the tensors imply, once per reading of an
    attention module's sliced projections: whole heads removed, or head_dim shrunk."""
    fn = SURGERY.lookup(type(module))
    info = {"groups": groups} if groups is not None else {}
    attrs = dict(fn(module, info)) if fn is not None else {}
    readings = [attrs | _attention_attrs(module)]
    kept = _heads_kept(module)
    if kept:
        readings.append(attrs | _attention_attrs(module, "", kept))
    return readings


def _check_attrs(mname: str, module: nn.Module, attrs: Any) -> None:
    if not isinstance(attrs, Mapping):
        raise FormatError(f"the plan's attributes for {mname!r} are not an object")
    groups = attrs.get("groups")
    weight = getattr(module, "weight", None)
    if groups is not None and (
        isinstance(groups, bool)
        or not isinstance(groups, int)
        or groups < 1
        or not isinstance(weight, torch.Tensor)
        or weight.dim() < 1
        or weight.shape[0] % groups
    ):
        raise FormatError(f"the plan sets groups={groups!r} on {mname!r}, which its weight refutes")
    readings = _settable(module, groups)
    problems = [_attr_problem(mname, module, attrs, allowed) for allowed in readings]
    if all(problems):
        raise FormatError(problems[0])


def _attr_problem(mname: str, module: nn.Module, attrs: Any, allowed: dict[str, Any]) -> str:
    for attr, value in attrs.items():
        if attr not in allowed:
            return (
                f"the plan sets {attr!r} on {mname!r} ({type(module).__name__}); an edit may set "
                f"only {sorted(allowed)} there (register_surgery lists what a type allows)."
            )
        if attr != "groups" and not _same(value, allowed[attr]):
            return (
                f"the plan sets {mname}.{attr}={str(value)[:60]}, but the pruned tensors imply "
                f"{allowed[attr]!r}"
            )
    return ""


def _same(value: Any, implied: Any) -> bool:
    """JSON ``value`` equals ``implied`` exactly (a tuple reads back as a list; 3.0 is not 3)."""
    if isinstance(implied, tuple | list):
        return (
            isinstance(value, list)
            and len(value) == len(implied)
            and all(_same(v, i) for v, i in zip(value, implied))
        )
    return type(value) is type(implied) and value == implied


def _check_config(config: Any, model_config: Any) -> None:
    if not isinstance(config, Mapping):
        raise FormatError("the plan's config updates are not an object")
    if config and model_config is None:
        raise FormatError("the plan updates a config, but the model has none")
    for key, value in config.items():
        old = getattr(model_config, key, None)
        known = isinstance(old, int) and not isinstance(old, bool)
        unset = old is None and hasattr(model_config, key)  # a default (GPT-2's n_inner)
        ok = (
            (known or unset)
            and isinstance(value, int)
            and not isinstance(value, bool)
            and value >= 1
            and (unset or value <= old)
        )
        if not ok:
            raise FormatError(
                f"the plan sets config.{key}={str(value)[:40]} (was {old!r}); a prune edit may "
                "only lower an integer field the config has to a positive integer"
            )


_PRUNE_KEYS = {"op", "tensors", "attrs", "config", "why"}


def apply_prune_edit_(model: nn.Module, edit: Mapping[str, Any]) -> None:
    """Slices tensors and sets module attributes as recorded in a ``prune`` edit, in place.

    ``edit["tensors"]``: ``{name: {dim: [kept positions]}}``; ``edit["attrs"]``:
    ``{module: {attribute: value}}``; ``edit.get("config")``: ``{key: value}`` for a
    Hugging Face ``model.config``. Everything is checked first: kept positions unique, sorted
    and in range, attributes those the module type allows with the values its new shapes
    imply, config values only lowered (``FormatError`` otherwise).
    """
    tensors, attrs_map = edit.get("tensors", {}), edit.get("attrs", {})
    if set(edit) - _PRUNE_KEYS or not isinstance(tensors, Mapping):
        raise FormatError(f"a prune edit has keys {sorted(edit)}, expected {sorted(_PRUNE_KEYS)}")
    if not isinstance(attrs_map, Mapping):
        raise FormatError("a prune edit's attrs are not an object")
    owners = _owners(model)
    for name, dims in tensors.items():
        if name not in owners:
            raise FormatError(f"the plan prunes tensor {name!r}, which the model does not have")
        if not isinstance(dims, Mapping):
            raise FormatError(f"the plan's positions for {name!r} are not an object")
        module, attr = owners[name][0]
        t = getattr(module, attr)
        with torch.no_grad():
            new = t.detach()
            for dim, keep in dims.items():
                d, index = _kept(name, dim, keep, new)
                new = new.index_select(d, index.to(new.device))
            new = new.clone()
        replacement = (
            nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else new
        )
        for owner, a in owners[name]:
            if isinstance(replacement, nn.Parameter):
                owner._parameters[a] = replacement
            else:
                owner._buffers[a] = replacement
    modules = dict(model.named_modules())
    for mname, attrs in attrs_map.items():
        if mname not in modules:
            raise FormatError(f"the plan sets attributes on {mname!r}, which does not exist")
        _check_attrs(mname, modules[mname], attrs)
        for attr, value in attrs.items():
            old = getattr(modules[mname], attr, None)
            setattr(modules[mname], attr, tuple(value) if isinstance(old, tuple) else value)
    config = getattr(model, "config", None)
    _check_config(edit.get("config", {}), config)
    for key, value in edit.get("config", {}).items():
        setattr(config, key, value)


def _holders(model: nn.Module, names: set[str]) -> set[str]:
    """Names of every module holding one of the named tensors (a tied weight has several)."""
    ids = {
        id(t)
        for n, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers()]
        if n in names
    }
    out = {n.rpartition(".")[0] for n in names}
    for mname, module in model.named_modules(remove_duplicate=False):
        items = [*module._parameters.values(), *module._buffers.values()]
        if any(t is not None and id(t) in ids for t in items):
            out.add(mname)
    return out


def _changed_sizes(info: Mapping[str, Mapping[str, Any]]) -> dict[int, int]:
    """Old size -> new size of every pruned factor and dim the planner recorded."""
    sizes: dict[int, int] = {}
    for entry in info.values():
        for segments in (entry.get("factors") or {}).values():
            for factors in segments:
                for size, kept in factors:
                    sizes.setdefault(size, kept)
            old = sum(math.prod(s for s, _ in f) for f in segments)
            sizes.setdefault(old, sum(math.prod(k for _, k in f) for f in segments))
    return {k: v for k, v in sizes.items() if k != v}


def slice_channels_(
    model: nn.Module,
    tensors: Mapping[str, Mapping[int, list[int]]],
    conv_groups: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    record: bool = True,
    why: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Keeps only the given positions of each tensor, fixes module metadata, records the edit.

    Args:
        model: the model to change, in place.
        tensors: ``{tensor name: {dim: kept positions}}`` (sorted, unique, in range).
        conv_groups: ``{module: info}`` from the planner: ``"groups"``, a conv's new group
            count; ``"factors"``, ``{dim: [[size, kept], ...]}`` of a pruned weight.
        record: False for a dry run on a throwaway copy (the MAC solver's probes).
        why: JSON data kept with the edit (the options that chose these channels).

    Returns:
        The recorded edit, and warnings (a Hugging Face config that could not follow).
    """
    touched = _holders(model, set(tensors))  # tied weights: every module holding the tensor
    apply_prune_edit_(model, {"tensors": tensors})
    attrs = module_attrs(model, touched, conv_groups or {})
    edit: dict[str, Any] = {"op": "prune", "tensors": {}, "attrs": attrs}
    apply_prune_edit_(model, edit)
    warnings: list[str] = []
    if hasattr(model, "config"):
        config, warnings = config_updates(model, _changed_sizes(conv_groups or {}))
        if config:
            apply_prune_edit_(model, {"tensors": {}, "config": config})
            edit["config"] = config
    edit["tensors"] = {n: {str(d): list(v) for d, v in dims.items()} for n, dims in tensors.items()}
    if why:
        edit["why"] = dict(why)
    if record:
        record_edit(model, edit, owned=True)
    return edit, warnings
