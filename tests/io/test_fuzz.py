"""Property-based fuzzing of .slim loading (hypothesis): mutated valid files -- truncation,
byte flips, structured plan edits (resealed with a fresh checksum, as an attacker can),
zip tricks -- each loaded in a child process under a memory limit (RLIMIT_AS) and a time
limit. The only outcomes allowed: our FormatError, or a model identical to the original.

A fast profile runs by default; ``-m slow`` runs the long one. Counts by outcome and the
peak memory over the child's warm baseline are printed (``pytest -s``).
"""

import collections
import copy
import io
import json
import os
import select
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from _craft import lie_size
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_

import slimtorch as st
from slimtorch.io._plan import checksum

HEADROOM_MB = 2048  # memory the child may use beyond its warm baseline
SECONDS = 20  # per case
ALLOWED = {"format_error", "identical"}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Small valid files: plain, channel-pruned (prune edits), sparse (packed weights)."""
    folder = tmp_path_factory.mktemp("bases")
    x = torch.randn(1, 3, 64, 64)
    plain = st.load_model("timm:test_resnet").eval()
    pruned = st.prune_channels(plain, x, 0.5)
    sparse = st.load_model("timm:test_resnet").eval()
    st.prune_weights_(sparse, 0.9)
    st.make_permanent_(sparse)
    paths = [
        st.save(plain, folder / "plain.slim"),
        st.save(pruned, folder / "pruned.slim"),
        st.save(sparse, folder / "sparse.slim"),
    ]
    return [(p, p.read_bytes()) for p in paths]


class Worker:
    def __init__(self, bases, workdir):
        self.args = [sys.executable, str(Path(__file__).with_name("_fuzz_worker.py"))]
        self.args += [str(workdir), str(HEADROOM_MB), str(SECONDS), *(str(p) for p, _ in bases)]
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(os.path.abspath, sys.path)))
        self.env["TORCH_HOME"] = str(workdir / "no_hub")  # never populated
        self.env["HF_HOME"] = str(workdir / "no_hf")
        self.workdir = workdir
        self.proc = None
        self.counts = collections.Counter()
        self.peak_kb = 0
        self.rss_kb = 0
        self.examples = collections.defaultdict(list)

    def start(self):
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self.env,
            cwd=self.workdir,  # a file written by a hostile spec would show up here
        )
        assert json.loads(self._line(300))["ready"]

    def _line(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        return line

    def run(self, index, data, kind):
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(len(data).to_bytes(4, "big") + bytes([index]) + data)
        self.proc.stdin.flush()
        line = self._line(SECONDS + 30)
        if not line:  # the child died (killed for memory) or hung
            code = self.proc.poll()
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            result = {"outcome": f"child_died:{code}", "peak_kb": 0, "rss_kb": 0, "detail": ""}
        else:
            result = json.loads(line)
        self.counts[result["outcome"]] += 1
        self.counts[f"kind:{kind.split(':')[0]}"] += 1
        self.peak_kb = max(self.peak_kb, result["peak_kb"])
        self.rss_kb = max(self.rss_kb, result["rss_kb"])
        if result["outcome"] not in ALLOWED and len(self.examples[result["outcome"]]) < 3:
            self.examples[result["outcome"]].append((kind, result["detail"]))
        return result["outcome"]

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def _zip(entries, **kwargs):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, method in entries:
            zf.writestr(name, data, compress_type=method)
    return buf.getvalue()


def _split(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return json.loads(zf.read("plan.json")), zf.read("weights.safetensors")


def _pack(plan, weights, reseal):
    if reseal:
        plan = dict(plan, checksum=checksum(plan, weights))
    return _zip(
        [
            ("plan.json", json.dumps(plan), zipfile.ZIP_DEFLATED),
            ("weights.safetensors", weights, zipfile.ZIP_STORED),
        ]
    )


json_values = st_.recursive(
    st_.none()
    | st_.booleans()
    | st_.integers(-(2**40), 2**40)
    | st_.floats(allow_nan=False, allow_infinity=False)
    | st_.text(max_size=12),
    lambda inner: (
        st_.lists(inner, max_size=4) | st_.dictionaries(st_.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)

# Hostile additions an attacker would try; none may load.
INJECTIONS = [
    ("spec", {"spec": "timm:test_resnet", "kwargs": {"pretrained": True}}),
    ("spec", {"spec": "timm:test_resnet", "kwargs": {"checkpoint_path": "/etc/passwd"}}),
    ("spec", {"spec": "timm:test_resnet", "kwargs": {"num_classes": 10**7}}),
    ("spec", {"spec": "timm:resnet18", "kwargs": {}}),
    ("spec", {"spec": "torchvision:resnet18", "kwargs": {"weights": "DEFAULT"}}),
    ("spec", {"spec": "os:system", "kwargs": {"command": "touch PWNED"}}),
    ("spec", {"spec": "case.slim", "kwargs": {}}),
    ("spec", {"spec": "hf:BertModel", "kwargs": {"config": {"_name_or_path": "bert-base"}}}),
    ("edit", {"op": "prune", "tensors": {}, "attrs": {"bn1": {"eps": 1.0}}}),
    ("edit", {"op": "prune", "tensors": {}, "attrs": {"conv1.0": {"padding": [5, 5]}}}),
    ("edit", {"op": "prune", "tensors": {"fc.weight": {"0": [0] * 5000}}}),
    ("edit", {"op": "prune", "tensors": {"fc.weight": {"1": [3, 2, 1]}}}),
    (
        "edit",
        {
            "op": "replace",
            "module": "fc",
            "type": "Linear",
            "config": {"in_features": 10**7, "out_features": 10**7},
        },
    ),
    ("edit", {"op": "replace", "module": "layer1", "type": "Identity", "config": {}}),
    ("edit", {"op": "replace", "module": "fc", "type": "Sequential", "config": {}}),
    # Not here: {"op": "sparsify", "module": "fc"} is a valid edit (same weights, a CSR kernel):
    # the long run found it loads "different", as it should.
    ("edit", {"op": "sparsify", "module": "conv1.1"}),
    ("edit", {"op": "exec", "code": "import os"}),
    ("aliases", {"bn1.running_var": "bn1.running_mean"}),
    ("aliases", {"fc.bias": "fc.weight"}),
    ("packed", {"fc.weight": {"shape": [2**40], "dtype": "float32"}}),
    ("packed", {"fc.weight": {"shape": [1000, 96], "dtype": "complex64"}}),
    ("format", "slimtorch/3"),
    ("format", "slimtorch/1"),
]


def _paths(value, prefix=(), out=None, limit=400):
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    out.append(prefix)
    if isinstance(value, dict):
        for k, v in value.items():
            _paths(v, (*prefix, k), out, limit)
    elif isinstance(value, list):
        for i, v in enumerate(value[:20]):
            _paths(v, (*prefix, i), out, limit)
    return out


def _set(plan, path, value):
    if not path:
        return value
    node = plan
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return plan


@st_.composite
def plan_mutation(draw, data):
    plan, weights = _split(data)
    plan = copy.deepcopy(plan)
    op = draw(st_.sampled_from(["set", "delete", "inject", "dup_edit", "shuffle"]))
    if op == "inject":
        where, value = draw(st_.sampled_from(INJECTIONS))
        if where == "edit":
            plan["edits"] = [*plan["edits"], value]
        elif where in ("aliases", "packed"):
            plan[where] = plan[where] | value
        else:
            plan[where] = value
    elif op == "dup_edit" and plan["edits"]:
        plan["edits"] = plan["edits"] + plan["edits"][:1]
    elif op == "shuffle" and plan["edits"] and plan["edits"][0].get("tensors"):
        tensors = plan["edits"][0]["tensors"]
        name = draw(st_.sampled_from(sorted(tensors)))
        for keep in tensors[name].values():
            keep.reverse()
    else:
        paths = [p for p in _paths(plan) if p and p[0] != "checksum"]
        path = draw(st_.sampled_from(paths))
        if op == "delete":
            parent = plan
            for key in path[:-1]:
                parent = parent[key]
            del parent[path[-1]]
        else:
            plan = _set(plan, path, draw(json_values))
    reseal = draw(st_.booleans())
    return f"plan:{op}:{'resealed' if reseal else 'raw'}", _pack(plan, weights, reseal)


@st_.composite
def byte_mutation(draw, data):
    n = len(data)
    if draw(st_.booleans()):
        return "truncate", data[: draw(st_.integers(0, n - 1))]
    pos = st_.one_of(
        st_.integers(0, n - 1),
        st_.integers(0, min(4096, n) - 1),
        st_.integers(max(0, n - 600), n - 1),
    )
    out = bytearray(data)
    for p, x in draw(st_.lists(st_.tuples(pos, st_.integers(1, 255)), min_size=1, max_size=8)):
        out[p] ^= x
    return "flip", bytes(out)


@st_.composite
def zip_trick(draw, data):
    plan, weights = _split(data)
    body = json.dumps(plan)
    trick = draw(
        st_.sampled_from(
            [
                "dup_plan",
                "extra",
                "rename",
                "lzma",
                "bzip2",
                "stored_plan",
                "deflate_weights",
                "comment",
                "prepend",
                "lie_plan",
                "lie_weights",
                "encrypted",
                "reorder",
                "nested",
                "empty",
                "bomb",
            ]
        )
    )
    D, S = zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED
    W = ("weights.safetensors", weights, S)
    if trick == "dup_plan":
        other = json.dumps(plan | {"edits": []})
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = _zip([("plan.json", body, D), W, ("plan.json", other, D)])
    elif trick == "extra":
        out = _zip([("plan.json", body, D), W, ("model.pkl", b"\x80\x04N.", S)])
    elif trick == "rename":
        out = _zip([("plan.json", body, D), ("weights.bin", weights, S)])
    elif trick in ("lzma", "bzip2"):
        method = zipfile.ZIP_LZMA if trick == "lzma" else zipfile.ZIP_BZIP2
        out = _zip([("plan.json", body, method), W])
    elif trick == "stored_plan":
        out = _zip([("plan.json", body, S), W])  # legitimate: loads identical
    elif trick == "deflate_weights":
        out = _zip([("plan.json", body, D), ("weights.safetensors", weights, D)])
    elif trick == "comment":
        buf = io.BytesIO(data)
        with zipfile.ZipFile(buf, "a") as zf:
            zf.comment = draw(st_.binary(max_size=64))
        out = buf.getvalue()
    elif trick == "prepend":
        out = draw(st_.binary(min_size=1, max_size=64)) + data
    elif trick in ("lie_plan", "lie_weights"):
        name = "plan.json" if trick == "lie_plan" else "weights.safetensors"
        out = lie_size(data, name, draw(st_.integers(0, 2**32 - 1)))
    elif trick == "encrypted":
        out = bytearray(data)
        pos = out.find(b"PK\x01\x02")
        out[pos + 8] |= 1
        out = bytes(out)
    elif trick == "reorder":
        out = _zip([W, ("plan.json", body, D)])
    elif trick == "nested":
        out = _zip([("plan.json", data, S), W])
    elif trick == "empty":
        out = _zip([])
    else:
        out = _zip([("plan.json", body + " " * (8 << 20), D), W])
    return f"zip:{trick}", out


def _fuzz(bases, tmp_path, examples):
    worker = Worker(bases, tmp_path)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=examples < 100,  # the default run is reproducible
        suppress_health_check=list(HealthCheck),
    )
    @given(st_.data())
    def one(draw):
        index = draw.draw(st_.integers(0, len(bases) - 1))
        data = bases[index][1]
        kind, case = draw.draw(
            st_.one_of(byte_mutation(data), plan_mutation(data), zip_trick(data))
        )
        outcome = worker.run(index, case, kind)
        assert outcome in ALLOWED, (kind, outcome, worker.examples)

    try:
        one()
    finally:
        worker.close()
        outcomes = {k: v for k, v in sorted(worker.counts.items()) if not k.startswith("kind:")}
        kinds = {k[5:]: v for k, v in sorted(worker.counts.items()) if k.startswith("kind:")}
        print(
            f"\nfuzz: {sum(outcomes.values())} cases; outcomes {outcomes}; kinds {kinds}; "
            f"child peak RSS {worker.rss_kb / 1024:.0f} MiB, of which "
            f"{worker.peak_kb / 1024:.1f} MiB above its warm baseline (address-space limit: "
            f"baseline + {HEADROOM_MB} MiB)"
        )
    assert set(outcomes) <= ALLOWED
    assert outcomes.get("format_error", 0) > 0 and outcomes.get("identical", 0) > 0
    assert worker.peak_kb < HEADROOM_MB * 1024


def test_fuzz_fast(bases, tmp_path):
    _fuzz(bases, tmp_path, examples=80)


@pytest.mark.slow
def test_fuzz_long(bases, tmp_path):
    _fuzz(bases, tmp_path, examples=1500)
