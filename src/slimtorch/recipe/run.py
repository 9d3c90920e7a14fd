"""``run_recipe``: a recipe's steps run in order, each step's outcome kept in the run folder.

The run folder holds ``recipe.resolved.yaml`` (what ran, overrides applied), ``state.json``
(the steps finished, rewritten atomically after each), a ``.slim`` model after every step
that changed the model, the exported files, ``run.json`` (what the report shows) and
``report.html``. A rerun with the same resolved recipe skips the finished steps and resumes
from the last saved model; another recipe in the same folder is refused. Nothing outside the
folder is written, and no output may be one of the inputs.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from .._files import atomic_write
from ..errors import ConfigError, RecipeError
from ..io.slim import load, save
from ..io.spec import example_input, load_model
from ..runtime import ExportResult
from ..train.data import builtin_data
from .schema import Recipe, validate
from .steps import RESOLVED, STEP_RUNNERS, RunState

__all__ = ["RunResult", "load_recipe", "run_recipe"]

STATE = "state.json"


# -- reading ----------------------------------------------------------------------------------
def _set(tree: Any, path: str, value: Any) -> None:
    parts = path.split(".")
    node = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise RecipeError(
                    [f"override {path}: {part!r} is not a step index 0..{len(node) - 1}"]
                )
            if last:
                node[int(part)] = value
            node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise RecipeError([f"override {path}: {'.'.join(parts[:i])} is not a mapping"])


def load_recipe(
    recipe: str | os.PathLike | dict, *, model: str | None = None, overrides: Sequence[str] = ()
) -> Recipe:
    """Reads (YAML file or dict), applies ``--model`` and ``key=value`` overrides (dotted,
    steps by index: ``steps.1.prune_channels.speedup=3``), and validates."""
    source = "recipe"
    if isinstance(recipe, dict):
        raw = copy.deepcopy(recipe)
    else:
        path = Path(recipe)
        source = str(path)
        if not path.is_file():
            shipped = Path(__file__).resolve().parents[1] / "recipes" / f"{path.stem}.yaml"
            if path.suffix == "" and shipped.is_file():
                path, source = shipped, f"{shipped.stem} (shipped)"
            else:
                raise RecipeError([f"no recipe file {str(path)!r}"], source)
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise RecipeError([f"not valid YAML: {exc}"], source) from None
    if model and isinstance(raw, dict):
        raw["model"] = model
    problems = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            problems.append(
                f"override {item!r}: write key=value, e.g. steps.1.prune_channels.speedup=3"
            )
            continue
        try:
            _set(raw, key.strip(), yaml.safe_load(text))
        except RecipeError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RecipeError(problems, source)
    return validate(raw, source)


# -- the run ----------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What a run produced: the folder, the final model and the report data."""

    out: Path
    model: nn.Module
    run: dict[str, Any]
    resumed: int = 0  # steps taken from an earlier run

    @property
    def report(self) -> Path | None:
        path = self.out / "report.html"
        return path if path.exists() else None

    def summary(self) -> str:
        from ..report.table import format_table, human

        rows = []
        for m in self.run["models"]:
            lat = {(r["backend"], r["threads"]): r["median_ms"] for r in m.get("latency", [])}
            rows.append(
                (
                    m["name"],
                    "-" if m.get("params") is None else human(m["params"]),
                    "-" if m.get("macs") is None else human(m["macs"]),
                    "-" if m.get("size_bytes") is None else f"{m['size_bytes'] / 1e6:.2f}",
                    "-" if m.get("accuracy") is None else f"{100 * m['accuracy']:.2f}",
                    *(f"{lat[k]:.2f}" if k in lat else "-" for k in self._timings()),
                )
            )
        headers = (
            "model",
            "params",
            "MACs",
            "MB",
            "acc %",
            *(f"{b} {t}t ms" for b, t in self._timings()),
        )
        return format_table(headers, rows, f"run {self.out}")

    def _timings(self) -> list[tuple[str, int]]:
        seen = {}
        for m in self.run["models"]:
            for r in m.get("latency", []):
                seen[(r["backend"], r["threads"])] = None
        return list(seen)


# -- driving ----------------------------------------------------------------------------------
def _inputs(recipe: Recipe, model: nn.Module, train: Any) -> torch.Tensor:
    """The example input: real samples of the data where their shape fits (int8 checks and
    calibration then see the same range), else random of the recipe's or the spec's shape."""
    if train is not None:
        sample = train[0][0]
        batch = 1
        if recipe.input and tuple(recipe.input[1:]) == tuple(sample.shape):
            batch = recipe.input[0]
        if not recipe.input or batch != 1 or tuple(recipe.input[1:]) == tuple(sample.shape):
            return torch.stack([train[i % len(train)][0] for i in range(batch)])
    if recipe.input:
        return torch.randn(*recipe.input)
    return example_input(recipe.model, model, None)


def _check_outputs(recipe: Recipe, out: Path, source: Any) -> None:
    inputs = {Path(recipe.model).resolve()} if recipe.model.endswith(".slim") else set()
    if not isinstance(source, dict):
        inputs.add(Path(source).resolve())
    for f in out.iterdir() if out.exists() else ():
        if f.resolve() in inputs:
            raise ConfigError(
                f"{f} is an input of this run and lies in its output folder, where it could be "
                "overwritten; pass another --out."
            )


def run_recipe(
    recipe: str | os.PathLike | dict,
    out: str | os.PathLike,
    *,
    model: str | None = None,
    overrides: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> RunResult:
    """Runs a recipe into the folder ``out`` (created), resuming a run left unfinished there.

    Args:
        recipe: a YAML file, the name of a shipped recipe (``latency_target``), or a dict.
        out: the run folder.
        model: replaces the recipe's ``model``.
        overrides: ``key=value`` items (YAML values), e.g. ``steps.1.prune_channels.speedup=3``.
        log: where progress lines go.

    Raises:
        RecipeError: every problem of the recipe, before anything runs.
    """
    parsed = load_recipe(recipe, model=model, overrides=overrides)
    out = Path(out)
    _check_outputs(parsed, out, recipe)
    out.mkdir(parents=True, exist_ok=True)
    resolved = parsed.to_dict()
    state_path = out / STATE
    state: dict[str, Any] = {"recipe": resolved, "done": []}
    if state_path.exists():
        try:
            previous = json.loads(state_path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{state_path} is unreadable ({exc}); remove it to start over."
            ) from None
        if previous.get("recipe") != resolved:
            raise ConfigError(
                f"{out} holds a run of another recipe (see {out / RESOLVED}); pass another --out, "
                "or remove the folder to start over."
            )
        state = previous
    atomic_write(out / RESOLVED, yaml.safe_dump(resolved, sort_keys=False))

    torch.manual_seed(parsed.seed)
    # the run's own .slim files of a model built by a factory name that factory: the recipe
    # already runs it, so reloading them runs nothing the user did not ask for
    prefix = parsed.model.split(":")[0]
    trust = ":" in parsed.model and prefix not in ("torchvision", "timm", "hf")
    net = load(parsed.model) if parsed.model.endswith(".slim") else load_model(parsed.model)
    train, test = builtin_data(parsed.data, parsed.image_size) if parsed.data else (None, None)
    run = RunState(
        parsed, out, net.eval(), _inputs(parsed, net, train), train, test, trust, log=log
    )
    done = state["done"]
    first_change = next(
        (
            i
            for i, s in enumerate(parsed.steps)
            if s.kind.changes_model and s.kind.name != "finetune"
        ),
        None,
    )
    resumed = 0
    for i, step in enumerate(parsed.steps):
        label = f"[{i + 1}/{len(parsed.steps)}] {step.kind.name}"
        if i == first_change and run.baseline is None:
            # the model before the first compression step: the teacher and the "original" row
            if (out / "baseline.slim").exists():
                run.baseline = load(out / "baseline.slim", trust_code=trust)
            else:
                run.baseline = run.model
                save(run.model, out / "baseline.slim")
            run.rows.pop("model", None)  # the row of the model before: now "original"
            if "original" not in run.rows:
                run.row("original", run.baseline)
        if i < len(done):
            record = done[i]
            if record.get("model"):
                run.model = load(out / record["model"], trust_code=trust)
            run.steps.append({k: record[k] for k in ("step", "seconds", "summary")})
            run.rows.update(record.get("rows", {}))
            run.extra.update(record.get("extra", {}))
            run.warnings = list(record.get("warnings", run.warnings))
            run.exports = [ExportResult.from_dict(e) for e in record.get("exports", [])]
            resumed += 1
            log(f"{label}: done in an earlier run")
            continue
        log(f"{label} ...")
        torch.manual_seed(parsed.seed + i)
        began = time.perf_counter()
        new, summary = STEP_RUNNERS.get(step.kind.name)(run, step)
        seconds = time.perf_counter() - began
        record: dict[str, Any] = {"step": step.kind.name, "seconds": seconds, "summary": summary}
        if new is not None:
            run.model = new.eval()
            name = f"{i:02d}-{step.kind.name}.slim"
            save(run.model, out / name)
            record["model"] = name
            run.row("compressed" if run.baseline is not None else "model", run.model)
        run.steps.append({k: record[k] for k in ("step", "seconds", "summary")})
        record["rows"] = run.rows
        record["extra"] = run.extra
        record["warnings"] = run.warnings
        record["exports"] = [e.to_dict() for e in run.exports]
        done.append(json.loads(json.dumps(record, default=str)))
        atomic_write(state_path, json.dumps(state, indent=1, default=str))
        atomic_write(out / "run.json", json.dumps(run.run_json(), indent=1, default=str))
        log(f"{label}: {seconds:.1f} s\n{summary}\n")
    return RunResult(out, run.model, run.run_json(), resumed)
