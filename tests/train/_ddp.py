"""Fine-tuning under torchrun for the distributed test: ``torchrun --nproc_per_node=N
_ddp.py OUT BATCH [CKPT_DIR [RESUME [STEPS]]]``; rank 0 saves the final weights to OUT."""

import sys

import torch
from _nets import blobs, mlp
from safetensors.torch import save_file

from slimtorch.train import finetune

torch.set_num_threads(1)
out, batch = sys.argv[1], int(sys.argv[2])
folder = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
resume = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] != "-" else None
steps = int(sys.argv[5]) if len(sys.argv) > 5 else 24
r = finetune(
    mlp(), blobs(), steps=steps, lr=1e-2, batch_size=batch, warmup_steps=3, seed=5,
    progress=False, checkpoint_dir=folder, checkpoint_every=8 if folder else None, resume=resume,
)  # fmt: skip
print(f"rank world={r.world_size} steps={r.steps} samples={r.samples} loss={r.losses[-1]:.6f}")
if r.checkpoint is not None or folder is None:
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        save_file(r.model.state_dict(), out)
