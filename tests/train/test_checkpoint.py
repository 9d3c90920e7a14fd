"""Checkpoints: a killed run resumes bit-identically; a damaged checkpoint is never used and
never replaces a good one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _nets import blobs, mlp, same_weights
from _run import KW, run

import slimtorch
from slimtorch.errors import CheckpointError
from slimtorch.train import finetune
from slimtorch.train.checkpoint import find_checkpoint, read_checkpoint

HERE = Path(__file__).parent


class Stop(Exception):
    pass


def _interrupt_at(n):
    calls = [0]

    def eval_fn(model):
        calls[0] += 1
        if calls[0] == n:
            raise Stop
        return 0.0

    return eval_fn


def _latest_step(folder: Path) -> int:
    try:
        return json.loads((folder / "latest").read_text())["step"]
    except (OSError, ValueError):
        return 0


@pytest.mark.slow  # ~10 s: a child process imports torch and is killed mid-run
def test_sigkill_then_resume_is_bit_identical(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(slimtorch.__file__).parents[1]), str(HERE)])
    folder = tmp_path / "ckpt"
    child = subprocess.Popen(
        [sys.executable, str(HERE / "_run.py"), str(folder), "60", "0.05"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while _latest_step(folder) < 15 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    killed_at = _latest_step(folder)
    assert 15 <= killed_at < 60
    resumed = run(folder, 60, resume=folder)
    assert resumed.resumed_from == killed_at and resumed.steps == 60
    whole = run(tmp_path / "whole", 60)
    assert same_weights(resumed.model, whole.model)
    assert resumed.losses == whole.losses


def test_resume_mid_epoch_of_a_shuffling_dataloader(tmp_path):
    loader = torch.utils.data.DataLoader(blobs(), batch_size=32, shuffle=True)
    kw = dict(epochs=3, lr=1e-2, progress=False)
    torch.manual_seed(0)
    whole = finetune(mlp(), loader, **kw)
    with pytest.raises(Stop):  # step 11 of 24: mid-epoch 2, after a checkpoint at 10
        finetune(mlp(), loader, checkpoint_dir=tmp_path, checkpoint_every=5,
                 eval_fn=_interrupt_at(11), eval_every=1, **kw)  # fmt: skip
    resumed = finetune(mlp(), loader, resume=tmp_path, **kw)
    assert resumed.resumed_from == 10 and resumed.steps == whole.steps == 24
    assert same_weights(resumed.model, whole.model)


def test_corrupt_latest_falls_back_to_the_previous_good_one(tmp_path):
    with pytest.raises(Stop):
        run_kw = dict(steps=30, checkpoint_dir=tmp_path, checkpoint_every=5)
        finetune(mlp(), blobs(), eval_fn=_interrupt_at(12), eval_every=1, **run_kw, **KW)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["latest", "step-00000005.ckpt", "step-00000010.ckpt"]
    good, bad = tmp_path / "step-00000005.ckpt", tmp_path / "step-00000010.ckpt"
    good_bytes = good.read_bytes()
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the tensors
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is truncated or corrupt"):
        read_checkpoint(bad)  # the zip's CRC sees it before the checksum does
    assert find_checkpoint(tmp_path).path == good
    assert good.read_bytes() == good_bytes
    with pytest.warns(UserWarning, match="skipped a damaged checkpoint.*step-00000010"):
        resumed = finetune(mlp(), blobs(), resume=tmp_path, **run_kw, **KW)
    assert resumed.resumed_from == 5
    whole = finetune(mlp(), blobs(), steps=30, **KW)
    assert same_weights(resumed.model, whole.model)
    # The run rewrote step 10 (a good one now) and moved on; two checkpoints are kept.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "latest",
        "step-00000025.ckpt",
        "step-00000030.ckpt",
    ]
    assert read_checkpoint(tmp_path / "step-00000030.ckpt").state["step"] == 30


def test_truncated_and_all_damaged(tmp_path):
    finetune(mlp(), blobs(), steps=4, checkpoint_dir=tmp_path, checkpoint_every=2, **KW)
    for p in tmp_path.glob("step-*.ckpt"):
        p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="no checkpoint in .* verifies.*truncated or corrupt"):
        finetune(mlp(), blobs(), steps=8, resume=tmp_path, **KW)


def test_checkpoint_holds_no_pickle(tmp_path):
    r = finetune(mlp(), blobs(), steps=3, checkpoint_dir=tmp_path, **KW)
    import zipfile

    with zipfile.ZipFile(r.checkpoint) as zf:
        assert sorted(zf.namelist()) == ["state.json", "tensors.safetensors"]
        state = json.loads(zf.read("state.json"))
    assert state["step"] == 3 and state["position"] == {"epoch": 0, "offset": 48, "unit": "samples"}
    assert len(state["checksum"]) == 64
    ckpt = read_checkpoint(r.checkpoint)
    assert {"model.1.weight", "optim.0.exp_avg", "rng.torch"} <= set(ckpt.tensors)


def test_edited_state_fails_the_checksum(tmp_path):
    import zipfile

    r = finetune(mlp(), blobs(), steps=2, checkpoint_dir=tmp_path, **KW)
    with zipfile.ZipFile(r.checkpoint) as zf:
        state, blob = json.loads(zf.read("state.json")), zf.read("tensors.safetensors")
    state["position"]["offset"] = 0  # a consistent zip whose content was changed
    with zipfile.ZipFile(r.checkpoint, "w") as zf:
        zf.writestr("state.json", json.dumps(state))
        zf.writestr("tensors.safetensors", blob)
    with pytest.raises(CheckpointError, match="fails its SHA-256 checksum"):
        read_checkpoint(r.checkpoint)
