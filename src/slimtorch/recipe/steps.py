"""The steps of a recipe: the run's state (``RunState``) and one runner per step kind.

A runner takes the run state and the step and returns the new model (or None when the step
only measures or writes) and a one-line summary. Runners call the public functions of the
packages below (prune, convert, train, nas, runtime, report) and nothing else.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._registry import Registry
from ..measure.analyze import analyze
from ..measure.breakdown import layer_times
from ..measure.latency import compare
from ..train import accuracy
from .schema import Recipe, Step

__all__ = ["RESOLVED", "STEP_RUNNERS", "RunState"]

RESOLVED = "recipe.resolved.yaml"


@dataclass
class RunState:
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


STEP_RUNNERS: Registry[Callable[[RunState, Step], tuple[nn.Module | None, str]]] = Registry(
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
def _analyze(run: RunState, step: Step):
    return None, analyze(run.model, run.x).summary()


@STEP_RUNNERS.register("convert")
def _convert(run: RunState, step: Step):
    from ..convert import convert

    o = step.options
    r = convert(run.model, o.kind, o.layers, run.x, **o.options)
    run.warnings += [f"convert: {w}" for w in getattr(r, "warnings", [])]
    return r.model, r.summary() if hasattr(r, "summary") else str(r)


@STEP_RUNNERS.register("prune_channels")
def _prune_channels(run: RunState, step: Step):
    from ..prune.channels import prune_channels

    kw = _kwargs(step)
    if step.options.compensate:
        kw["data"] = run.calib()
    r = prune_channels(run.model, run.x, **kw)
    run.warnings += [f"prune_channels: {w}" for w in r.warnings]
    return r.model, _shrunk(r.before, r.after)


@STEP_RUNNERS.register("prune_weights")
def _prune_weights(run: RunState, step: Step):
    from ..prune.weights import make_permanent_, prune_weights_

    model = copy.deepcopy(run.model)
    report = prune_weights_(model, options=step.options)
    make_permanent_(model)
    return model, str(report).splitlines()[-1] if str(report) else "weights pruned"


@STEP_RUNNERS.register("prune_layers")
def _prune_layers(run: RunState, step: Step):
    from ..prune.depth import prune_layers

    r = prune_layers(run.model, run.x, data=run.calib(), **_kwargs(step))
    run.warnings += [f"prune_layers: {w}" for w in r.warnings]
    removed = r.plan.get("layers", {}).get("removed", [])
    return r.model, f"removed {', '.join(map(str, removed)) or 'no block'}; " + _shrunk(
        r.before, r.after
    )


@STEP_RUNNERS.register("search")
def _search(run: RunState, step: Step):
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
def _finetune(run: RunState, step: Step):
    from ..train import FinetuneOptions, finetune

    o = step.options
    teacher = {"baseline": run.baseline, "previous": run.model, None: None}[o.teacher]
    fields = {f.name: getattr(o, f.name) for f in dataclasses.fields(FinetuneOptions) if f.init}
    r = finetune(run.model, run.train, teacher=teacher, options=FinetuneOptions(**fields))
    return r.model, r.summary()


@STEP_RUNNERS.register("benchmark")
def _benchmark(run: RunState, step: Step):
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
def _export(run: RunState, step: Step):
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
def _report(run: RunState, step: Step):
    from ..report.html import render_report

    path = render_report(run.run_json(), run.out / step.options.name)
    return None, f"wrote {path}"
