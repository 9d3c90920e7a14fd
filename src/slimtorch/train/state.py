"""Run state to and from checkpoint form: tensors by name plus JSON, never pickle.

The optimizer's ``state_dict`` is split into its tensors (``optim.<param>.<key>``) and the
rest (param groups, scalar state) as JSON; the scheduler's ``state_dict`` is plain data
already (a ``LambdaLR`` saves no functions). Floats go through JSON unchanged (Python writes
the shortest repr that reads back to the same double), so a resumed run is bit-identical.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .checkpoint import Checkpoint, check_same_model, rng_state, set_rng_state

__all__ = ["load_run", "save_run"]


def _optimizer_parts(
    opt: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        scalars[str(idx)] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars[str(idx)][key] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
        for g in sd["param_groups"]
    ]
    return tensors, {"param_groups": groups, "state": scalars}


def _load_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], saved: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in saved["state"].items()}
    for name, t in tensors.items():
        if name.startswith("optim."):
            idx, key = name[len("optim.") :].split(".", 1)
            state.setdefault(int(idx), {})[key] = t
    groups = []
    for g in saved["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_run(
    model: nn.Module,
    projections: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    epoch_rng: torch.Tensor | None,
    state: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON of everything a resume needs (``state`` adds the loop's counters)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"proj.{k}": v for k, v in projections.state_dict().items()})
    opt_tensors, opt_json = _optimizer_parts(opt)
    tensors.update(opt_tensors)
    rng_tensors, rng_json = rng_state()
    tensors.update(rng_tensors)
    if epoch_rng is not None:
        tensors["data.epoch_rng"] = epoch_rng
    return tensors, {
        **state,
        "optimizer": opt_json,
        "scheduler": sched.state_dict(),
        "rng": rng_json,
    }


def check_run(ckpt: Checkpoint, model: nn.Module, projections: nn.Module) -> None:
    """Raises ``CheckpointError`` when the checkpoint was written for another model."""
    check_same_model(ckpt, model.state_dict(), "model.", "model")
    check_same_model(ckpt, projections.state_dict(), "proj.", "hidden-state projection")


def load_run(
    ckpt: Checkpoint,
    model: nn.Module,
    projections: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    """Loads weights, optimizer and scheduler (the RNG states are set by ``load_rng``)."""
    tensors = ckpt.tensors
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    projections.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("proj.")})
    _load_optimizer(opt, tensors, ckpt.state["optimizer"])
    sched.load_state_dict(dict(ckpt.state["scheduler"]))


def load_rng(ckpt: Checkpoint) -> None:
    set_rng_state(ckpt.tensors, ckpt.state["rng"])
