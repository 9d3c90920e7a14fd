"""Transformers coverage: every text model type transformers builds offline, pruned, one table.

Sample, by rule from transformers' auto mappings (none chosen by hand):

- model types: the keys of ``MODEL_MAPPING_NAMES`` and ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``
  (``transformers.models.auto.modeling_auto``), sorted;
- class: the causal-LM class where the type has one (so ``generate`` runs), else the base
  model class (the first, where the mapping lists several);
- skipped by rule, with the reason in the summary: a class that does not import (an optional
  dependency is missing), and a class whose ``main_input_name`` is not ``input_ids`` (images,
  audio, time series: they need inputs this sweep does not make);
- config: ``CONFIG_MAPPING[type]()`` rebuilt with small sizes, set by field name wherever the
  default config has that field as an int, never enlarging it (``min(default, small)``):
  widths (``hidden_size``, ``n_embd``, ``d_model``, ``dim``, ``embed_dim``, ...) 64, layer
  counts (``num_hidden_layers``, ``n_layer``, ``encoder_layers``, ...) 2, heads 4, key/value
  heads 2, head dims 16, feed-forward widths (``intermediate_size``, ``ffn_dim``, ``d_ff``,
  ...) 128, experts 4 (2 per token), ``vocab_size`` 256, positions 64; a ``*_token_id`` past
  the vocabulary becomes its last id. Sub-configs (``config.sub_configs``: text and vision
  towers) get the same rule. A config or model that does not construct is a failed build.

Inputs: ``input_ids`` of shape (1, 16) drawn below the input embedding's size (else the
config's text ``vocab_size``), with
``attention_mask`` (ones), ``decoder_input_ids`` (the same ids) and ``use_cache=False`` where
the model's ``forward`` takes them.

Per model, in a forked child process (``--timeout-s``; ``--mem-gb`` caps what the child maps
beyond what it inherits, RLIMIT_AS), steps, each ok / err (type and message) / n/a:

- build: config, model (``torch.manual_seed(0)``, eval), one forward;
- prune: ``st.prune_channels(model, inputs, 0.5)``, the pruned model runs; MACs after/before;
- target: ``target_macs=before // 2``, the pruned model runs; MACs after/before;
- generate: causal LMs only, ``generate(max_new_tokens=4, min_new_tokens=4)`` on the ratio-0.5
  model gives 20 tokens;
- slim: ``st.save`` + ``st.load`` of the ratio-0.5 result, outputs identical (rtol=atol=0);
- hf: ``save_pretrained`` + ``from_pretrained`` of the ratio-0.5 model, outputs identical; or
  ``warn`` where slimtorch warned that ``model.config`` cannot describe the pruned model.

Where generate or hf fails on the pruned model it is tried on the unpruned one: if that fails
too the cell is ``orig-err`` (transformers at these sizes, not slimtorch).

A step that fails skips the steps that need it. This is a coverage sweep on a shared machine:
outcomes only, no timings.

Run: python benchmarks/hf_coverage.py [--limit N] [--types llama,bert] [--part 1/3] [--jobs 2]
     [--timeout-s 300] [--mem-gb 8] [--json rows.json] [--rows rows.json: reprint only]
"""

from __future__ import annotations

import argparse
import inspect
import json
import multiprocessing
import os
import re
import resource
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import torch
import transformers
from transformers.models.auto import configuration_auto, modeling_auto

import slimtorch as st
from slimtorch.report.table import format_table, human
from zoo_coverage import _progress, _say

STEPS = ("build", "prune", "target", "generate", "slim", "hf")
SEQ = 16
NEW_TOKENS = 4
SMALL = {
    64: (
        "hidden_size",
        "n_embd",
        "d_model",
        "dim",
        "embed_dim",
        "embedding_size",
        "word_embed_proj_dim",
        "projection_dim",
    ),
    2: (
        "num_hidden_layers",
        "n_layer",
        "n_layers",
        "num_layers",
        "encoder_layers",
        "decoder_layers",
        "num_decoder_layers",
        "num_experts_per_tok",
        "moe_top_k",
    ),
    4: (
        "num_attention_heads",
        "n_head",
        "n_heads",
        "num_heads",
        "encoder_attention_heads",
        "decoder_attention_heads",
        "num_experts",
        "num_local_experts",
        "n_routed_experts",
    ),
    16: ("head_dim", "d_kv", "kv_channels"),
    128: (
        "intermediate_size",
        "ffn_dim",
        "encoder_ffn_dim",
        "decoder_ffn_dim",
        "d_ff",
        "hidden_dim",
        "n_inner",
        "moe_intermediate_size",
        "shared_expert_intermediate_size",
    ),
    256: ("vocab_size",),
}
POSITIONS = ("max_position_embeddings", "n_positions", "n_ctx")
KV_HEADS = ("num_key_value_heads", "n_kv_heads", "multi_query_group_num")
# slimtorch's warnings that save_pretrained will not give the pruned model back: the config
# cannot describe it, or a model rebuilt from the config computes differently.
CONFIG_WARNINGS = ("model.config was left as is", "rebuilt from the updated config")
REASON_CHARS = 300


def _reason(exc: BaseException) -> str:
    """Type and message, longer than the zoo sweep's: the summary lists every failure."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:REASON_CHARS]}".rstrip(": ")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def small_kwargs(config) -> dict:
    """The rule's overrides for one config (and, nested, its sub-configs)."""
    sizes = {field: n for n, fields in SMALL.items() for field in fields}
    sizes |= {f: 64 for f in POSITIONS} | {f: 2 for f in KV_HEADS}
    out = {}
    for field, n in sizes.items():
        value = getattr(config, field, None)
        if _is_int(value) and value > 0:
            out[field] = min(value, n)
    vocab = out.get("vocab_size", getattr(config, "vocab_size", None))
    if _is_int(vocab):
        for field, value in config.to_dict().items():
            if not field.endswith("_token_id"):
                continue
            if _is_int(value) and value >= vocab:
                out[field] = vocab - 1
            elif isinstance(value, list) and any(_is_int(v) and v >= vocab for v in value):
                out[field] = [min(v, vocab - 1) for v in value]
    for name in getattr(type(config), "sub_configs", {}) or {}:
        sub = getattr(config, name, None)
        if isinstance(sub, transformers.PretrainedConfig):
            out[name] = {"model_type": sub.model_type, **small_kwargs(sub)}
    return out


def model_types(limit: int | None, types: str, part: str = "") -> list[str]:
    found = modeling_auto.MODEL_MAPPING_NAMES.keys()
    found = sorted(found | modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.keys())
    if types:
        names = types.split(",")
        missing = [n for n in names if n not in found]
        if missing:
            sys.exit(f"not in the auto mappings: {', '.join(missing)}")
        return names
    if part:  # "K/N": the K-th of N contiguous parts, for a sweep run in parts
        k, n = map(int, part.split("/"))
        found = found[(k - 1) * len(found) // n : k * len(found) // n]
    return found[:limit]


def class_name(model_type: str) -> tuple[str, bool]:
    causal = modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    name = causal or modeling_auto.MODEL_MAPPING_NAMES[model_type]
    return (name if isinstance(name, str) else name[0]), causal is not None


def _vocab(model) -> int:
    try:
        return model.get_input_embeddings().weight.shape[0]
    except Exception:  # composite models that leave it to their text tower
        config = model.config
        return getattr(config, "vocab_size", None) or config.get_text_config().vocab_size


def make_inputs(model) -> dict:
    vocab = _vocab(model)
    ids = torch.randint(0, vocab, (1, SEQ), generator=torch.Generator().manual_seed(0))
    params = inspect.signature(model.forward).parameters
    inputs = {"input_ids": ids}
    if "attention_mask" in params:
        inputs["attention_mask"] = torch.ones_like(ids)
    if "decoder_input_ids" in params:
        inputs["decoder_input_ids"] = ids.clone()
    if "use_cache" in params:
        inputs["use_cache"] = False
    return inputs


def first_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    values = out.values() if hasattr(out, "values") else out
    return next(v for v in values if isinstance(v, torch.Tensor))


def _run(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return first_tensor(model(**inputs))


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=0)


class Row:
    """One model's record, written to ``path`` after every step so a killed child leaves it."""

    def __init__(self, model_type: str, path: str):
        self.path = path
        self.data = {"type": model_type, "class": "", "params": 0, "skip": ""}
        self.data |= {"steps": {s: {"status": "n/a", "reason": ""} for s in STEPS}}
        self.data |= {"current": "", "macs": None, "target_macs": None}

    def start(self, step: str) -> None:
        self.data["current"] = step
        self.save()

    def done(self, step: str, status: str = "ok", reason: str = "") -> None:
        self.data["steps"][step] = {"status": status, "reason": reason}
        self.data["current"] = ""
        self.save()

    def save(self) -> None:
        Path(self.path).write_text(json.dumps(self.data))


def _build(model_type: str, row: Row):
    name, causal = class_name(model_type)
    row.data["class"] = name
    try:
        cls = getattr(transformers, name)
    except Exception as exc:  # an optional dependency is missing
        row.data["skip"] = f"class does not import: {_reason(exc)}"
        return None
    if cls.main_input_name != "input_ids":
        row.data["skip"] = f"main input is {cls.main_input_name}"
        return None
    row.start("build")
    config_cls = configuration_auto.CONFIG_MAPPING[model_type]
    config = config_cls(**small_kwargs(config_cls()))
    torch.manual_seed(0)
    model = cls(config).eval()
    inputs = make_inputs(model)
    _run(model, inputs)
    row.data["params"] = sum(p.numel() for p in model.parameters())
    row.done("build")
    return model, inputs, causal


def _step(row: Row, step: str, fn) -> bool:
    row.start(step)
    try:
        status, why = fn() or ("ok", "")
    except Exception as exc:  # a failure is a cell
        row.done(step, "err", _reason(exc))
        return False
    row.done(step, status, why)
    return status == "ok"


def _generate(model, inputs) -> None:
    ids = inputs["input_ids"]
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        do_sample=False,
    )
    if out.shape[-1] != SEQ + NEW_TOKENS:
        raise AssertionError(f"generate gave {tuple(out.shape)} tokens")


def _hf_roundtrip(model, inputs) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        loaded = type(model).from_pretrained(tmp).eval()
        _same(_run(loaded, inputs), _run(model, inputs))


def _unless_original_fails(check, pruned, original, inputs):
    """``check`` on the pruned model; where it fails, on the original too, so that a failure
    of transformers at the sweep's small sizes reads ``orig-err``, not as slimtorch's."""
    try:
        check(pruned, inputs)
    except Exception as exc:
        try:
            check(original, inputs)
        except Exception as orig:
            return ("orig-err", f"unpruned model fails too: {_reason(orig)}")
        raise exc
    return None


def run_type(model_type: str, path: str, mem_gb: float) -> None:
    """In the child: every step for one model type, recorded in ``path``."""
    if mem_gb > 0:
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        cap = mapped + int(mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    row = Row(model_type, path)
    try:
        built = _build(model_type, row)
    except Exception as exc:
        row.done("build", "err", _reason(exc))
        return
    if built is None:
        row.save()
        return
    model, inputs, causal = built
    res = {}

    def prune():
        res["r"] = r = st.prune_channels(model, inputs, 0.5)
        _run(r.model.eval(), inputs)
        row.data["macs"] = r.after["macs"] / max(r.before["macs"], 1)
        row.data["config_warning"] = next(
            (w for w in r.warnings if any(c in w for c in CONFIG_WARNINGS)), ""
        )

    def target():
        before = st.analyze(model, inputs).macs
        r = st.prune_channels(model, inputs, target_macs=before // 2)
        _run(r.model.eval(), inputs)
        row.data["target_macs"] = r.after["macs"] / max(r.before["macs"], 1)

    def generate():
        return _unless_original_fails(_generate, res["r"].model, model, inputs)

    def slim():
        with tempfile.TemporaryDirectory() as tmp:
            loaded = st.load(st.save(res["r"], Path(tmp) / "m.slim")).eval()
            _same(_run(loaded, inputs), _run(res["r"].model, inputs))

    def hf():
        if row.data["config_warning"]:
            return ("warn", "slimtorch warned: " + row.data["config_warning"][:80])
        return _unless_original_fails(_hf_roundtrip, res["r"].model, model, inputs)

    if _step(row, "prune", prune):
        if causal:
            _step(row, "generate", generate)
        _step(row, "slim", slim)
        _step(row, "hf", hf)
    _step(row, "target", target)


def _finish(model_type: str, path: str, code: int | None, timed_out: float) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        data = Row(model_type, path).data
        data["current"] = "build"
    if data["current"]:
        if timed_out:
            why = f"Timeout: over {timed_out:.0f}s"
        elif code is not None and code < 0:
            why = f"killed by signal {-code} (memory cap or crash)"
        else:
            why = f"child exited with code {code}"
        data["steps"][data["current"]] = {"status": "err", "reason": why}
    return data


def sweep(types: list[str], args) -> list[dict]:
    ctx = multiprocessing.get_context("fork")
    tmp = tempfile.mkdtemp(prefix="hf_coverage_")
    pending, running, rows = list(types), {}, {}
    bar = _progress(range(len(types)), "hf sweep")
    bar_update = getattr(bar, "update", lambda n: None)
    while pending or running:
        while pending and len(running) < args.jobs:
            t = pending.pop(0)
            path = os.path.join(tmp, f"{t}.json")
            p = ctx.Process(target=run_type, args=(t, path, args.mem_gb), daemon=True)
            p.start()
            running[t] = (p, path, time.monotonic())
        time.sleep(0.2)
        for t, (p, path, start) in list(running.items()):
            late = args.timeout_s and time.monotonic() - start > args.timeout_s
            if p.is_alive() and not late:
                continue
            if p.is_alive():
                p.kill()
            p.join()
            rows[t] = row = _finish(t, path, p.exitcode, args.timeout_s if late else 0)
            del running[t]
            if args.json:  # after every model, so a sweep cut short leaves its rows
                Path(args.json).write_text(json.dumps([rows[k] for k in types if k in rows]))
            bar_update(1)
            if not row["skip"]:
                cells = " ".join(f"{s} {row['steps'][s]['status']}" for s in STEPS)
                bad = [f"{s}: {c['reason']}" for s, c in row["steps"].items() if c["reason"]]
                _say(f"{t}: {cells}" + (f" | {'; '.join(bad)}" if bad else ""))
    return [rows[t] for t in types]


def _cause(reason: str) -> str:
    """A reason with numbers and quoted names masked, so one cause groups its models."""
    reason = re.sub(r"'[^']*'", "'*'", reason)
    return re.sub(r"\d[\d,._]*", "#", reason)


def summary(rows: list[dict]) -> str:
    built = [r for r in rows if not r["skip"]]
    lines = [f"model types found {len(rows)}, tried {len(built)}, skipped {len(rows) - len(built)}"]
    skips = Counter(re.sub(r"(does not import): .*", r"\1", r["skip"]) for r in rows if r["skip"])
    lines += [f"  skipped, {why}: {n}" for why, n in skips.most_common()]
    for step in STEPS:
        counts = Counter(r["steps"][step]["status"] for r in built)
        lines.append(f"{step:<9} " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
    lines.append("failures by cause (step: cause, count, model types):")
    causes = defaultdict(list)
    for r in built:
        for step, cell in r["steps"].items():
            if cell["status"] == "err":
                causes[(step, _cause(cell["reason"]))].append(r)
    order = sorted(causes, key=lambda k: (STEPS.index(k[0]), -len(causes[k])))
    for step, cause in order:
        rs = causes[step, cause]
        lines.append(f"  {step}: {cause} [{len(rs)}]: {', '.join(r['type'] for r in rs)}")
        for r in rs:
            lines.append(f"      {r['type']}: {r['steps'][step]['reason']}")
    warned = [r["type"] for r in built if r["steps"]["hf"]["status"] == "warn"]
    lines.append(f"config does not follow, warned ({len(warned)}): {', '.join(warned) or '-'}")
    return "\n".join(lines)


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="first N model types (sorted)")
    parser.add_argument("--types", default="", help="comma-separated model types")
    parser.add_argument("--part", default="", help="K/N: the K-th of N parts of the sample")
    parser.add_argument("--jobs", type=int, default=1, help="children at once")
    parser.add_argument("--timeout-s", type=int, default=300, help="per model; 0: none")
    parser.add_argument("--mem-gb", type=float, default=8, help="per child; 0: no cap")
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    parser.add_argument("--rows", default=None, help="print a previous run's --json, no sweep")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    if args.rows:
        rows = json.loads(Path(args.rows).read_text())
    else:
        rows = sweep(model_types(args.limit, args.types, args.part), args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows))
    headers = ("type", "class", "params", *STEPS, "MACs", "target MACs", "first failure")
    table = []
    for r in (r for r in rows if not r["skip"]):
        cells = [r["steps"][s]["status"] for s in STEPS]
        bad = [f"{s}: {c['reason']}" for s, c in r["steps"].items() if c["status"] == "err"] or [""]
        ratios = _ratio(r["macs"]), _ratio(r["target_macs"])
        table.append([r["type"], r["class"], human(r["params"]), *cells, *ratios, bad[0][:70]])
    title = "ratio 0.5 and target_macs=before/2, L1; MACs after/before"
    print(format_table(headers, table, title))
    print()
    print(summary(rows))


if __name__ == "__main__":
    main()
