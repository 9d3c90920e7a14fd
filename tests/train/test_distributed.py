"""finetune under torchrun: two CPU processes (gloo) match one process with the same global
batch, and a checkpoint of the two-process run resumes in one process.

Tolerance: the two runs differ only in how the gradient mean is rounded (DDP averages two
per-rank means of 8 samples; one process takes one mean of 16), about one float32 ulp per
step. Measured after 24 AdamW steps: at most 7.5e-8 on weights of magnitude <= 0.3, so
``atol=1e-6`` (13x the measured gap, still 1e-5 of the weights' scale) with ``rtol=0``.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _nets import blobs, mlp
from safetensors.torch import load_file

import slimtorch
from slimtorch.train import finetune
from slimtorch.train.checkpoint import read_checkpoint

HERE = Path(__file__).parent
ATOL = 1e-6
KW = dict(steps=24, lr=1e-2, warmup_steps=3, seed=5, progress=False)


@pytest.mark.slow  # ~20 s: torchrun starts two processes that each import torch
def test_two_processes_match_one_and_resume_in_one(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(slimtorch.__file__).parents[1]), str(HERE)])
    out, folder = tmp_path / "ddp.safetensors", tmp_path / "ckpt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(HERE / "_ddp.py"), str(out), "8", str(folder)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("world=2 steps=24 samples=384") == 2  # both ranks, global counts
    torch.set_num_threads(1)
    one = finetune(mlp(), blobs(), batch_size=16, **KW)  # the same global batch, one process
    ddp = load_file(out)
    for k, v in one.model.state_dict().items():
        torch.testing.assert_close(ddp[k], v, atol=ATOL, rtol=0, msg=k)
    # Only rank 0 wrote; the checkpoint counts its data position in global samples.
    ckpt = read_checkpoint(folder / "step-00000016.ckpt")
    assert ckpt.state["world_size"] == 2 and ckpt.state["position"]["offset"] == 16 * 16
    resumed = finetune(mlp(), blobs(), batch_size=16, resume=ckpt.path, **KW)
    assert resumed.resumed_from == 16 and resumed.steps == 24
    for k, v in one.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, atol=ATOL, rtol=0, msg=k)
