"""Options objects that serialize: frozen dataclasses with ``to_dict`` / ``from_dict``.

Every options class of slimtorch (channel pruning, weight pruning, each conversion kind)
derives from ``Options``. ``to_dict`` gives JSON data tagged with the class name and a
version, which ``.slim`` plans record and recipes replay; ``from_dict`` validates it back
(unknown keys and newer versions are named in the error).

Example:
    >>> from slimtorch import WeightOptions
    >>> d = WeightOptions(sparsity=0.5).to_dict()
    >>> WeightOptions.from_dict(d) == WeightOptions(sparsity=0.5)
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from ._registry import suggest
from .errors import ConfigError

__all__ = ["Options"]

T = TypeVar("T", bound="Options")


def _json(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    return value


class Options:
    """Mixin of options dataclasses: ``to_dict`` / ``from_dict`` with a version."""

    VERSION: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable fields plus ``"options"`` (the class) and ``"version"``."""
        out: dict[str, Any] = {"options": type(self).__name__, "version": self.VERSION}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.init:
                out[f.name] = _json(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        """Rebuilds (and validates) options written by ``to_dict``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__}.from_dict needs a dict, got {type(data).__name__}")
        data = dict(data)
        name = data.pop("options", cls.__name__)
        version = data.pop("version", cls.VERSION)
        if name != cls.__name__:
            raise ConfigError(f"these are {name} options, not {cls.__name__}")
        if not isinstance(version, int) or version > cls.VERSION:
            raise ConfigError(
                f"{cls.__name__} version {version!r} is newer than this slimtorch reads "
                f"({cls.VERSION}); upgrade slimtorch."
            )
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        for key in data:
            if key not in fields:
                raise ConfigError(
                    f"{cls.__name__} has no option {key!r}{suggest(key, fields)}; its options "
                    f"are {sorted(fields)}."
                )
        kwargs = {}
        for key, value in data.items():
            default = fields[key].default
            if isinstance(default, tuple) and isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)
