"""The conversion registry: one ``Conversion`` subclass per kind, rules per module type.

A conversion kind (``"low_rank"``, ``"fuse_bn"``, ...) is a ``Conversion`` subclass
registered with ``@register_conversion``. Its per-module-type knowledge lives in its own rule
table, filled with ``@MyConversion.rule(nn.Linear)``, so users can teach a kind their own
layer types without touching slimtorch. A rule builds the new module from the old one and
never mutates the model: ``slimtorch.convert`` swaps modules through ``slimtorch.edit``.

Example:
    >>> from slimtorch.convert.low_rank import LowRank
    >>> @LowRank.rule(MyLinear)
    ... def _my_linear(name, module, options, x):
    ...     ...  # return the replacement module
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from .._registry import Registry, suggest
from ..errors import ConfigError, ConvertError
from ..graph.trace import ModelGraph

__all__ = [
    "Conversion",
    "LayerRewrite",
    "Rule",
    "conversion_kinds",
    "get_conversion",
    "register_conversion",
]


@dataclass
class LayerRewrite:
    """One layer's rewrite: what to swap in, and modules to compare before and after.

    Attributes:
        name: the layer the row is reported under.
        before: computes the layer's original function on its input (the module itself, or
            e.g. ``Sequential(conv, bn)`` for ``fuse_bn``).
        after: the replacement computing (approximately) the same function.
        replacements: module name -> new module to swap into the model.
        note: a short remark for the table (the rank chosen, the energy kept, ...).
    """

    name: str
    before: nn.Module
    after: nn.Module
    replacements: dict[str, nn.Module] = field(default_factory=dict)
    note: str = ""


Rule = Callable[[str, nn.Module, Any, "torch.Tensor | None"], "nn.Module | LayerRewrite"]

CONVERSIONS: Registry[type[Conversion]] = Registry(
    "conversion kind", "name", hint="Register one with @slimtorch.register_conversion."
)


class Conversion:
    """Base class of a conversion kind.

    Subclasses set ``kind``, ``Options`` (a frozen dataclass validated in ``__post_init__``)
    and fill their rule table with ``@Subclass.rule(ModuleType)``. A rule gets
    ``(name, module, options, x)`` with ``x`` the layer's input on the example inputs (or
    None) and returns the replacement module (or a ``LayerRewrite``). It raises
    ``ConvertError`` when the layer cannot take the rewrite (reported as skipped when layers
    were not named one by one) and ``ConfigError`` when an option does not fit the layer.
    """

    kind: ClassVar[str] = ""
    Options: ClassVar[type[Any]]
    needs_inputs: ClassVar[bool] = False
    rules: ClassVar[Registry[Rule]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.rules = Registry(
            f"{cls.kind or cls.__name__} rule",
            "class",
            inherit="same_forward",
            hint=f"Register one with @{cls.__name__}.rule(MyLayer).",
        )

    @classmethod
    def rule(cls, *types: type[nn.Module], override: bool = False) -> Callable[[Rule], Rule]:
        """Decorator: ``fn`` rewrites modules of these types (and of subclasses that keep
        their ``forward``: a subclass with its own forward computes something else)."""
        return cls.rules.register(*types, override=override)

    def make_options(self, options: dict[str, Any]) -> Any:
        """Builds ``Options`` from keyword arguments, naming unknown ones."""
        known = [f.name for f in dataclasses.fields(self.Options)]
        for key in options:
            if key not in known:
                raise ConfigError(
                    f"option {key}={options[key]!r} is unknown for {self.kind!r}"
                    f"{suggest(key, known)}. Its options are: {known or 'none'}."
                )
        return self.Options(**options)

    def targets(self, model: nn.Module, graph: ModelGraph | None) -> Iterator[str]:
        """Names of the modules this kind may rewrite when no layers are named."""
        for name, module in model.named_modules():
            if self.rules.lookup(type(module)) is not None:
                yield name

    def rewrite(
        self,
        model: nn.Module,
        name: str,
        options: Any,
        graph: ModelGraph | None,
        x: torch.Tensor | None,
    ) -> LayerRewrite:
        """The rewrite of layer ``name``; raises ``ConvertError`` if it does not apply."""
        module = model.get_submodule(name)
        rule = self.rules.lookup(type(module))
        if rule is None:
            known = self.rules.list()
            raise ConvertError(
                f"layer {name!r} is a {type(module).__name__}; {self.kind!r} rewrites {known}. "
                f"Register a rule with @{type(self).__name__}.rule({type(module).__name__})."
            )
        new = rule(name, module, options, x)
        if isinstance(new, LayerRewrite):
            return new
        return LayerRewrite(name, module, new, {name: new})


def register_conversion(cls: type[Conversion] | None = None, *, override: bool = False) -> Any:
    """Class decorator: makes ``slimtorch.convert(model, cls.kind)`` use ``cls``.

    Use it bare (``@register_conversion``) or as ``@register_conversion(override=True)`` to
    replace a built-in kind.
    """

    def wrap(c: type[Conversion]) -> type[Conversion]:
        if not c.kind:
            raise ConfigError(f"{c.__name__} needs a kind = '...' to be registered")
        CONVERSIONS.add(c.kind, c, override=override)
        return c

    return wrap(cls) if cls is not None else wrap


def conversion_kinds() -> list[str]:
    """Registered kinds, sorted."""
    return CONVERSIONS.list()


def get_conversion(kind: str) -> Conversion:
    """A fresh instance of the conversion registered as ``kind``."""
    cls = CONVERSIONS.lookup(kind)
    if cls is None:
        raise ConfigError(
            f"unknown conversion kind {kind!r}{suggest(kind, conversion_kinds())}. Use one of "
            f"{conversion_kinds()}."
        )
    return cls()
