"""Zoo coverage: which models slimtorch and Torch-Pruning can prune, one table.

Both tools prune each model at ratio 0.5 with L1 importance: ``st.prune_channels(model, x,
0.5)`` and Torch-Pruning as its README shows (``MetaPruner``, ``GroupMagnitudeImportance(p=1)``,
``pruning_ratio=0.5``, ``ignored_layers`` = the classifier: every Linear/Conv with 1000
outputs; ``num_heads`` for ``nn.MultiheadAttention`` and timm ``qkv`` attention, whose head
metadata is fixed up after ``step()`` as TP leaves it to the user). A tool that raises, or whose
pruned model fails a forward, is a row with the error, never a crash.

Models:

- torchvision: every classifier, ``torchvision.models.list_models(module=torchvision.models)``,
  at the zoo tests' sizes: 64x64, maxvit 224, inception 96, ``vit_*`` built with
  ``image_size=64`` (vit_h_14: 56, its patch is 14).
- timm, one model per model module, by the rule the zoo tests share (``tests/_zoo.py``,
  ``timm_sample``): ``timm.list_models()`` is grouped by the module that defines each
  entrypoint (``timm.models._registry.list_modules()`` and ``timm.list_models(module=m)``);
  from each module the model with the fewest parameters is taken, counted by building it on
  the meta device (ties: the alphabetically first name); a model that fails to build on meta
  is skipped for the next smallest. In the modules that register timm's tiny ``test_*`` models
  (byobnet, resnet, vision_transformer, ...) that is one of them. ``--write-sample`` computes
  the sample and writes it to ``tests/timm_sample.json``, the zoo tests' copy. Input:
  ``pretrained_cfg['input_size']``, or the smallest of 64, 96, 128, 160, 224
  below it on which the model runs a forward (fixed-size models keep the default).

Per tool: ok / error (type and the first 80 characters), MACs and params after / before
(``st.analyze`` for both tools), prune seconds (``time.perf_counter`` around the prune call
only, the model deep-copied before), and for slimtorch whether the output shape is unchanged.
This is a coverage sweep: one prune per model, no warm-up or medians. ``--mem-gb`` caps the
address space (RLIMIT_AS, which counts ~3.5 GB of mapped libraries; default half the RAM):
Torch-Pruning on timm's halonet_h1 grows past 14 GB, and the cap turns that into a row.

Run: python benchmarks/zoo_coverage.py [--only torchvision|timm] [--limit N] [--names a,b]
     [--timeout-s 600] [--json rows.json] [--threads 1] [--mem-gb 12] [--write-sample]
     [--tools ours,tp]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import resource
import signal
import sys
import time
import warnings
from pathlib import Path

import timm
import torch
import torchvision
from timm.models import _registry

import slimtorch as st
from _peers import tp_prune

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _zoo import TIMM_SAMPLE, timm_sample, write_timm_sample
from slimtorch.report.table import format_table

try:
    from tqdm import tqdm
except ImportError:  # plain progress lines
    tqdm = None

RATIO = 0.5
TIMM_SIZES = (64, 96, 128, 160, 224)
MANY_MACS = 0.45  # torchvision models where ours keeps more than this are listed


class Timeout(BaseException):
    """Raised by SIGALRM; a BaseException so the per-tool ``except Exception`` lets it by."""


def _on_alarm(signum, frame):
    raise Timeout


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:80]}".rstrip(": ")


def _first(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        return next(iter(out.values()))
    return out[0]


def _tv_size(name: str) -> int:
    if name.startswith("maxvit"):
        return 224
    if name == "vit_h_14":
        return 56
    return 96 if name.startswith("inception") else 64


def torchvision_case(name: str):
    size = _tv_size(name)
    kwargs = {"image_size": size} if name.startswith("vit_") else {}
    return torchvision.models.get_model(name, **kwargs).eval(), torch.randn(1, 3, size, size)


def timm_case(name: str):
    model = timm.create_model(name).eval()
    chans, *hw = model.pretrained_cfg["input_size"]
    for size in (s for s in TIMM_SIZES if s < min(hw)):
        x = torch.randn(1, chans, size, size)
        try:
            with torch.no_grad():
                model(x)
            return model, x
        except Exception:
            continue
    return model, torch.randn(1, chans, *hw)


def _tp_prune(model, x):
    return tp_prune(model, x, RATIO)


def _ours_prune(model, x):
    start = time.perf_counter()
    result = st.prune_channels(model, x, RATIO, importance="l1")
    return result.model.eval(), time.perf_counter() - start


def run_model(source: str, name: str, timeout_s: int, tools=("ours", "tp")) -> dict:
    row = {"source": source, "model": name}
    for tool in ("ours", "tp"):
        row[tool] = {"ok": False, "error": "not run"}
    signal.alarm(timeout_s)
    torch.manual_seed(0)
    try:
        model, x = (torchvision_case if source == "torchvision" else timm_case)(name)
        row["input"] = list(x.shape)
        before = st.analyze(model, x)
        with torch.no_grad():
            shape = tuple(_first(model(x)).shape)
        for tool, prune in (("ours", _ours_prune), ("tp", _tp_prune)):
            if tool not in tools:
                row[tool] = {"ok": False, "error": "not run (--tools)"}
                continue
            try:
                candidate = copy.deepcopy(model)
                pruned, seconds = prune(candidate, x)
                after = st.analyze(pruned, x)
                rec = {"ok": True, "error": ""}
                rec["macs_ratio"] = after.macs / max(before.macs, 1)
                rec["params_ratio"] = after.params / max(before.params, 1)
                rec["seconds"] = seconds
                if tool == "ours":
                    with torch.no_grad():
                        rec["same_shape"] = tuple(_first(pruned(x)).shape) == shape
            except Exception as exc:  # a failure is a row
                rec = {"ok": False, "error": _reason(exc)}
            row[tool] = rec
            candidate = pruned = None  # free before the next tool
    except Timeout:
        for tool in tools:
            if row[tool]["error"] == "not run":
                row[tool] = {"ok": False, "error": f"Timeout: build+prune over {timeout_s}s"}
    except Exception as exc:  # the model itself does not build or run
        for tool in tools:
            row[tool] = {"ok": False, "error": f"(model) {_reason(exc)}"}
    finally:
        signal.alarm(0)
        gc.collect()
    return row


def _models(args) -> list[tuple[str, str]]:
    sources = ("torchvision", "timm") if args.only is None else (args.only,)
    tv = torchvision.models.list_models(module=torchvision.models)
    items = []
    if args.names:
        names = args.names.split(",")
        timm_all = set(timm.list_models())
        for source, known in (("torchvision", set(tv)), ("timm", timm_all)):
            if source in sources:
                items += [(source, n) for n in names if n in known]
        missing = [n for n in names if n not in {i[1] for i in items}]
        if missing:
            sys.exit(f"unknown in {'/'.join(sources)}: {', '.join(missing)}")
        return items
    if "torchvision" in sources:
        items += [("torchvision", n) for n in tv[: args.limit]]
    if "timm" in sources:
        modules = _registry.list_modules()[: args.limit]
        for module, pick in timm_sample(_progress(modules, "picking timm sample")).items():
            if pick is None:
                print(f"timm module {module}: no model builds on meta, skipped", file=sys.stderr)
            else:
                items.append(("timm", pick["name"]))
    return items


def _progress(items, desc):
    if tqdm is None:
        return items
    return tqdm(items, desc=desc, file=sys.stderr, dynamic_ncols=True)


def _say(text: str) -> None:
    if tqdm is None:
        print(text, file=sys.stderr, flush=True)
    else:
        tqdm.write(text, file=sys.stderr)


def _cells(rec: dict, keys) -> list[str]:
    if not rec["ok"]:
        return ["err"] + ["-"] * len(keys)
    return ["ok"] + [f"{rec[k]:.2f}" for k in keys]


def summary(rows: list[dict]) -> str:
    n = len(rows)
    key = [f"{r['source']}:{r['model']}" for r in rows]
    ours = [r["ours"]["ok"] for r in rows]
    tp = [r["tp"]["ok"] for r in rows]
    lines = [f"ok: ours {sum(ours)}/{n}, TP {sum(tp)}/{n}"]
    only = [k for k, a, b in zip(key, ours, tp) if a and not b]
    lines.append(f"only ours works ({len(only)}): {', '.join(only) or '-'}")
    only = [k for k, a, b in zip(key, ours, tp) if b and not a]
    lines.append(f"only TP works ({len(only)}): {', '.join(only) or '-'}")
    shape = [k for k, r in zip(key, rows) if r["ours"].get("same_shape") is False]
    lines.append(f"ours changes the output shape ({len(shape)}): {', '.join(shape) or '-'}")
    lines.append("failures:")
    for k, r in zip(key, rows):
        for tool, label in (("ours", "ours"), ("tp", "TP")):
            if not r[tool]["ok"]:
                lines.append(f"  {k:<45} {label:<4} {r[tool]['error']}")
    if lines[-1] == "failures:":
        lines.append("  -")
    many = [
        f"{r['model']} {r['ours']['macs_ratio']:.2f}"
        for r in rows
        if r["source"] == "torchvision" and r["ours"]["ok"] and r["ours"]["macs_ratio"] > MANY_MACS
    ]
    lines.append(f"torchvision, ours keeps > {MANY_MACS:.0%} of MACs ({len(many)}):")
    lines += [f"  {m}" for m in many] or ["  -"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("torchvision", "timm"))
    parser.add_argument("--limit", type=int, default=None, help="first N models of each source")
    parser.add_argument("--names", default="", help="comma-separated model names")
    parser.add_argument("--timeout-s", type=int, default=600, help="per model; 0: none")
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tools", default="ours,tp", help="ours,tp or one of them")
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    parser.add_argument(
        "--mem-gb", type=float, default=round(ram_gb / 2), help="address-space cap; 0: none"
    )
    parser.add_argument(
        "--write-sample", action="store_true", help=f"write the timm sample to {TIMM_SAMPLE}, exit"
    )
    args = parser.parse_args()
    if args.write_sample:
        warnings.filterwarnings("ignore")
        sample = write_timm_sample()
        picked = sum(v is not None for v in sample["modules"].values())
        print(f"{TIMM_SAMPLE}: {picked} models of {len(sample['modules'])} timm modules")
        return
    if args.mem_gb > 0:  # a tool that runs out is a MemoryError row, not the OOM killer
        cap = int(args.mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    signal.signal(signal.SIGALRM, _on_alarm)
    rows = []
    start = time.perf_counter()
    for source, name in _progress(_models(args), "pruning"):
        row = run_model(source, name, args.timeout_s, tuple(args.tools.split(",")))
        rows.append(row)
        status = ", ".join(
            f"{t} " + (f"ok {row[t]['macs_ratio']:.3f}" if row[t]["ok"] else row[t]["error"])
            for t in ("ours", "tp")
        )
        _say(f"{source}:{name}: {status}")
        if args.json:  # after every row: a sweep cut short keeps what it measured
            Path(args.json).write_text(json.dumps(rows, indent=1))
    headers = ("source", "model", "ours", "ours MACs", "ours params", "ours s")
    headers += ("TP", "TP MACs", "TP s")
    ours_keys, tp_keys = ("macs_ratio", "params_ratio", "seconds"), ("macs_ratio", "seconds")
    table = [
        [r["source"], r["model"], *_cells(r["ours"], ours_keys), *_cells(r["tp"], tp_keys)]
        for r in rows
    ]
    title = f"ratio {RATIO}, L1; MACs and params after/before; {time.perf_counter() - start:.0f}s"
    print(format_table(headers, table, title))
    print()
    print(summary(rows))


if __name__ == "__main__":
    main()
