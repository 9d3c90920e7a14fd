"""Module types that ``.slim`` plans can rebuild from a JSON config, without pickle.

A structural edit that swaps in a new module records ``{"type": name, "config": {...}}``;
loading calls ``build_module(name, config)``. torch's own Conv/Linear/Identity/BatchNorm are
known; slimtorch's building blocks register themselves with ``@register_module`` and define
``config() -> dict`` returning their constructor's keyword arguments.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from torch import nn

from .._registry import Registry
from ..errors import FormatError

__all__ = [
    "BUILDERS",
    "build_module",
    "check_config",
    "module_config",
    "module_type_name",
    "register_module",
]

BUILDERS: Registry[type[nn.Module]] = Registry(
    "module builder",
    "name",
    hint="Register the type with slimtorch.nn.register_module and give it a config() method.",
)


def register_module(cls: type[nn.Module] | None = None, *, override: bool = False) -> Any:
    """Class decorator: lets ``.slim`` plans rebuild ``cls`` from ``cls(**module.config())``.

    Types are known by their class name, so two registered classes may not share one
    (``override=True`` replaces on purpose).
    """

    def wrap(c: type[nn.Module]) -> type[nn.Module]:
        BUILDERS.add(c.__name__, c, override=override)
        return c

    return wrap(cls) if cls is not None else wrap


def _conv_config(m: nn.Module) -> dict[str, Any]:
    return {
        "in_channels": m.in_channels,
        "out_channels": m.out_channels,
        "kernel_size": list(m.kernel_size),
        "stride": list(m.stride),
        "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
        "dilation": list(m.dilation),
        "groups": m.groups,
        "bias": m.bias is not None,
        "padding_mode": m.padding_mode,
    }


_TORCH_CONFIGS: dict[type[nn.Module], Callable[[nn.Module], dict[str, Any]]] = {
    nn.Conv1d: _conv_config,
    nn.Conv2d: _conv_config,
    nn.Conv3d: _conv_config,
    nn.Linear: lambda m: {
        "in_features": m.in_features,
        "out_features": m.out_features,
        "bias": m.bias is not None,
    },
    nn.Identity: lambda m: {},
    nn.BatchNorm2d: lambda m: {
        "num_features": m.num_features,
        "eps": m.eps,
        "momentum": m.momentum,
        "affine": m.affine,
        "track_running_stats": m.track_running_stats,
    },
    nn.ReLU: lambda m: {"inplace": m.inplace},
    nn.BatchNorm1d: lambda m: {
        "num_features": m.num_features,
        "eps": m.eps,
        "momentum": m.momentum,
        "affine": m.affine,
        "track_running_stats": m.track_running_stats,
    },
    nn.MaxPool2d: lambda m: {
        "kernel_size": m.kernel_size,
        "stride": m.stride,
        "padding": m.padding,
        "dilation": m.dilation,
        "ceil_mode": m.ceil_mode,
    },
}
for _cls in _TORCH_CONFIGS:
    BUILDERS.add(_cls.__name__, _cls)


def module_type_name(module: nn.Module) -> str:
    return type(module).__name__


def module_config(module: nn.Module) -> dict[str, Any]:
    """JSON-serializable constructor arguments that rebuild ``module``'s architecture."""
    fn = _TORCH_CONFIGS.get(type(module))  # exact type: a subclass may build differently
    if fn is not None:
        return fn(module)
    if BUILDERS.lookup(type(module).__name__) is type(module) and hasattr(module, "config"):
        return dict(module.config())
    raise FormatError(
        f"{type(module).__name__} cannot be recorded in a .slim plan; register it with "
        "slimtorch.nn.register_module and give it a config() method."
    )


_MAX_INT = 10**7


def _plain_value(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, bool | str):
        return not isinstance(value, str) or len(value) <= 100
    if isinstance(value, int):
        return abs(value) <= _MAX_INT
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list) and depth < 2 and len(value) <= 1_000_000:
        return all(_plain_value(v, depth + 1) for v in value)
    return False


def check_config(cls: type[nn.Module], config: Any) -> None:
    """Raises FormatError unless ``config`` is keyword arguments ``cls`` accepts, as plain
    data: numbers, booleans, short strings and lists of them, sizes under 10 million."""
    if not isinstance(config, dict):
        raise FormatError(f"the config of a {cls.__name__} must be an object")
    params = inspect.signature(cls.__init__).parameters
    named = {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    unknown = sorted(set(config) - (named - {"self"}))
    if unknown:
        raise FormatError(f"{cls.__name__} takes no argument {unknown[0]!r}")
    for key, value in config.items():
        if not _plain_value(value):
            raise FormatError(
                f"{cls.__name__} config {key}={str(value)[:60]} is not plain data of sensible size"
            )


def build_module(type_name: str, config: dict[str, Any]) -> nn.Module:
    """Rebuilds a module recorded as ``(type_name, config)``; the config is checked first."""
    cls = BUILDERS.lookup(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise FormatError(
            f"the .slim plan names module type {type_name!r}, which is not registered; known: "
            f"{BUILDERS.list()}. Import the package that defines it before loading."
        )
    check_config(cls, config)
    try:
        return cls(**config)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise FormatError(f"cannot rebuild {type_name} from config {config}: {exc}") from exc
