"""What a recipe may say, validated up front with every problem listed at once.

A recipe is YAML::

    model: slimtorch.train.models:digits_cnn   # a model spec (see load_model) or a .slim file
    input: [1, 1, 8, 8]                        # the example input's shape (default: the spec's)
    data: digits                               # digits, mnist1d or a folder of CLASS/IMAGE files
    steps:
      - finetune: {epochs: 3}                  # one-key mappings: the step and its options
      - prune_channels: {speedup: 2}
      - finetune: {epochs: 3, teacher: baseline}

Each step's options are the fields of the options dataclass its API function takes
(``ChannelOptions`` for ``prune_channels``, ``FinetuneOptions`` for ``finetune``, ...), so a
recipe accepts what the Python API accepts and nothing else. Validation has two stages, both
over every step before any work: pydantic checks types and unknown keys (schemas built from
the dataclasses' type hints, with ``extra="forbid"``); the dataclasses' own checks then name
impossible values (a ratio of 1.5, a speed-up below 1). All problems raise one ``RecipeError``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pydantic

from .._registry import Registry, suggest
from ..errors import ConfigError, RecipeError
from ..nas.options import SearchOptions
from ..prune.channels.options import ChannelOptions
from ..prune.depth.options import LayerOptions
from ..prune.weights.options import WeightOptions
from ..train.options import FinetuneOptions

__all__ = ["Recipe", "STEPS", "Step", "StepKind", "validate"]


# -- options of the steps that have no API options class --------------------------------------
@dataclass(frozen=True)
class AnalyzeStep:
    """``analyze``: parameters, MACs and size of the current model, recorded."""


@dataclass(frozen=True)
class ConvertStep:
    """``convert``: a weight-preserving rewrite (``st.convert(model, kind, layers, **options)``)."""

    kind: str = "depthwise_separable"
    layers: str | list[str] | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        from ..convert import conversion_kinds, get_conversion

        if self.kind not in conversion_kinds():
            raise ConfigError(
                f"convert kind {self.kind!r} is unknown{suggest(self.kind, conversion_kinds())}; "
                f"known: {', '.join(conversion_kinds())}."
            )
        if isinstance(self.layers, str) and self.layers != "auto":
            raise ConfigError(f"layers={self.layers!r}: give 'auto' or a list of module names.")
        get_conversion(self.kind).make_options(dict(self.options))


@dataclass(frozen=True)
class FinetuneStep(FinetuneOptions):
    """``finetune``: ``FinetuneOptions``, plus the teacher to distill from: ``baseline`` (the
    model before the first compression step), ``previous`` (before this step) or none."""

    teacher: Literal["baseline", "previous"] | None = None


@dataclass(frozen=True)
class BenchmarkStep:
    """``benchmark``: baseline, current model and exported files, interleaved, per backend and
    thread count (``all`` = every core)."""

    threads: tuple[int | Literal["all"], ...] = (1, "all")
    backends: tuple[Literal["torch", "onnxruntime", "executorch", "openvino"], ...] = ("torch",)
    rounds: int = 20
    warmup: int = 3
    breakdown: bool = True

    def __post_init__(self) -> None:
        if not self.threads or not self.backends:
            raise ConfigError("benchmark needs at least one thread count and one backend.")
        if any(isinstance(t, int) and t < 1 for t in self.threads):
            raise ConfigError(f"benchmark threads {list(self.threads)}: counts must be >= 1.")
        if self.rounds < 3:
            raise ConfigError(f"benchmark rounds={self.rounds}: use at least 3 for a median.")


@dataclass(frozen=True)
class ExportStep:
    """``export``: the current model for a runtime (checked), optionally int8 too."""

    format: Literal["onnx", "executorch", "openvino"] = "onnx"
    int8: bool = False
    method: Literal["static", "dynamic"] = "static"
    calib_samples: int = 256

    def __post_init__(self) -> None:
        if self.int8 and self.format == "openvino":
            raise ConfigError("int8 export is available for onnx and executorch, not openvino.")
        if self.calib_samples < 1:
            raise ConfigError(f"calib_samples={self.calib_samples}: give at least 1.")


@dataclass(frozen=True)
class ReportStep:
    """``report``: the HTML report of the run so far (``report.html`` in the run folder)."""

    name: str = "report.html"


@dataclass(frozen=True)
class StepKind:
    """One kind of step: its options dataclass and whether it needs the training data."""

    name: str
    options: type
    needs_data: bool = False
    changes_model: bool = False


STEPS: Registry[StepKind] = Registry("recipe step", "name")
for _kind in (
    StepKind("analyze", AnalyzeStep),
    StepKind("convert", ConvertStep, changes_model=True),
    StepKind("prune_channels", ChannelOptions, changes_model=True),
    StepKind("prune_weights", WeightOptions, changes_model=True),
    StepKind("prune_layers", LayerOptions, needs_data=True, changes_model=True),
    StepKind("search", SearchOptions, needs_data=True, changes_model=True),
    StepKind("finetune", FinetuneStep, needs_data=True, changes_model=True),
    StepKind("benchmark", BenchmarkStep),
    StepKind("export", ExportStep),
    StepKind("report", ReportStep),
):
    STEPS.add(_kind.name, _kind)


@dataclass(frozen=True)
class Step:
    kind: StepKind
    options: Any  # an instance of kind.options
    given: dict[str, Any]  # what the recipe wrote (for the resolved recipe)


@dataclass(frozen=True)
class Recipe:
    model: str
    input: tuple[int, ...] | None
    data: str | None
    image_size: int
    seed: int
    title: str | None
    steps: tuple[Step, ...]

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe: what runs, every option explicit where the recipe gave it."""
        return {
            "model": self.model,
            "input": list(self.input) if self.input else None,
            "data": self.data,
            "image_size": self.image_size,
            "seed": self.seed,
            "title": self.title,
            "steps": [{s.kind.name: s.given} for s in self.steps],
        }


class _Top(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    model: str
    input: list[pydantic.PositiveInt] | None = None
    data: str | None = None
    image_size: pydantic.PositiveInt = 32
    seed: int = 0
    title: str | None = None
    steps: list[Any] = pydantic.Field(min_length=1)


@functools.cache
def _schema(cls: type) -> type[pydantic.BaseModel]:
    """A pydantic model with the dataclass's fields and type hints, unknown keys forbidden."""
    hints = typing.get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else ...)
        )
        hint = hints[f.name]
        fields[f.name] = (hint, default)
    return pydantic.create_model(
        f"{cls.__name__}Schema",
        __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _pydantic_problems(exc: pydantic.ValidationError, prefix: str, known: list[str]) -> list[str]:
    problems = []
    for err in exc.errors():
        where = _where((prefix, *err["loc"])) if prefix else _where(err["loc"])
        if err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            problems.append(
                f"{where}: unknown option {key!r}{suggest(key, known)}; the options are "
                f"{', '.join(known) or 'none'}"
            )
        elif err["type"] == "missing":
            problems.append(f"{where}: required")
        else:
            problems.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return problems


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def _step(i: int, raw: Any, problems: list[str]) -> Step | None:
    where = f"steps[{i}]"
    if isinstance(raw, str):
        raw = {raw: {}}
    if not isinstance(raw, Mapping) or len(raw) != 1:
        problems.append(
            f"{where}: a step is one name with its options, e.g. '- prune_channels: "
            f"{{ratio: 0.5}}'; got {raw!r}"
        )
        return None
    ((name, given),) = raw.items()
    kind = STEPS.lookup(name)
    if kind is None:
        problems.append(
            f"{where}: unknown step {name!r}{suggest(name, STEPS.list())}; the steps are "
            f"{', '.join(STEPS.list())}"
        )
        return None
    given = {} if given is None else given
    if not isinstance(given, Mapping):
        problems.append(f"{where}.{name}: options must be a mapping, got {given!r}")
        return None
    known = [f.name for f in dataclasses.fields(kind.options) if f.init]
    try:
        checked = _schema(kind.options).model_validate(dict(given))
    except pydantic.ValidationError as exc:
        problems.extend(_pydantic_problems(exc, f"{where}.{name}", known))
        return None
    values = {k: _frozen(getattr(checked, k)) for k in given}
    try:
        options = kind.options(**values)
    except (ConfigError, ValueError, TypeError) as exc:
        problems.append(f"{where}.{name}: {exc}")
        return None
    return Step(kind, options, dict(given))


def validate(raw: Any, source: str = "recipe") -> Recipe:
    """A ``Recipe`` from parsed YAML; ``RecipeError`` lists every problem found."""
    if not isinstance(raw, Mapping):
        raise RecipeError(
            [f"a recipe is a mapping with model, data and steps; got {type(raw).__name__}"],
            source,
        )
    problems: list[str] = []
    try:
        top = _Top.model_validate(dict(raw))
    except pydantic.ValidationError as exc:
        problems.extend(_pydantic_problems(exc, "", list(_Top.model_fields)))
        steps_raw = raw.get("steps") if isinstance(raw.get("steps"), list) else []
        top = None
    else:
        steps_raw = top.steps
    steps = [_step(i, s, problems) for i, s in enumerate(steps_raw)]
    data = raw.get("data")
    for i, step in enumerate(steps):
        if step is None:
            continue
        needs = (
            step.kind.needs_data
            or (step.kind.name == "export" and step.options.int8)
            or (step.kind.name == "prune_channels" and step.options.compensate)
        )
        if needs and not data:
            problems.append(
                f"steps[{i}].{step.kind.name}: needs data, and the recipe names none; add "
                "'data: digits' (or mnist1d, or a folder of CLASS/IMAGE files)"
            )
    if problems or top is None:
        raise RecipeError(problems, source)
    return Recipe(
        model=top.model,
        input=tuple(top.input) if top.input else None,
        data=top.data,
        image_size=top.image_size,
        seed=top.seed,
        title=top.title,
        steps=tuple(s for s in steps if s is not None),
    )
