"""The repros of issue 10: hostile .slim files and specs, each ending in our error with no
file, network or code side effect (network disabled, hub cache poisoned: see conftest)."""

import json
import os
import zipfile
import zlib

import pytest
import torch
from _craft import lie_size, read, write

import slimtorch as st
from slimtorch.errors import FormatError, ModelSpecError


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small valid file: (path, plan, weights)."""
    path = st.save(st.load_model("timm:test_resnet"), tmp_path_factory.mktemp("b") / "t.slim")
    plan, weights = read(path)
    return path, plan, weights


def _refused(path, match, **kwargs):
    before = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(FormatError, match=match):
        st.load(path, **kwargs)
    assert sorted(p.name for p in path.parent.iterdir()) == before  # no file written


def test_the_poison_works(offline):
    # Control: the poisoned hub cache really runs code when unpickled.
    path = offline["home"] / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    with pytest.raises(Exception):
        torch.load(path, weights_only=False)
    assert offline["marker"].exists()
    offline["marker"].unlink()


@pytest.mark.parametrize(
    "spec, kwargs, match",
    [
        (
            "torchvision:fasterrcnn_mobilenet_v3_large_fpn",
            {"weights_backbone": "DEFAULT"},
            "weights_backbone",
        ),
        ("torchvision:resnet50", {"weights": "DEFAULT"}, "'weights' loads weights"),
        ("torchvision:resnet50", {"progress": True}, "'progress'"),
        ("timm:test_resnet", {"pretrained": True}, "'pretrained'"),
        ("timm:test_resnet", {"checkpoint_path": "CKPT"}, "'checkpoint_path' loads"),
        ("timm:test_resnet", {"pretrained_cfg_overlay": {"file": "CKPT"}}, "pretrained_cfg"),
        ("timm:test_resnet", {"global_pool": "hf-hub:x/y"}, "global_pool"),
        ("timm:hf-hub:timm/resnet18.a1_in1k", {}, "unknown timm model"),
        ("hf:DetrModel", {"config": {"backbone": "timm/resnet50"}}, "backbone"),
        (
            "hf:DetrModel",
            {"config": {"backbone_config": {"use_pretrained_backbone": True}}},
            "use_pretrained_backbone",
        ),
        ("hf:BertModel", {"config": {"attn_implementation": "kernels-community/x"}}, "attn_"),
        ("hf:AutoModel", {"config": {}}, "no model class"),
        ("hf:pipeline", {}, "no model class"),
        ("torchvision:resnet18", {"num_classes": 10**9}, "out of range"),
    ],
)
def test_specs_that_fetch_are_refused(spec, kwargs, match, base, offline, tmp_path):
    kwargs = json.loads(json.dumps(kwargs).replace("CKPT", str(offline["poison"](tmp_path / "c"))))
    with pytest.raises(ModelSpecError, match=match):
        st.load_model(spec, **kwargs)
    _, plan, weights = base
    plan = plan | {"spec": {"spec": spec, "kwargs": kwargs}}
    _refused(write(tmp_path / "evil.slim", plan, weights), match)


def test_specs_never_name_a_file(base, tmp_path, offline):
    _, plan, weights = base
    path = tmp_path / "self.slim"
    write(path, plan | {"spec": {"spec": str(path), "kwargs": {}}}, weights)
    _refused(path, "never names a file", trust_code=True)
    write(path, plan | {"spec": {"spec": "os:system", "kwargs": {"command": "touch X"}}}, weights)
    _refused(path, "trust_code=True")
    assert not (tmp_path / "X").exists()


def test_zip_bomb_is_refused_before_decompressing(base, tmp_path, offline):
    _, plan, weights = base
    zeros = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 24)
    body = b"".join(zeros.compress(chunk) for _ in range(16)) + zeros.flush()  # 256 MiB
    path = tmp_path / "bomb.slim"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("plan.json", json.dumps(plan))
        info = zipfile.ZipInfo("weights.safetensors")
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, b"")  # placeholder, replaced below
    data = path.read_bytes()
    assert len(body) < (1 << 20)
    # A plan.json declaring 4 GiB, and a weights entry that inflates 1000x.
    path.write_bytes(lie_size(data, "plan.json", (1 << 32) - 1))
    _refused(path, "over the limit")
    bomb = tmp_path / "bomb2.slim"
    with zipfile.ZipFile(bomb, "w") as zf:  # a plan.json under the size limit, inflating 1000x
        zf.writestr("plan.json", "{" + " " * (48 << 20) + "}", compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("weights.safetensors", weights)
    assert bomb.stat().st_size < (2 << 20)
    _refused(bomb, "zip bomb")
    with zipfile.ZipFile(bomb, "w") as zf:  # weights that inflate beyond the file
        zf.writestr("plan.json", json.dumps(plan))
        zf.writestr("weights.safetensors", bytes(256 << 20), compress_type=zipfile.ZIP_DEFLATED)
    _refused(bomb, "over the limit")


def test_plan_bounds(base, tmp_path, offline):
    _, plan, weights = base
    stored = zipfile.ZIP_STORED
    # 3 million repeated kept indices: refused before any allocation.
    edit = {"op": "prune", "tensors": {"fc.weight": {"0": [0] * 3_000_000}}, "attrs": {}}
    path = write(tmp_path / "rep.slim", plan | {"edits": [edit]}, weights, plan_method=stored)
    _refused(path, "positions")
    for keep, match in [([1, 0], "unique, sorted"), ([0, 0], "unique"), ([0, 10**6], "in")]:
        edit = {"op": "prune", "tensors": {"fc.weight": {"0": keep}}}
        _refused(write(tmp_path / "k.slim", plan | {"edits": [edit]}, weights), match)
    path = write(tmp_path / "deep.slim", plan | {"edits": []}, weights)
    nested = '{"format": "slimtorch/2", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with zipfile.ZipFile(path, "w") as zf:  # a plan nested 100,000 levels deep
        zf.writestr("plan.json", nested, compress_type=zipfile.ZIP_STORED)
        zf.writestr("weights.safetensors", weights)
    _refused(path, "JSON|deeper")
    many = plan | {"edits": [{"op": "prune_weights", "options": {}}] * 100_001}
    _refused(write(tmp_path / "many.slim", many, weights, plan_method=stored), "edits, over")


def test_shapes_that_request_terabytes(base, tmp_path, offline):
    _, plan, weights = base
    big = {"op": "replace", "module": "fc", "type": "Linear"}
    big["config"] = {"in_features": 10**7, "out_features": 10**7, "bias": True}
    _refused(write(tmp_path / "a.slim", plan | {"edits": [big]}, weights), "allocate over")
    spec = {"spec": "timm:test_resnet", "kwargs": {"num_classes": 10**7}}
    _refused(write(tmp_path / "b.slim", plan | {"spec": spec}, weights), "over 64x")
    packed = plan["packed"] | {"huge": {"shape": [2**40], "dtype": "float32"}}
    _refused(write(tmp_path / "c.slim", plan | {"packed": packed}, weights), "mask")


def test_many_packed_entries(base, tmp_path, offline):
    # 20,000 packed entries are matched to their parts in one pass (was quadratic).
    from safetensors.torch import save as st_save

    _, plan, _ = base
    tensors = {f"t{i}::mask": torch.zeros(1, dtype=torch.uint8) for i in range(20_000)}
    tensors |= {f"t{i}::values": torch.zeros(0) for i in range(20_000)}
    packed = {f"t{i}": {"shape": [8], "dtype": "float32"} for i in range(20_000)}
    path = write(tmp_path / "p.slim", plan | {"packed": packed}, st_save(tensors))
    _refused(path, "do not fit")


def test_plan_edits_are_covered_and_checked(base, tmp_path, offline):
    _, plan, weights = base
    eps = {"op": "prune", "tensors": {}, "attrs": {"bn1": {"eps": 1.0}}}
    # Not resealed: the checksum covers the plan.
    _refused(write(tmp_path / "e.slim", plan | {"edits": [eps]}, weights, reseal=False), "checksum")
    # Resealed (the checksum is not a signature): the edit layer's allowlist refuses it.
    _refused(write(tmp_path / "e.slim", plan | {"edits": [eps]}, weights), "may set only")
    pad = {"op": "prune", "tensors": {}, "attrs": {"conv1.0": {"padding": [9, 9]}}}
    _refused(write(tmp_path / "p.slim", plan | {"edits": [pad]}, weights), "may set only")
    lie = {"op": "prune", "tensors": {}, "attrs": {"conv1.0": {"out_channels": 3}}}
    _refused(write(tmp_path / "l.slim", plan | {"edits": [lie]}, weights), "imply")
    # An alias that maps one buffer onto another.
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    tensors = st_load(weights)
    tensors.pop("bn1.running_var")
    aliased = plan | {"aliases": {"bn1.running_var": "bn1.running_mean"}}
    _refused(write(tmp_path / "a.slim", aliased, st_save(tensors)), "not a tie")


def test_zip_tricks(base, tmp_path, offline):
    _, plan, weights = base
    dup = tmp_path / "dup.slim"
    with zipfile.ZipFile(dup, "w") as zf:
        zf.writestr("plan.json", json.dumps(plan))
        zf.writestr("weights.safetensors", weights)
        with pytest.warns(UserWarning, match="Duplicate"):
            zf.writestr("plan.json", json.dumps(plan | {"edits": []}))
    _refused(dup, "duplicate entries")
    extra = write(tmp_path / "x.slim", plan, weights, extra=[("payload.py", b"print(1)")])
    _refused(extra, "not exactly")
    lzma = tmp_path / "lzma.slim"
    with zipfile.ZipFile(lzma, "w") as zf:
        zf.writestr("plan.json", json.dumps(plan), compress_type=zipfile.ZIP_LZMA)
        zf.writestr("weights.safetensors", weights)
    _refused(lzma, "compression method")


def test_versions(base, tmp_path, offline):
    _, plan, weights = base
    _refused(write(tmp_path / "v.slim", plan | {"format": "slimtorch/3"}, weights), "upgrade")
    _refused(write(tmp_path / "o.slim", plan | {"format": "other/1"}, weights), "reads")
    # Format 1 (checksum over the weights only) still loads, with every other check applied.
    import hashlib

    old = {k: v for k, v in plan.items() if k != "checksum"}
    old |= {"format": "slimtorch/1", "weights_sha256": hashlib.sha256(weights).hexdigest()}
    loaded = st.load(write(tmp_path / "old.slim", old, weights))
    assert loaded.fc.out_features == st.load(base[0]).fc.out_features


@pytest.mark.parametrize(
    "change",
    [
        {"edits": [1]},
        {"edits": [{"op": "prune", "tensors": {"fc.weight": {"x": [0]}}}]},
        {"edits": [{"op": "prune", "tensors": {"fc.weight": {"0": "abc"}}}]},
        {"edits": [{"op": "replace", "module": "fc"}]},
        {"edits": [{"op": "replace", "module": "fc", "type": "Linear", "config": {"x": 1}}]},
        {"edits": [{"op": "replace", "module": "nope", "type": "Identity", "config": {}}]},
        {"edits": [{"op": "sparsify", "module": 3}]},
        {"edits": [{"op": "evil"}]},
        {"aliases": {"a": 1}},
        {"packed": {"fc.weight": {"shape": "x", "dtype": "float32"}}},
        {"packed": {"fc.weight": {"shape": [4], "dtype": "load"}}},
        {"spec": "timm:test_resnet"},
        {"spec": {"spec": "timm:test_resnet", "kwargs": []}},
    ],
)
def test_malformed_plans_give_our_error(change, base, tmp_path, offline):
    _, plan, weights = base
    _refused(write(tmp_path / "m.slim", plan | change, weights), None)


def test_every_failure_is_a_format_error_with_its_cause(tmp_path, monkeypatch, base):
    path = base[0]

    def boom(*args, **kwargs):
        raise KeyError("inner")

    monkeypatch.setattr("slimtorch.io.slim.st_load", boom)
    with pytest.raises(FormatError, match="unreadable weights") as info:
        st.load(path)
    assert isinstance(info.value.__cause__, KeyError)
    monkeypatch.setattr("slimtorch.io.slim.replay_", boom)
    monkeypatch.undo()
    monkeypatch.setattr("slimtorch.io.slim.load_model", boom)
    with pytest.raises(FormatError, match="KeyError") as info:
        st.load(path)
    assert isinstance(info.value.__cause__, KeyError)
    assert os.path.exists(path)
