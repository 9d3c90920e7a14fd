"""Model specs: ``torchvision:resnet50``, ``timm:resnet18``, ``package.module:factory``.

A model built from a spec remembers it (``spec_of``), so ``save`` can record how to rebuild
the architecture without pickling code.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .._registry import suggest
from ..edit.log import get_meta, set_meta
from ..errors import ModelSpecError
from .policy import check_hf_config, check_spec_kwargs

__all__ = ["default_input_shape", "load_model", "set_spec", "spec_of"]


def set_spec(model: nn.Module, spec: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Records on the model how to rebuild it (kept through ``copy.deepcopy``)."""
    set_meta(model, "spec", {"spec": spec, "kwargs": dict(kwargs or {})})
    return model


def spec_of(model: nn.Module) -> dict[str, Any] | None:
    """The ``{"spec": ..., "kwargs": ...}`` a model was built from, if known."""
    return get_meta(model, "spec")


def _torchvision(name: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        import torchvision
    except ImportError as exc:
        raise ModelSpecError(
            "torchvision is not installed; run pip install 'slimtorch[vision]'."
        ) from exc
    names = torchvision.models.list_models()
    if name not in names:
        raise ModelSpecError(
            f"unknown torchvision model {name!r}{suggest(name, names)}. "
            "See torchvision.models.list_models() for every name."
        )
    check_spec_kwargs("torchvision", kwargs)
    builder = torchvision.models.get_model_builder(name)
    if "weights_backbone" in inspect.signature(builder).parameters:
        kwargs = kwargs | {"weights_backbone": None}  # never download a backbone
    return builder(weights=None, **kwargs)


def _timm(name: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        import timm
    except ImportError as exc:
        raise ModelSpecError("timm is not installed; run pip install 'slimtorch[vision]'.") from exc
    names = timm.list_models()
    if name not in names:
        raise ModelSpecError(
            f"unknown timm model {name!r}{suggest(name, names)}. "
            "See timm.list_models('pattern*') for every name."
        )
    check_spec_kwargs("timm", kwargs)
    return timm.create_model(name, pretrained=False, **kwargs)


def _hf(name: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        import transformers
    except ImportError as exc:
        raise ModelSpecError("transformers is not installed; pip install transformers") from exc
    check_spec_kwargs("hf", kwargs)
    cls = getattr(transformers, name, None) if name.isidentifier() else None
    config_class = getattr(cls, "config_class", None)
    if not (
        isinstance(cls, type)
        and issubclass(cls, transformers.PreTrainedModel)
        and isinstance(config_class, type)
        and issubclass(config_class, transformers.PretrainedConfig)
    ):
        raise ModelSpecError(
            f"transformers has no model class {name!r}; write e.g. 'hf:BertModel' with "
            "config=... (a config dict)."
        )
    config = dict(kwargs.get("config", {}))
    for key in _HF_PROVENANCE:  # where the weights came from: names no architecture
        config.pop(key, None)
    check_hf_config(config, config_class().to_dict())
    return cls(config_class.from_dict(config))


# Config fields that record where a model was loaded from, not what it is: left out of specs
# (and dropped from older files) so that a spec never names a local path or a hub repo.
_HF_PROVENANCE = ("_name_or_path", "_commit_hash")


def _factory(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelSpecError(
            f"cannot import {module_name!r} from model spec {spec!r} ({exc}). Use "
            "'torchvision:NAME', 'timm:NAME', a .slim file, or 'package.module:factory'."
        ) from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise ModelSpecError(f"{module_name!r} has no callable {attr!r}{suggest(attr, public)}.")
    try:
        model = fn(**kwargs)
    except Exception as exc:
        raise ModelSpecError(
            f"calling {spec!r} with {kwargs} raised {type(exc).__name__}: {exc}. The factory "
            "must build the model from keyword arguments alone."
        ) from exc
    if not isinstance(model, nn.Module):
        raise ModelSpecError(
            f"{spec!r} returned {type(model).__name__}, not an nn.Module; point the spec at a "
            "function that builds the model."
        )
    return model


_BUILDERS = {"torchvision": _torchvision, "timm": _timm, "hf": _hf}


def _build(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    source, _, name = spec.partition(":")
    build = _BUILDERS.get(source)
    return build(name, kwargs) if build is not None else _factory(spec, kwargs)


def model_nbytes(spec: str, kwargs: dict[str, Any]) -> int | None:
    """Bytes of the parameters and buffers ``load_model(spec, **kwargs)`` would allocate,
    measured on the ``meta`` device (None when the builder cannot run there)."""
    refused: list[ModelSpecError] = []

    def build() -> nn.Module:
        try:
            return _build(spec, kwargs)
        except ModelSpecError as exc:  # a refused spec is an answer, not a meta-device failure
            refused.append(exc)
            raise

    built = _meta_build(build)
    if refused:
        raise refused[0]
    if built is None:
        return None
    tensors = [*built.parameters(), *built.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def load_model(spec: str, **kwargs: Any) -> nn.Module:
    """Builds a model from a spec, randomly initialized (no weights are downloaded).

    Args:
        spec: ``torchvision:NAME``, ``timm:NAME``, ``package.module:factory`` or a path to a
            ``.slim`` file.
        **kwargs: passed to the model's builder (e.g. ``num_classes=10``).

    Example:
        >>> model = load_model("torchvision:resnet18", num_classes=10)
        >>> model.fc.out_features
        10
    """
    if not isinstance(spec, str) or not spec:
        raise ModelSpecError(
            f"model spec {spec!r} is not a non-empty string; write e.g. 'torchvision:resnet50'."
        )
    if spec.endswith(".slim"):
        from .slim import load

        return load(spec)
    _, sep, name = spec.partition(":")
    if not sep or not name:
        raise ModelSpecError(
            f"model spec {spec!r} has no ':'; write 'torchvision:NAME', 'timm:NAME', a .slim "
            "file or 'package.module:factory'."
        )
    try:
        json.dumps(kwargs, allow_nan=False)  # recorded in .slim plans: plain data only
    except (TypeError, ValueError) as exc:
        raise ModelSpecError(
            f"the keyword arguments of {spec!r} must be plain JSON data ({exc})"
        ) from exc
    return set_spec(_build(spec, kwargs), spec, kwargs)


def default_input_shape(spec: str, model: nn.Module) -> tuple[int, ...] | None:
    """The input shape a model expects by default, or None when unknown.

    torchvision models use their first weights' transforms (ViTs their ``image_size``), timm
    models their ``pretrained_cfg``.
    """
    size = getattr(model, "image_size", None)
    if isinstance(size, int):
        return (1, 3, size, size)
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and "input_size" in cfg:
        return (1, *cfg["input_size"])
    if spec.startswith("torchvision:"):
        import torchvision

        try:
            weights = list(torchvision.models.get_model_weights(spec.partition(":")[2]))
        except (ValueError, KeyError):
            weights = []
        if weights:
            crop = weights[0].transforms().crop_size
            return (1, 3, crop[0], crop[-1])
    return None


def example_input(spec: str, model: nn.Module, shape: tuple[int, ...] | None) -> torch.Tensor:
    """A random input of ``shape``, or the model's default shape."""
    recorded = spec_of(model)
    if spec.endswith(".slim") and recorded is not None:
        spec = recorded["spec"]  # a .slim file knows the spec it was built from
    shape = shape or default_input_shape(spec, model)
    if shape is None:
        raise ModelSpecError(
            f"no default input shape is known for {spec!r}; pass one, e.g. --input 1,3,224,224."
        )
    return torch.randn(*shape)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return get_meta(model, "origin_shapes") or {
        k: tuple(v.shape) for k, v in model.state_dict().items()
    }


def remember_origin(model: nn.Module) -> nn.Module:
    """Before a structural edit: keeps the original shapes so ``ensure_spec`` can still infer
    the architecture later (cheap; the search itself waits until a spec is needed)."""
    if spec_of(model) is not None or get_meta(model, "origin_shapes") is not None:
        return model
    if type(model).__module__.startswith("transformers."):
        return ensure_spec(model)  # cheap, and the config is about to change
    set_meta(model, "origin_shapes", _shapes(model))
    return model


def _same_shapes(built: nn.Module, model: nn.Module) -> bool:
    return _shapes(built) == _shapes(model)


@contextlib.contextmanager
def _weights_on_meta() -> Iterator[None]:
    """Parameters and buffers registered inside go to the ``meta`` device; other tensors (a
    builder computing its widths with ``torch.arange(...).tolist()``) stay real."""
    Module = nn.Module
    register_parameter, register_buffer = Module.register_parameter, Module.register_buffer

    def param(self: nn.Module, name: str, p: nn.Parameter | None) -> None:
        if p is not None and not p.is_meta:
            p = nn.Parameter(p.detach().to("meta"), p.requires_grad)
        register_parameter(self, name, p)

    def buffer(self: nn.Module, name: str, b: torch.Tensor | None, persistent: bool = True) -> None:
        register_buffer(self, name, b.to("meta") if b is not None else None, persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = param, buffer  # type: ignore
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = (
            register_parameter,
            register_buffer,
        )


def _meta_build(fn: Any, **kwargs: Any) -> nn.Module | None:
    """The model ``fn(**kwargs)`` builds, without memory for its weights (None if it fails)."""
    try:
        with torch.device("meta"):
            return fn(**kwargs)
    except Exception:  # builders that compute with real tensors, or that reject the kwargs
        pass
    try:
        with _weights_on_meta():
            return fn(**kwargs)
    except Exception:
        return None


def ensure_spec(model: nn.Module) -> nn.Module:
    """Records a spec on a model built outside ``load_model`` when one can be inferred.

    Hugging Face models rebuild from their config; timm models from ``pretrained_cfg``;
    torchvision models from the builder whose architecture matches. Other models are left
    alone (``save`` then asks for ``spec=``).
    """
    if spec_of(model) is not None:
        return model
    config = getattr(model, "config", None)
    cls = type(model)
    if hasattr(config, "to_dict") and cls.__module__.startswith("transformers."):
        fields = {k: v for k, v in config.to_dict().items() if k not in _HF_PROVENANCE}
        return set_spec(model, f"hf:{cls.__name__}", {"config": fields})
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("architecture") and cls.__module__.startswith("timm."):
        import timm

        kwargs = {"num_classes": int(getattr(model, "num_classes", 1000))}
        built = _meta_build(timm.create_model, model_name=cfg["architecture"], **kwargs)
        if built is not None and _same_shapes(built, model):
            return set_spec(model, f"timm:{cfg['architecture']}", kwargs)
    if cls.__module__.startswith("torchvision.models"):
        import torchvision

        heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
        options = [{}] + ([{"num_classes": heads[-1].out_features}] if heads else [])
        for name in torchvision.models.list_models():
            builder = torchvision.models.get_model_builder(name)
            if builder.__module__ != cls.__module__:
                continue
            for kwargs in options:
                built = _meta_build(builder, **kwargs)
                if built is not None and type(built) is cls and _same_shapes(built, model):
                    return set_spec(model, f"torchvision:{name}", kwargs)
    return model
