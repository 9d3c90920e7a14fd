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
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from .._files import atomic_write
from .._registry import Registry
from ..errors import ConfigError, RecipeError
from ..io.slim import load, save
from ..io.spec import example_input, load_model
from ..measure.analyze import analyze
from ..measure.breakdown import layer_times
from ..measure.latency import compare
from ..runtime import ExportResult
from ..train import accuracy
from ..train.data import builtin_data
from .schema import Recipe, Step, validate

__all__ = ["RunResult", "load_recipe", "run_recipe"]

STATE = "state.json"
RESOLVED = "recipe.resolved.yaml"


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


@dataclass
class _Run:
    recipe: Recipe
    out: Path
    model: nn.Module
    x: torch.Tensor
    train: Any
    test: Any
    trust_code: bool
    baseline: nn.Module | None = None
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    exports: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print

    def calib(self, n: int = 256) -> list[torch.Tensor]:
        if self.train is None:
            return [self.x]
        xs = [self.train[i][0] for i in range(min(n, len(self.train)))]
        return [torch.stack(xs)]

    def row(self, name: str, model: nn.Module) -> dict[str, Any]:
        report = analyze(model, self.x)
        row = self.rows.setdefault(name, {"name": name, "latency": []})
        row.update(params=report.params, macs=report.macs, size_bytes=report.size_bytes)
        if self.test is not None:
            try:
                row["accuracy"] = accuracy(model, self.test)
            except Exception:  # not a classifier of this data: no accuracy column
                row["accuracy"] = None
        return row

    def run_json(self) -> dict[str, Any]:
        models = list(self.rows.values())
        widths = []
        if self.baseline is not None:
            before = _widths(self.baseline)
            after = _widths(self.model)
            widths = [
                {"layer": n, "before": w, "after": after[n]}
                for n, w in before.items()
                if n in after
            ]
        return {
            "title": self.recipe.title or f"{self.recipe.model}: {len(self.recipe.steps)} steps",
            "recipe": str(self.out / RESOLVED),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "models": models,
            "widths": widths,
            "steps": self.steps,
            "warnings": self.warnings,
            **self.extra,
        }


def _widths(model: nn.Module) -> dict[str, int]:
    out = {}
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if name and isinstance(w, torch.Tensor) and w.dim() >= 2:
            out[name] = int(w.shape[0])
    return out


STEP_RUNNERS: Registry[Callable[[_Run, Step], tuple[nn.Module | None, str]]] = Registry(
    "recipe step runner", "name"
)


def _shrunk(before: dict[str, int], after: dict[str, int]) -> str:
    from ..report.table import human

    return ", ".join(
        f"{k} {human(before[k])} -> {human(after[k])} ({after[k] / before[k]:.2f}x)"
        for k in ("macs", "params")
        if before.get(k) and k in after
    )


def _kwargs(step: Step) -> dict[str, Any]:
    """The options the recipe gave, as validated (tuples where the dataclass has tuples)."""
    return {k: getattr(step.options, k) for k in step.given}


@STEP_RUNNERS.register("analyze")
def _analyze(run: _Run, step: Step):
    return None, analyze(run.model, run.x).summary()


@STEP_RUNNERS.register("convert")
def _convert(run: _Run, step: Step):
    from ..convert import convert

    o = step.options
    r = convert(run.model, o.kind, o.layers, run.x, **o.options)
    run.warnings += [f"convert: {w}" for w in getattr(r, "warnings", [])]
    return r.model, r.summary() if hasattr(r, "summary") else str(r)


@STEP_RUNNERS.register("prune_channels")
def _prune_channels(run: _Run, step: Step):
    from ..prune.channels import prune_channels

    kw = _kwargs(step)
    if step.options.compensate:
        kw["data"] = run.calib()
    r = prune_channels(run.model, run.x, **kw)
    run.warnings += [f"prune_channels: {w}" for w in r.warnings]
    return r.model, _shrunk(r.before, r.after)


@STEP_RUNNERS.register("prune_weights")
def _prune_weights(run: _Run, step: Step):
    from ..prune.weights import make_permanent_, prune_weights_

    model = copy.deepcopy(run.model)
    report = prune_weights_(model, options=step.options)
    make_permanent_(model)
    return model, str(report).splitlines()[-1] if str(report) else "weights pruned"


@STEP_RUNNERS.register("prune_layers")
def _prune_layers(run: _Run, step: Step):
    from ..prune.depth import prune_layers

    r = prune_layers(run.model, run.x, data=run.calib(), **_kwargs(step))
    run.warnings += [f"prune_layers: {w}" for w in r.warnings]
    removed = r.plan.get("layers", {}).get("removed", [])
    return r.model, f"removed {', '.join(map(str, removed)) or 'no block'}; " + _shrunk(
        r.before, r.after
    )


@STEP_RUNNERS.register("search")
def _search(run: _Run, step: Step):
    from ..nas import search

    r = search(run.model, run.x, run.train, state=run.out / "search.json", **_kwargs(step))
    run.extra["pareto"] = {
        "points": [
            [c.ms, c.proxy] for c in r.candidates if c.ms is not None and c.proxy is not None
        ],
        "front": [[c.ms, c.proxy] for c in r.front],
        "target_ms": r.target_ms,
        "original_ms": r.original_ms,
    }
    run.warnings += [f"search: {w}" for w in r.warnings]
    chosen = r.plan.get("chosen", {})
    return r.model, f"chosen {chosen.get('ms', float('nan')):.2f} ms of {r.original_ms:.2f} ms"


@STEP_RUNNERS.register("finetune")
def _finetune(run: _Run, step: Step):
    from ..train import FinetuneOptions, finetune

    o = step.options
    teacher = {"baseline": run.baseline, "previous": run.model, None: None}[o.teacher]
    fields = {f.name: getattr(o, f.name) for f in dataclasses.fields(FinetuneOptions) if f.init}
    r = finetune(run.model, run.train, teacher=teacher, options=FinetuneOptions(**fields))
    return r.model, r.summary()


@STEP_RUNNERS.register("benchmark")
def _benchmark(run: _Run, step: Step):
    o = step.options
    lines: list[str] = []
    short: list[str] = []
    for threads in o.threads:
        t = torch.get_num_threads() if threads == "all" else threads
        for backend in o.backends:
            models: dict[str, Any] = {}
            if run.baseline is not None:
                models["original"] = run.baseline
            models["compressed" if run.baseline is not None else "model"] = run.model
            for e in run.exports:
                if e.int8 and e.runtime == backend:
                    models[f"compressed int8 ({e.format})"] = e
            table = compare(
                models, run.x, threads=t, backend=backend, rounds=o.rounds, warmup=o.warmup
            )
            for r in table.rows:
                row = run.rows.setdefault(r["name"], {"name": r["name"], "latency": []})
                row["latency"] = [
                    x for x in row["latency"] if (x["backend"], x["threads"]) != (r["backend"], t)
                ] + [{k: r[k] for k in ("backend", "threads", "median_ms", "p90_ms", "iqr_ms")}]
            lines.append(str(table))
            run.log(f"{table}\n")
            base = table.rows[0]["median_ms"]
            short.append(
                f"{backend} {t}t: "
                + ", ".join(f"{r['name']} {base / r['median_ms']:.2f}x" for r in table.rows[1:])
            )
    if o.breakdown:
        run.extra["breakdown"] = {
            name: [{"layer": n, "ms": ms} for n, ms in layer_times(m, run.x, 1)[:30]]
            for name, m in (("original", run.baseline), ("compressed", run.model))
            if m is not None
        }
    return None, "speed-up vs original: " + "; ".join(short)


@STEP_RUNNERS.register("export")
def _export(run: _Run, step: Step):
    from ..runtime import export, get_backend, quantize

    o = step.options
    suffix = get_backend(o.format).suffix
    done = [export(run.model, run.x, run.out / f"model{suffix}", o.format)]
    if o.int8:
        q = quantize(
            run.model,
            run.x,
            run.out / f"model.int8{suffix}",
            data=run.calib(o.calib_samples),
            format=o.format,
            method=o.method,
        )
        done.append(q)
        name = f"compressed int8 ({q.format})"
        row = run.rows.setdefault(name, {"name": name, "latency": []})
        row.update(params=None, macs=None, size_bytes=q.size_bytes, int8=True)
        if run.test is not None:
            row["accuracy"] = _file_accuracy(q, run.x, run.test)
    run.exports = [e for e in run.exports if e.path not in {d.path for d in done}] + done
    return None, "\n".join(str(d) for d in done)


def _file_accuracy(result: Any, x: torch.Tensor, test: Any) -> float | None:
    """Accuracy of an exported file on the test split, in batches of the file's fixed size."""
    session = result.load(1)
    size = x.shape[0]
    xs = torch.stack([test[i][0] for i in range(len(test))])
    ys = torch.tensor([int(test[i][1]) for i in range(len(test))])
    n = len(xs) // size * size
    if n == 0:
        return None
    hits = 0
    for i in range(0, n, size):
        (out, *_) = session(result.inputs(xs[i : i + size]))
        hits += int((out.argmax(-1) == ys[i : i + size]).sum())
    return hits / n


@STEP_RUNNERS.register("report")
def _report(run: _Run, step: Step):
    from ..report.html import render_report

    path = render_report(run.run_json(), run.out / step.options.name)
    return None, f"wrote {path}"


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
    run = _Run(parsed, out, net.eval(), _inputs(parsed, net, train), train, test, trust, log=log)
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
