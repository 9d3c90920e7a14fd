"""The run record of a compression run (``RUN_DIR/run.json``): reading it and checking it.

The recipe runner writes the record; ``report.html`` renders it. Only ``title`` and ``models``
are required; every other section may be missing or null, and keys the report does not know
are ignored. The record is checked with pydantic, one model a section; ``check_run`` lists
every problem of a record at once, each naming the offending key and what it must be.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic_core import PydanticCustomError

from ..errors import ConfigError, FormatError

__all__ = ["RUN_FILE", "Column", "check_run", "column_label", "read_run"]

RUN_FILE = "run.json"

# A latency column of the report: (backend, threads, int8).
Column = tuple[str, int, bool]


def column_label(key: Column) -> str:
    backend, threads, int8 = key
    return f"{backend}, {threads} thread{'s' if threads != 1 else ''}{', int8' if int8 else ''}"


_OWN = {"must", "rule", "model_type"}  # the problems that name their key


def _must(what: str) -> pydantic.WrapValidator:
    """The value's check; a failure is one problem, "it must be WHAT", unless every problem
    is of a key inside the value (a field of a list's item), reported there."""

    def check(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except pydantic.ValidationError as exc:
            if all(e["loc"] and e["type"] in _OWN for e in exc.errors()):
                raise
            raise PydanticCustomError("must", "{what}", {"what": what}) from None

    return pydantic.WrapValidator(check)


# A finite JSON number (NaN parses, but cannot be drawn or compared). The sections are strict
# (an int is no string, a bool no number); a pair may be a tuple or a list.
_Num = Annotated[float, pydantic.AllowInfNan(False)]
_Pairs = list[Annotated[tuple[_Num, _Num], pydantic.Strict(False)]]
Text = Annotated[str, _must("a string")]
Int = Annotated[int, _must("an integer")]
Number = Annotated[_Num, _must("a finite number")]
Fraction = Annotated[_Num, pydantic.Field(ge=0, le=1), _must("a fraction in 0..1 (0.93 for 93%)")]


class _Section(pydantic.BaseModel):
    """A missing key is a null one (both read "missing" when required); unknown keys pass."""

    model_config = pydantic.ConfigDict(strict=True)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _missing_is_null(cls, data: Any) -> Any:
        return {**dict.fromkeys(cls.model_fields), **data} if isinstance(data, Mapping) else data


class Timing(_Section):
    backend: Text
    threads: Int
    median_ms: Number
    p90_ms: Number | None = None
    iqr_ms: Number | None = None
    int8: Annotated[bool, _must("true or false")] | None = None


class ModelRow(_Section):
    name: Text
    params: Int | None = None
    macs: Int | None = None
    size_bytes: Int | None = None
    accuracy: Fraction | None = None
    latency: Annotated[list[Timing], _must("a list of timings")] | None = None

    @pydantic.field_validator("latency")
    @classmethod
    def _one_timing_a_column(cls, timings: list[Timing] | None) -> list[Timing] | None:
        keys = [(t.backend, t.threads, bool(t.int8)) for t in timings or ()]
        if twice := sorted({k for k in keys if keys.count(k) > 1}, key=keys.index):
            columns = " and of ".join(map(column_label, twice))
            raise PydanticCustomError("rule", "has two timings of {columns}", {"columns": columns})
        return timings


class Width(_Section):
    layer: Text
    before: Int
    after: Int


class LayerCost(_Section):
    layer: Text
    ms: Number


class Pareto(_Section):
    points: Annotated[_Pairs, _must("a list of [x, y] number pairs")] | None = None
    front: Annotated[_Pairs, _must("a list of [x, y] number pairs")] | None = None
    target_ms: Number | None = None
    original_ms: Number | None = None


class Step(_Section):
    step: Text
    seconds: Number | None = None
    summary: Text | None = None


_Costs = Annotated[list[LayerCost], _must("a list of {layer, ms}")]
_Curve = Annotated[_Pairs, _must("a list of [sparsity, metric] pairs")]


class Run(_Section):
    title: Text
    recipe: Text | None = None
    created: Text | None = None
    models: Annotated[
        list[ModelRow], pydantic.Field(min_length=1), _must("a non-empty list of models")
    ]
    widths: Annotated[list[Width], _must("a list of {layer, before, after}")] | None = None
    breakdown: Annotated[dict[str, _Costs], _must("an object {model: [{layer, ms}]}")] | None = None
    pareto: Annotated[Pareto, _must("an object {points, front, target_ms}")] | None = None
    sensitivity: Annotated[dict[str, _Curve], _must("an object {layer: [[s, m]]}")] | None = None
    steps: Annotated[list[Step], _must("a list of {step, seconds, summary}")] | None = None
    warnings: Annotated[list[Text], _must("a list of strings")] | None = None


_KEYED = ("breakdown", "sensitivity")  # sections keyed by model or layer name


def _where(loc: tuple[str | int, ...]) -> str:
    """``run.title``, ``models[0].latency[1].median_ms``, ``breakdown['pruned'][2].ms``."""
    path = "run" + "".join(
        f"[{p!r}]" if isinstance(p, int) or (i == 1 and loc[0] in _KEYED) else f".{p}"
        for i, p in enumerate(loc)
    )
    return path if len(loc) <= 1 else path.removeprefix("run.")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(error: Mapping[str, Any]) -> str:
    where, value = _where(error["loc"]), error.get("input")
    if error["type"] == "model_type":
        return f"{where} must be an object, not {type(value).__name__}"
    if error["type"] == "must":
        missing = value is None and not where.endswith("]")  # a key, not an item, is missing
        return f"{where} is {'missing' if missing else _show(value)}; it must be {error['msg']}"
    return f"{where} {error['msg']}"


def check_run(run: object) -> list[str]:
    """Every problem of a run record, one message each (empty when it can be rendered)."""
    try:
        Run.model_validate(run)
    except pydantic.ValidationError as exc:
        return [_problem(e) for e in exc.errors()]
    return []


def read_run(run_dir: str | os.PathLike) -> dict:
    """The run record ``RUN_DIR/run.json`` (or the JSON file itself), checked.

    Raises:
        ConfigError: the folder or its ``run.json`` does not exist.
        FormatError: the file is not JSON, or not a run record (every problem is listed).
    """
    path = Path(run_dir)
    file = path / RUN_FILE if path.is_dir() else path
    if not path.exists():
        raise ConfigError(f"run folder {str(path)!r} does not exist; pass the folder of a run.")
    if not file.is_file():
        raise ConfigError(
            f"{str(file)!r} does not exist: {str(path)!r} is not the folder of a run (the "
            f"recipe runner writes {RUN_FILE} there when it finishes)."
        )
    try:
        run = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise FormatError(
            f"{str(file)!r} is not UTF-8 text; it must be the JSON of a run."
        ) from None
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"{str(file)!r} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    if problems := check_run(run):
        raise FormatError(f"{str(file)!r} is not a run record: {'; '.join(problems)}.")
    return run
