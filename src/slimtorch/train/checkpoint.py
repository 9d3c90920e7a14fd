"""Checkpoints of a fine-tuning run: pickle-free, atomic, checksummed, resumable.

A checkpoint directory holds ``step-00000120.ckpt`` files and a ``latest`` pointer. Each
``.ckpt`` file is a zip of ``state.json`` (step, data position, optimizer structure, scheduler,
RNG states of ``random`` and numpy, eval history, options) and ``tensors.safetensors`` (model,
projections, optimizer tensors, torch RNG states). ``state.json`` carries a SHA-256 over its
own canonical JSON and the tensor bytes. A new checkpoint is written to a temporary file,
fsynced and renamed into place, and only then is ``latest`` atomically replaced; older
checkpoints are deleted after that, keeping the newest two, so a crash at any moment leaves a
good checkpoint behind.

On resume, a checkpoint whose checksum fails (truncated, corrupted) is never used: the newest
checkpoint that verifies is taken instead, and the skipped file is named in a warning. If none
verifies, ``CheckpointError`` is raised.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .._files import atomic_write, open_atomic
from ..errors import CheckpointError

__all__ = ["Checkpoint", "find_checkpoint", "read_checkpoint", "write_checkpoint"]

FORMAT = "slimtorch-checkpoint/1"
LATEST = "latest"
KEEP = 2
_STATE, _TENSORS = "state.json", "tensors.safetensors"
_NAME = re.compile(r"^step-(\d{8})\.ckpt$")


@dataclass
class Checkpoint:
    """What a checkpoint holds: ``tensors`` by name and the JSON ``state``."""

    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]
    path: Path | None = None
    skipped: list[str] = field(default_factory=list)


def _digest(state: dict[str, Any], blob: bytes) -> str:
    body = json.dumps({k: v for k, v in state.items() if k != "checksum"}, sort_keys=True)
    h = hashlib.sha256(body.encode())
    h.update(len(body).to_bytes(8, "little"))
    h.update(blob)
    return h.hexdigest()


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The RNG states of torch (CPU and CUDA), ``random`` and numpy's global generator."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, state


def set_rng_state(tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """The checkpoint files of a folder, newest first."""
    found = []
    for p in folder.iterdir() if folder.is_dir() else ():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m[1]), p))
    return sorted(found, reverse=True)


def write_checkpoint(
    folder: str | os.PathLike, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any]
) -> Path:
    """Writes ``step-<step>.ckpt`` atomically, points ``latest`` at it, and deletes all but
    the newest ``KEEP`` checkpoints older than it. Returns the file written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    blob = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    state = {**state, "format": FORMAT, "step": step}
    state["checksum"] = _digest(state, blob)
    path = folder / f"step-{step:08d}.ckpt"
    with open_atomic(path) as f, zipfile.ZipFile(f, "w") as zf:
        zf.writestr(_STATE, json.dumps(state), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(_TENSORS, blob, compress_type=zipfile.ZIP_STORED)
    atomic_write(folder / LATEST, json.dumps({"checkpoint": path.name, "step": step}) + "\n")
    older = [p for s, p in _checkpoints(folder) if s < step]
    for p in older[KEEP - 1 :]:
        p.unlink(missing_ok=True)
    return path


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Reads and verifies one ``.ckpt`` file; ``CheckpointError`` if it is damaged."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if names != {_STATE, _TENSORS}:
                raise CheckpointError(f"it holds {sorted(names)}, not {[_STATE, _TENSORS]}")
            state = json.loads(zf.read(_STATE))
            blob = zf.read(_TENSORS)
    except CheckpointError as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a slimtorch checkpoint: {exc}"
        ) from None
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or corrupt ({type(exc).__name__}: {exc})."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not in the {FORMAT} format.")
    if state.get("checksum") != _digest(state, blob):
        raise CheckpointError(
            f"checkpoint {str(path)!r} fails its SHA-256 checksum: it is corrupt or was edited."
        )
    return Checkpoint(st_load(blob), state, path)


def find_checkpoint(where: str | os.PathLike) -> Checkpoint:
    """The checkpoint to resume from: a ``.ckpt`` file itself, or in a folder the one
    ``latest`` names, else the newest that verifies (the skipped ones in ``.skipped``)."""
    where = Path(where)
    if where.is_file():
        return read_checkpoint(where)
    if not where.is_dir():
        raise CheckpointError(
            f"resume={str(where)!r} does not exist; pass the checkpoint_dir of an earlier run "
            "(or a .ckpt file in it)."
        )
    candidates = [p for _, p in _checkpoints(where)]
    try:
        pointer = json.loads((where / LATEST).read_text())["checkpoint"]
        named = where / pointer
        if _NAME.match(str(pointer)) and named in candidates:
            candidates.remove(named)
            candidates.insert(0, named)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # a missing or damaged pointer: the files themselves are the record
    if not candidates:
        raise CheckpointError(
            f"resume={str(where)!r} holds no checkpoint (step-*.ckpt); start without resume=, "
            "or point it at the checkpoint_dir of the run to continue."
        )
    skipped = []
    for p in candidates:
        try:
            ckpt = read_checkpoint(p)
        except CheckpointError as exc:
            skipped.append(str(exc))
            continue
        ckpt.skipped = skipped
        return ckpt
    raise CheckpointError(
        f"no checkpoint in {str(where)!r} verifies: " + " ".join(skipped) + " Start again "
        "without resume=."
    )


def check_same_model(
    ckpt: Checkpoint, state_dict: dict[str, torch.Tensor], prefix: str, what: str
) -> None:
    """Raises ``CheckpointError`` naming the first tensors that differ in name or shape."""
    saved = {k[len(prefix) :]: v for k, v in ckpt.tensors.items() if k.startswith(prefix)}
    missing = [k for k in state_dict if k not in saved]
    extra = [k for k in saved if k not in state_dict]
    shapes = [
        f"{k!r} is {tuple(saved[k].shape)} there but {tuple(v.shape)} here"
        for k, v in state_dict.items()
        if k in saved and saved[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"it lacks {what} tensors {missing[:3]}" + ("..." * (len(missing) > 3)))
    if extra:
        problems.append(f"it has {what} tensors {extra[:3]} this {what} lacks")
    if shapes:
        problems.append("; ".join(shapes[:3]))
    if problems:
        raise CheckpointError(
            f"checkpoint {str(ckpt.path)!r} was written for another {what}: "
            + "; ".join(problems)
            + ". Resume with the model that run trained (same architecture and pruning), or "
            "start fresh without resume=."
        )
