"""What a model spec may ask of a library's builder: architecture options, never files.

A spec's keyword arguments reach torchvision, timm or Hugging Face builders, which also know
how to download weights, read checkpoints and look models up on a hub. ``check_spec_kwargs``
lets through only options that describe an architecture (``num_classes``, widths, depths,
dropout rates, ...), as plain numbers, booleans or strings of known meaning, and refuses the
rest with a message that names the argument. Hugging Face models are built from their config
class only; a config field may differ from the class's default only with a number, a boolean,
or a string from a known set (activation names, a few enumerations). ``load_model`` and
``.slim`` loading both apply it. See docs/format.md for the threat model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ModelSpecError

__all__ = ["ALLOWED_KWARGS", "check_hf_config", "check_spec_kwargs"]

_MAX_INT = 10**7
_MAX_ITEMS = 100_000

ALLOWED_KWARGS: dict[str, frozenset[str]] = {
    "torchvision": frozenset(
        [
            "num_classes",
            "width_mult",
            "aux_logits",
            "aux_loss",
            "transform_input",
            "init_weights",
            "dropout",
            "attention_dropout",
            "stochastic_depth_prob",
            "image_size",
            "zero_init_residual",
            "groups",
            "width_per_group",
            "replace_stride_with_dilation",
            "reduced_tail",
            "dilated",
            "num_keypoints",
            "trainable_backbone_layers",
            "min_size",
            "max_size",
        ]
    ),
    "timm": frozenset(
        [
            "num_classes",
            "in_chans",
            "drop_rate",
            "drop_path_rate",
            "drop_block_rate",
            "global_pool",
            "img_size",
            "patch_size",
            "embed_dim",
            "depth",
            "num_heads",
            "mlp_ratio",
            "class_token",
            "no_embed_class",
            "reg_tokens",
            "qkv_bias",
            "channel_multiplier",
            "depth_multiplier",
            "output_stride",
            "layers",
            "channels",
            "widths",
            "dims",
            "depths",
            "stem_width",
            "proj_drop_rate",
            "attn_drop_rate",
        ]
    ),
    "hf": frozenset({"config"}),
}
_STRINGS: dict[str, frozenset[str]] = {
    "global_pool": frozenset({"", "avg", "max", "avgmax", "catavgmax", "token", "map", "fast"}),
}
# Arguments whose job is to fetch something: named in the error so the refusal is clear.
_LOADERS = re.compile(
    r"weights|pretrained|checkpoint|cache_dir|model_dir|url|name_or_path|file|hub|backbone"
    r"|progress|quantiz|remote|auto_map|revision|attn_implementation|kernel",
    re.IGNORECASE,
)


def _why(key: str) -> str:
    if _LOADERS.search(key):
        return (
            f"{key!r} loads weights, files or code from outside the model (refused: a spec "
            "names an architecture only; load weights with load_state_dict yourself)"
        )
    return f"{key!r} is not an architecture option this library's specs accept"


def _plain(value: Any, where: str, depth: int = 0) -> None:
    """Numbers, booleans, None, and lists of them (no strings, no dicts)."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise ModelSpecError(f"{where}={value!r} is out of range (|value| <= {_MAX_INT:,})")
        return
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > _MAX_INT:
            raise ModelSpecError(f"{where}={value!r} is not a finite number of sensible size")
        return
    if isinstance(value, list | tuple) and depth < 2 and len(value) <= 64:
        for i, v in enumerate(value):
            _plain(v, f"{where}[{i}]", depth + 1)
        return
    raise ModelSpecError(
        f"{where}={_short(value)} is not a plain number, boolean or short list of them"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_spec_kwargs(source: str, kwargs: Mapping[str, Any]) -> None:
    """Raises ``ModelSpecError`` unless every keyword argument is an allowed architecture option.

    Args:
        source: ``"torchvision"``, ``"timm"`` or ``"hf"``.
        kwargs: the spec's keyword arguments.

    Example:
        >>> check_spec_kwargs("torchvision", {"num_classes": 10})
        >>> check_spec_kwargs("torchvision", {"weights_backbone": "DEFAULT"})
        Traceback (most recent call last):
        ModelSpecError: ...
    """
    allowed = ALLOWED_KWARGS[source]
    for key, value in kwargs.items():
        if not isinstance(key, str) or key not in allowed:
            raise ModelSpecError(
                f"{source} spec argument {_why(str(key))}; allowed: {sorted(allowed)}."
            )
        if key in _STRINGS and isinstance(value, str):
            if value not in _STRINGS[key]:
                raise ModelSpecError(
                    f"{source} spec argument {key}={_short(value)}; use one of "
                    f"{sorted(_STRINGS[key])}."
                )
        elif key != "config":
            _plain(value, key)


# Config strings of known meaning, checked by value; any other string must be the default.
_ENUMS: dict[str, frozenset[Any]] = {
    "position_embedding_type": frozenset({"absolute", "relative_key", "relative_key_query"}),
    "problem_type": frozenset(
        {None, "regression", "single_label_classification", "multi_label_classification"}
    ),
    "dtype": frozenset({None, "float32", "float16", "bfloat16", "float64"}),
    "torch_dtype": frozenset({None, "float32", "float16", "bfloat16", "float64"}),
}
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+\-]{0,40}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,100}$")


def _activation(value: Any) -> bool:
    try:
        from transformers.activations import ACT2FN
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, str) and value in ACT2FN


def _labels(key: str, value: Any) -> bool:
    if not isinstance(value, dict) or len(value) > _MAX_ITEMS:
        return False
    ok = (lambda v: isinstance(v, str) and len(v) <= 200) if key == "id2label" else None
    for k, v in value.items():
        if not isinstance(k, str) or len(k) > 200:
            return False
        if ok is not None and not ok(v):
            return False
        if ok is None and (isinstance(v, bool) or not isinstance(v, int)):
            return False
    return True


def check_hf_config(config: Any, defaults: Mapping[str, Any], where: str = "config") -> None:
    """Raises ``ModelSpecError`` unless ``config`` only changes a config class's architecture.

    Args:
        config: the config dict recorded in the spec.
        defaults: ``config_class().to_dict()``: fields at their default are always accepted.
    """
    if not isinstance(config, dict):
        raise ModelSpecError(f"hf spec {where} must be a dict of config fields")
    if len(config) > 10_000:
        raise ModelSpecError(f"hf spec {where} has {len(config)} fields; too many")
    for key, value in config.items():
        here = f"{where}.{key}"
        if not isinstance(key, str):
            raise ModelSpecError(f"hf spec {where} has a non-string field {key!r}")
        default = defaults.get(key)
        if key in defaults and value == default:
            continue
        if key in ("id2label", "label2id"):
            if not _labels(key, value):
                raise ModelSpecError(f"hf spec {here} is not a mapping of label names")
            continue
        if isinstance(value, dict) and isinstance(default, dict) and where.count(".") < 3:
            check_hf_config(value, default, here)  # a sub-config (text_config, ...)
            continue
        if _LOADERS.search(key) and (isinstance(value, str | dict) or value is True):
            raise ModelSpecError(f"hf spec {here}: {_why(key)}")
        if key in _ENUMS:
            if value not in _ENUMS[key]:
                raise ModelSpecError(f"hf spec {here}={_short(value)}; use one of a known set")
        elif key == "architectures":
            if value is not None and not (
                isinstance(value, list)
                and all(isinstance(v, str) and _IDENT.match(v) for v in value)
            ):
                raise ModelSpecError(f"hf spec {here}={_short(value)} is not a list of class names")
        elif key == "transformers_version":
            if not (isinstance(value, str) and _VERSION.match(value)):
                raise ModelSpecError(f"hf spec {here}={_short(value)} is not a version")
        elif key.endswith(("_act", "_activation", "activation_function")) and isinstance(
            value, str
        ):
            if not _activation(value):
                raise ModelSpecError(f"hf spec {here}={_short(value)} is not a known activation")
        elif isinstance(value, str):
            raise ModelSpecError(
                f"hf spec {here}={_short(value)}: a string field may only keep its default "
                f"({_short(default)}); strings of unknown meaning are refused."
            )
        elif isinstance(value, list) and _known_strings(value, default):
            continue  # per-layer kinds ("sliding_attention", ...) the default list names
        else:
            try:
                _plain(value, here)
            except ModelSpecError:
                if not (isinstance(value, list) and len(value) <= _MAX_ITEMS):
                    raise
                for i, v in enumerate(value):  # long lists of numbers (per-layer settings)
                    _plain(v, f"{here}[{i}]", 1)


def _known_strings(value: list, default: Any) -> bool:
    """A list of strings, each of which the field's default list holds (per-layer kinds
    such as ``layer_types``, longer or shorter with the layer count)."""
    known = set(default) if isinstance(default, list | tuple) else set()
    return (
        len(value) <= _MAX_ITEMS
        and all(isinstance(v, str) for v in value)
        and any(isinstance(v, str) for v in value)
        and set(value) <= {k for k in known if isinstance(k, str)}
    )
