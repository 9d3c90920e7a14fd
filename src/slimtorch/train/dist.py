"""``torch.distributed`` under torchrun: detect the environment, join the group, reduce.

``torchrun`` (or ``python -m torch.distributed.run``) sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; with ``WORLD_SIZE > 1`` and no process group yet, ``setup`` joins one with
NCCL when training on CUDA and gloo on the CPU. A group that already exists (the caller's) is
used as it is and left alone at the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..errors import ConfigError

__all__ = ["Dist", "broadcast", "mean", "setup", "teardown"]


@dataclass
class Dist:
    """This process's place in the run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def main(self) -> bool:
        """Rank 0: the one process that prints and writes files."""
        return self.rank == 0


def _device(name: str | None, local_rank: int) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device={name!r} is not a torch device; use 'cpu' or 'cuda'.") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name!r} but CUDA is not available; use device='cpu'.")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def setup(device: str | None) -> Dist:
    """Joins (or finds) the process group and picks this process's device."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, local_rank)
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), local_rank, dev, False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(0, 1, 0, dev, False)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, dev, True)


def teardown(d: Dist) -> None:
    if d.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def mean(value: torch.Tensor, d: Dist) -> float:
    """The mean of a scalar over all processes."""
    if d.world == 1:
        return float(value)
    t = value.detach().reshape(1).to(d.device, torch.float64)
    dist.all_reduce(t)
    return float(t) / d.world


def broadcast(value: float, d: Dist) -> float:
    """Rank 0's value on every process (so that every rank takes the same decision)."""
    if d.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=d.device)
    dist.broadcast(t, 0)
    return float(t)
