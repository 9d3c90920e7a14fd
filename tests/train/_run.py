"""A fine-tuning run for tests that need their own process: ``python _run.py DIR STEPS
SLEEP_S [OUT]``. Checkpoints into DIR every 5 steps; sleeps SLEEP_S per step (in eval_fn,
which changes nothing in the arithmetic) so that a parent can kill it mid-way; saves the
final weights to OUT (safetensors) if given."""

import sys
import time

import torch
from _nets import blobs, mlp
from safetensors.torch import save_file

from slimtorch.train import finetune

KW = {"lr": 1e-2, "batch_size": 16, "warmup_steps": 3, "progress": False, "seed": 7}


def run(folder, steps, pause=0.0, resume=None):
    torch.set_num_threads(1)

    def slow(model):
        time.sleep(pause)
        return 0.0

    return finetune(
        mlp(), blobs(), steps=steps, checkpoint_dir=folder, checkpoint_every=5, resume=resume,
        eval_fn=slow if pause else None, eval_every=1, **KW,
    )  # fmt: skip


if __name__ == "__main__":
    folder, steps, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    result = run(folder, steps, pause)
    if len(sys.argv) > 4:
        save_file(result.model.state_dict(), sys.argv[4])
