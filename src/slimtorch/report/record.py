"""The run record of a compression run (``RUN_DIR/run.json``): reading it and checking it.

The recipe runner writes the record; ``report.html`` renders it. Only ``title`` and ``models``
are required; every other section may be missing or null. ``check_run`` lists every problem
of a record at once, each naming the offending key.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FormatError

__all__ = ["RUN_FILE", "Column", "check_run", "column_label", "read_run"]

RUN_FILE = "run.json"

# A latency column of the report: (backend, threads, int8).
Column = tuple[str, int, bool]


def column_label(key: Column) -> str:
    backend, threads, int8 = key
    return f"{backend}, {threads} thread{'s' if threads != 1 else ''}{', int8' if int8 else ''}"


def _num(value: object) -> bool:
    """A finite JSON number (``NaN`` parses, but cannot be drawn or compared)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _pairs(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(p, list | tuple) and len(p) == 2 and all(map(_num, p)) for p in value
    )


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_fields(item: object, where: str, fields: Mapping[str, tuple]) -> list[str]:
    """Problems of one JSON object: ``fields`` maps a key to (check, what, required)."""
    if not isinstance(item, dict):
        return [f"{where} must be an object, not {type(item).__name__}"]
    out = []
    for key, (check, what, required) in fields.items():
        value = item.get(key)
        if value is None:
            if required:
                out.append(f"{where}.{key} is missing; it must be {what}")
        elif not check(value):
            out.append(f"{where}.{key} is {_show(value)}; it must be {what}")
    return out


_TEXT = (lambda v: isinstance(v, str), "a string")
_NUMBER = (_num, "a finite number")
_INT = (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
_MODEL = {
    "name": (*_TEXT, True),
    "params": (*_INT, False),
    "macs": (*_INT, False),
    "size_bytes": (*_INT, False),
    "accuracy": (lambda v: _num(v) and 0 <= v <= 1, "a fraction in 0..1 (0.93 for 93%)", False),
    "latency": (lambda v: isinstance(v, list), "a list of timings", False),
}
_TIMING = {
    "backend": (*_TEXT, True),
    "threads": (*_INT, True),
    "median_ms": (*_NUMBER, True),
    "p90_ms": (*_NUMBER, False),
    "iqr_ms": (*_NUMBER, False),
    "int8": (lambda v: isinstance(v, bool), "true or false", False),
}
_SECTIONS = {
    "title": (*_TEXT, True),
    "recipe": (*_TEXT, False),
    "created": (*_TEXT, False),
    "models": (lambda v: isinstance(v, list) and v, "a non-empty list of models", True),
    "widths": (lambda v: isinstance(v, list), "a list of {layer, before, after}", False),
    "breakdown": (lambda v: isinstance(v, dict), "an object {model: [{layer, ms}]}", False),
    "pareto": (lambda v: isinstance(v, dict), "an object {points, front, target_ms}", False),
    "sensitivity": (lambda v: isinstance(v, dict), "an object {layer: [[s, m]]}", False),
    "steps": (lambda v: isinstance(v, list), "a list of {step, seconds, summary}", False),
    "warnings": (lambda v: isinstance(v, list), "a list of strings", False),
}
_PAIRS = (_pairs, "a list of [x, y] number pairs")
_PARETO = {
    "points": (*_PAIRS, False),
    "front": (*_PAIRS, False),
    "target_ms": (*_NUMBER, False),
    "original_ms": (*_NUMBER, False),
}


def _part(run: Mapping, key: str, kind: type) -> Any:
    """``run[key]`` if it has the right type, else an empty one (``check_run`` said why)."""
    value = run.get(key)
    return value if isinstance(value, kind) else kind()


def check_run(run: object) -> list[str]:
    """Every problem of a run record, one message each (empty when it can be rendered)."""
    out = _check_fields(run, "run", _SECTIONS)
    if not isinstance(run, dict):
        return out
    for i, model in enumerate(_part(run, "models", list)):
        out += _check_fields(model, f"models[{i}]", _MODEL)
        seen = set()
        for j, t in enumerate(_part(model, "latency", list) if isinstance(model, dict) else []):
            problems = _check_fields(t, f"models[{i}].latency[{j}]", _TIMING)
            out += problems
            key = None if problems else (t["backend"], t["threads"], bool(t.get("int8")))
            if key in seen:
                out.append(f"models[{i}].latency has two timings of {column_label(key)}")
            seen.add(key)
    width = {"layer": (*_TEXT, True), "before": (*_INT, True), "after": (*_INT, True)}
    for i, w in enumerate(_part(run, "widths", list)):
        out += _check_fields(w, f"widths[{i}]", width)
    cost = {"layer": (*_TEXT, True), "ms": (*_NUMBER, True)}
    for name, rows in _part(run, "breakdown", dict).items():
        if not isinstance(rows, list):
            out.append(f"breakdown[{name!r}] must be a list of {{layer, ms}}")
            continue
        for i, r in enumerate(rows):
            out += _check_fields(r, f"breakdown[{name!r}][{i}]", cost)
    if isinstance(run.get("pareto"), dict):
        out += _check_fields(run["pareto"], "pareto", _PARETO)
    for name, points in _part(run, "sensitivity", dict).items():
        if not _pairs(points):
            out.append(f"sensitivity[{name!r}] must be a list of [sparsity, metric] pairs")
    step = {"step": (*_TEXT, True), "seconds": (*_NUMBER, False), "summary": (*_TEXT, False)}
    for i, s in enumerate(_part(run, "steps", list)):
        out += _check_fields(s, f"steps[{i}]", step)
    for i, w in enumerate(_part(run, "warnings", list)):
        if not isinstance(w, str):
            out.append(f"warnings[{i}] is {_show(w)}; it must be a string")
    return out


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
