"""One registry helper with one lookup rule, shared by every registry of slimtorch.

Three kinds of key, each with its lookup:

- ``"class"``: keys are classes, or ``"package.module.ClassName"`` strings so that optional
  libraries need not be imported. A lookup walks the MRO of the type asked about, nearest
  class first. With ``inherit="same_forward"`` an entry found on a base class applies only
  when the subclass did not override ``forward`` (a subclass with its own forward computes
  something else: timm's ``Conv2dSame`` pads dynamically, so a ``Conv2d`` rewrite would be
  wrong for it).
- ``"op"``: keys are ATen ``OpOverload``s or ``OpOverloadPacket``s; a lookup tries the exact
  overload, then its packet.
- ``"name"``: keys are strings, looked up exactly.

Registering a key twice is an error unless ``override=True`` says it is meant. ``list()``
gives the registered keys for discoverability and error messages.

Example:
    >>> reg = Registry("importance", "name")
    >>> @reg.register("l1")
    ... def l1(x): ...
    >>> reg.list()
    ['l1']
"""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, Literal, TypeVar

from .errors import ConfigError

__all__ = ["Registry", "class_key", "suggest"]

V = TypeVar("V")
Kind = Literal["class", "op", "name"]


def class_key(cls: type) -> str:
    """The ``"package.module.ClassName"`` string that names ``cls`` in a registry."""
    return f"{cls.__module__}.{cls.__qualname__}"


def suggest(name: Any, choices: Iterable[Any], n: int = 3) -> str:
    """`` (did you mean a, b?)`` for close matches among ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _label(key: Any) -> str:
    if isinstance(key, type):
        return key.__name__
    return str(key)


class Registry(Generic[V]):
    """A table from classes, ATen ops or names to values (usually functions).

    Args:
        what: what the values are, for messages ("dimension rule", "importance").
        kind: ``"class"``, ``"op"`` or ``"name"`` (see the module docstring).
        inherit: for ``"class"``: ``"mro"`` (subclasses inherit entries) or
            ``"same_forward"`` (only subclasses that keep the base's ``forward``).
        hint: how to extend it, appended to lookup errors (``"register it with ..."``).
    """

    def __init__(
        self,
        what: str,
        kind: Kind,
        *,
        inherit: Literal["mro", "same_forward"] = "mro",
        hint: str = "",
    ) -> None:
        if kind not in ("class", "op", "name"):
            raise ValueError(f"unknown registry kind {kind!r}")
        self.what, self.kind, self.inherit, self.hint = what, kind, inherit, hint
        self._table: dict[Any, V] = {}
        # class lookups, cleared on every change; weak, since some libraries make a class per
        # instance (torch.fx's GraphModule)
        self._by_class: weakref.WeakKeyDictionary[type, V | None] = weakref.WeakKeyDictionary()

    # -- registering ----------------------------------------------------------------------
    def _key(self, key: Any) -> Any:
        if self.kind == "class":
            if isinstance(key, type):
                return key
            if isinstance(key, str) and "." in key:
                return key
            raise ConfigError(
                f"a {self.what} is registered for a class or a 'package.module.ClassName' "
                f"string, not {key!r}"
            )
        if self.kind == "name":
            if not isinstance(key, str) or not key:
                raise ConfigError(f"a {self.what} is registered under a name, not {key!r}")
            return key
        if not hasattr(key, "name") and not hasattr(key, "overloads"):
            raise ConfigError(
                f"a {self.what} is registered for an ATen op such as torch.ops.aten.mm, not {key!r}"
            )
        return key

    def add(self, key: Any, value: V, *, override: bool = False) -> V:
        """Registers ``value`` under ``key``; a second registration needs ``override``."""
        key = self._key(key)
        if not override:
            same = self._table.get(key)
            if same is None and self.kind == "class":  # a class and its string name clash
                alias = class_key(key) if isinstance(key, type) else None
                same = self._table.get(alias) if alias else None
            if same is not None and same is not value:
                raise ConfigError(
                    f"{_label(key)} already has a {self.what} ({getattr(same, '__name__', same)})"
                    "; pass override=True to replace it."
                )
        self._table[key] = value
        self._by_class.clear()
        return value

    def register(self, *keys: Any, override: bool = False) -> Callable[[V], V]:
        """Decorator registering the decorated value under every key."""
        if not keys:
            raise ConfigError(f"register a {self.what} for at least one key")

        def wrap(value: V) -> V:
            for key in keys:
                self.add(key, value, override=override)
            return value

        return wrap

    def remove(self, key: Any) -> None:
        """Drops ``key`` (for tests and for users replacing a built-in entry)."""
        self._table.pop(self._key(key), None)
        self._by_class.clear()

    # -- looking up -----------------------------------------------------------------------
    def lookup(self, key: Any, default: V | None = None) -> V | None:
        """The value for ``key`` under this registry's rule, else ``default``."""
        if self.kind == "name":
            return self._table.get(key, default) if isinstance(key, str) else default
        if self.kind == "op":
            value = self._table.get(key)
            if value is None and hasattr(key, "overloadpacket"):
                value = self._table.get(key.overloadpacket)
            return default if value is None else value
        cls = key if isinstance(key, type) else type(key)
        try:
            value = self._by_class[cls]
        except KeyError:
            value = self._by_class[cls] = self._walk_mro(cls)
        return default if value is None else value

    def _walk_mro(self, cls: type) -> V | None:
        forward = getattr(cls, "forward", None)
        for base in cls.__mro__:
            value = self._table.get(base)
            if value is None:
                value = self._table.get(class_key(base))
            if value is None:
                continue
            if (
                self.inherit == "same_forward"
                and base is not cls
                and getattr(base, "forward", None) is not forward
            ):
                return None
            return value
        return None

    def get(self, key: Any) -> V:
        """The value for ``key``; raises ``ConfigError`` naming the known keys."""
        value = self.lookup(key)
        if value is None:
            label = _label(key if self.kind != "class" or isinstance(key, type) else type(key))
            hint = f" {self.hint}" if self.hint else ""
            raise ConfigError(
                f"no {self.what} for {label!r}{suggest(label, self.list())}; known: "
                f"{', '.join(self.list()) or 'none'}.{hint}"
            )
        return value

    def list(self) -> list[str]:
        """The registered keys as sorted strings."""
        return sorted({_label(k) for k in self._table})

    def keys(self) -> list[Any]:
        return list(self._table)

    def items(self) -> list[tuple[Any, V]]:
        return list(self._table.items())

    def __contains__(self, key: Any) -> bool:
        return self.lookup(key) is not None

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._table))

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {self.kind!r}, {len(self)} entries)"
