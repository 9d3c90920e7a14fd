"""The conversion registry: one ``Conversion`` subclass per kind, rules per module type.

A conversion kind (``"low_rank"``, ``"fuse_bn"``, ...) is a ``Conversion`` subclass
registered with ``@register_conversion``. Its per-module-type knowledge lives in its own rule
table, filled with ``@MyConversion.rule(nn.Linear)``, so users can teach a kind their own
layer types without touching slimtorch. A rule builds the new module from the old one and
never mutates the model: ``slimtorch.convert`` swaps modules in one place.

Example:
    >>> from slimtorch.convert.low_rank import LowRank
    >>> @LowRank.rule(MyLinear)
    ... def _my_linear(name, module, options, x):
    ...     ...  # return the replacement module
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

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

_CONVERSIONS: dict[str, type[Conversion]] = {}


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
    rules: ClassVar[dict[type[nn.Module], Rule]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.rules = {}

    @classmethod
    def rule(cls, *types: type[nn.Module]) -> Callable[[Rule], Rule]:
        """Decorator: ``fn`` rewrites modules of exactly these types."""

        def wrap(fn: Rule) -> Rule:
            for t in types:
                cls.rules[t] = fn
            return fn

        return wrap

    def make_options(self, options: dict[str, Any]) -> Any:
        """Builds ``Options`` from keyword arguments, naming unknown ones."""
        known = [f.name for f in dataclasses.fields(self.Options)]
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"option {key}={options[key]!r} is unknown for {self.kind!r}.{hint} "
                    f"Its options are: {known or 'none'}."
                )
        return self.Options(**options)

    def targets(self, model: nn.Module, graph: ModelGraph | None) -> Iterator[str]:
        """Names of the modules this kind may rewrite when no layers are named."""
        for name, module in model.named_modules():
            if type(module) in self.rules:
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
        rule = self.rules.get(type(module))
        if rule is None:
            known = sorted(t.__name__ for t in self.rules)
            raise ConvertError(
                f"layer {name!r} is a {type(module).__name__}; {self.kind!r} rewrites {known}. "
                f"Register a rule with @{type(self).__name__}.rule({type(module).__name__})."
            )
        new = rule(name, module, options, x)
        if isinstance(new, LayerRewrite):
            return new
        return LayerRewrite(name, module, new, {name: new})


def register_conversion(cls: type[Conversion]) -> type[Conversion]:
    """Class decorator: makes ``slimtorch.convert(model, cls.kind)`` use ``cls``."""
    assert cls.kind, f"{cls.__name__} needs a kind"
    _CONVERSIONS[cls.kind] = cls
    return cls


def conversion_kinds() -> list[str]:
    """Registered kinds, sorted."""
    return sorted(_CONVERSIONS)


def get_conversion(kind: str) -> Conversion:
    """A fresh instance of the conversion registered as ``kind``."""
    cls = _CONVERSIONS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        close = difflib.get_close_matches(str(kind), list(_CONVERSIONS), n=1, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown conversion kind {kind!r}.{hint} Use one of {conversion_kinds()}."
        )
    return cls()
