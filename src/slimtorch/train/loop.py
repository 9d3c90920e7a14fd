"""``finetune``: recover a compressed model's accuracy by training it, with distillation.

One function runs on one CPU and under ``torchrun`` alike: it joins the process group when
the environment has one (``slimtorch.train.dist``), wraps the student in DDP and shards the
data; only rank 0 prints and writes checkpoints. The loss on a batch with labels is
``(1 - alpha) * task + alpha * distill + hidden_weight * hidden`` (without a teacher: the task
loss; without labels: ``distill + hidden_weight * hidden``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
import warnings as _warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._forward import check_model, copy_model, eval_mode
from .._validate import is_number, suggest
from ..errors import ConfigError, InputError
from .batches import Batch, Position, make_stream, split_batch
from .checkpoint import Checkpoint, check_same_model, find_checkpoint, write_checkpoint
from .dist import Dist, broadcast, mean, setup, teardown
from .losses import (
    FeatureTap,
    cosine_distance,
    hidden_mse,
    kd_kl,
    main_output,
    mean_pool,
    task_loss,
)
from .options import MATH_FIELDS, FinetuneOptions
from .probe import Probe, probe
from .progress import Progress
from .result import FinetuneResult
from .state import check_run, load_rng, load_run, save_run

__all__ = ["FinetuneResult", "finetune"]


class _Trainable(nn.Module):
    """The student and the projections of its hidden states: one module, so that DDP
    synchronizes the gradients of both."""

    def __init__(self, student: nn.Module, projections: nn.ModuleDict, names: list[str]):
        super().__init__()
        self.student, self.projections = student, projections
        self.names = names
        self.tap = FeatureTap(student, sorted(set(names)), "student")

    def forward(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        out = self.student(*args, **kwargs)
        feats = []
        for i, name in enumerate(self.names):
            f = self.tap.features[name]
            feats.append(self.projections[str(i)](f) if str(i) in self.projections else f)
        self.tap.features.clear()
        return out, feats


def _options(options: FinetuneOptions | None, kwargs: dict[str, Any]) -> FinetuneOptions:
    if options is not None:
        if kwargs:
            raise ConfigError(
                f"pass either options= or keyword options, not both (got {sorted(kwargs)})."
            )
        if not isinstance(options, FinetuneOptions):
            raise ConfigError(f"options= must be FinetuneOptions, got {type(options).__name__}.")
        return options
    fields = [f.name for f in dataclasses.fields(FinetuneOptions)]
    for key in kwargs:
        if key not in fields:
            raise ConfigError(
                f"finetune has no option {key!r}{suggest(key, fields)}; its options are "
                f"{sorted(fields)}."
            )
    return FinetuneOptions(**kwargs)


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (1 << 32))


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine from 1 to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _optimizer(net: nn.Module, opts: FinetuneOptions) -> torch.optim.Optimizer:
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the student has no trainable parameters (all requires_grad=False).")
    # Weight decay on weights only: biases and norm scales are not decayed.
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": opts.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if opts.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=opts.lr, momentum=opts.momentum)
    return torch.optim.AdamW(groups, lr=opts.lr)


def _total_steps(opts: FinetuneOptions, stream: Any, pos: Position, start: int) -> int:
    if opts.steps is not None:
        return opts.steps
    per_epoch = stream.per_epoch()
    if per_epoch is None:
        raise ConfigError(
            "epochs= needs data whose length is known (a Dataset, a list or a DataLoader); "
            "this iterable has no len(), so pass steps= instead."
        )
    size = getattr(stream, "global_batch", stream.world)  # samples (or batches) per micro-step
    total_units = per_epoch * size
    left = max(total_units - pos.offset, 0) // size if pos.epoch < opts.epochs else 0
    left += max(opts.epochs - pos.epoch - 1, 0) * per_epoch
    total = start + left // opts.accumulate
    if total == 0:
        raise InputError(
            f"{opts.epochs} epoch(s) of {per_epoch} micro-batches make no optimizer step with "
            f"accumulate={opts.accumulate}; lower accumulate or raise epochs."
        )
    return total


class _Run:
    """The state of one fine-tuning run on this process."""

    def __init__(self, opts: FinetuneOptions, d: Dist, loss_fn: Callable | None) -> None:
        self.opts, self.d, self.loss_fn = opts, d, loss_fn
        self.losses: list[float] = []
        self.evals: list[tuple[int, float]] = []
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad = 0
        self.samples = 0
        self.warnings: list[str] = []

    def history(self) -> dict[str, Any]:
        return {
            "losses": self.losses,
            "evals": [list(e) for e in self.evals],
            "best": self.best,
            "best_step": self.best_step,
            "bad": self.bad,
            "samples": self.samples,
        }

    def restore(self, h: dict[str, Any]) -> None:
        self.losses = list(h["losses"])
        self.evals = [(int(s), float(v)) for s, v in h["evals"]]
        self.best, self.best_step, self.bad = h["best"], h["best_step"], int(h["bad"])
        self.samples = int(h["samples"])

    def loss(
        self,
        net: nn.Module,
        teacher: nn.Module | None,
        t_tap: FeatureTap | None,
        batch: Batch,
        pr: Probe,
    ) -> torch.Tensor:
        opts = self.opts
        out, s_feats = net(batch.args, batch.kwargs)
        logits = main_output(out)
        task = None
        if batch.labels is not None:
            fn = self.loss_fn
            task = fn(out, batch.labels) if fn is not None else task_loss(logits, batch.labels)
        if teacher is None:
            if task is None:
                raise InputError("a batch has no labels and there is no teacher to distill from.")
            return task
        with torch.no_grad():
            t_logits = main_output(teacher(*batch.args, **batch.kwargs))
        loss = task if task is not None else torch.zeros((), device=logits.device)
        if pr.distill != "none" and (task is None or opts.alpha > 0):
            s_out, t_out = logits, t_logits
            if opts.pool == "mean":
                mask = batch.kwargs.get("attention_mask")
                s_out, t_out = mean_pool(s_out, mask), mean_pool(t_out, mask)
            if pr.distill == "kl":
                kd = kd_kl(s_out, t_out, opts.temperature)
            elif pr.distill == "cosine":
                kd = cosine_distance(s_out, t_out)
            else:
                kd = F.mse_loss(s_out.float(), t_out.float())
            loss = kd if task is None else (1 - opts.alpha) * task + opts.alpha * kd
        if opts.hidden:
            t_feats = [t_tap.features[t] for _, t in opts.hidden]  # type: ignore[union-attr]
            loss = loss + opts.hidden_weight * hidden_mse(s_feats, t_feats)
        return loss

    def evaluate(self, eval_fn: Callable[[nn.Module], Any], model: nn.Module, step: int) -> bool:
        """Runs ``eval_fn``; True when early stopping says stop."""
        with eval_mode(model), torch.no_grad():
            value = eval_fn(model)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value)
        if not is_number(value):
            raise ConfigError(
                f"eval_fn returned {value!r}; it must return one number (e.g. accuracy, with "
                "maximize=True, or a loss, with maximize=False)."
            )
        value = broadcast(float(value), self.d)
        self.evals.append((step, value))
        better = self.best is None or (
            value > self.best if self.opts.maximize else value < self.best
        )
        if better:
            self.best, self.best_step, self.bad = value, step, 0
        else:
            self.bad += 1
        return self.opts.patience is not None and self.bad >= self.opts.patience


def _check_resume(
    ckpt: Checkpoint, opts: FinetuneOptions, unit: str, world: int, run: _Run
) -> None:
    for text in ckpt.skipped:
        run.warnings.append(f"skipped a damaged checkpoint: {text}")
    if ckpt.state["position"]["unit"] != unit:
        raise ConfigError(
            f"checkpoint {str(ckpt.path)!r} counted its data position in "
            f"{ckpt.state['position']['unit']} but this data is read in {unit}; resume with "
            "the same kind of data (a Dataset, or the same iterable)."
        )
    saved = ckpt.state.get("options", {})
    now = opts.to_dict()
    changed = [k for k in MATH_FIELDS if k in saved and saved[k] != now[k] and k != "batch_size"]
    if unit == "samples" and saved.get("batch_size", 0) * ckpt.state["world_size"] != (
        opts.batch_size * world
    ):  # the global batch is what matters: per-process batch x processes
        changed.append("global batch")
    if changed:
        run.warnings.append(
            f"resumed with other options than the checkpoint's ({', '.join(changed)}): the run "
            "continues, but it is not the run that was interrupted."
        )


def finetune(
    student: nn.Module,
    data: Any,
    teacher: nn.Module | None = None,
    *,
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
    eval_fn: Callable[[nn.Module], float] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    options: FinetuneOptions | None = None,
    **kwargs: Any,
) -> FinetuneResult:
    """Trains a copy of ``student`` on ``data``, distilling from ``teacher`` if given.

    Args:
        student: the model to train (left untouched: a copy is trained and returned).
        data: a ``Dataset`` of ``(x, y)`` samples (read in a seeded order, ``batch_size`` per
            process), or any iterable of batches: ``(inputs, labels)``, ``(inputs,)``, a
            tensor, or a dict of keyword inputs with optional ``"labels"`` (HF style).
        teacher: a model whose outputs the student learns to match (kept in eval mode, run
            without gradients, moved to the training device).
        loss_fn: ``loss_fn(student_output, labels)`` replacing cross-entropy as the task loss.
        eval_fn: ``eval_fn(model) -> float`` called every ``eval_every`` steps and at the end,
            in eval mode without gradients; drives early stopping (``patience``).
        checkpoint_dir: where to write checkpoints (every ``checkpoint_every`` steps and at
            the end), see ``slimtorch.train.checkpoint``.
        resume: a ``checkpoint_dir`` (or one ``.ckpt`` file) to continue from; the run goes on
            at the same step and data position with the same RNG states.
        options: a ``FinetuneOptions``, or pass its fields as keywords (``epochs=3, lr=1e-3``).

    Returns:
        A ``FinetuneResult``; ``.model`` is the trained student, in eval mode.

    Example:
        >>> from slimtorch.train.data import digits
        >>> from slimtorch.train.models import digits_cnn
        >>> r = finetune(digits_cnn(), digits("train"), epochs=1, lr=3e-3, progress=False)
        >>> r.steps
        22
    """
    opts = _options(options, kwargs)
    check_model(student)
    if teacher is not None:
        check_model(teacher)
    if opts.checkpoint_every is not None and checkpoint_dir is None:
        raise ConfigError(
            f"checkpoint_every={opts.checkpoint_every} needs checkpoint_dir= (a folder to "
            "write the checkpoints in)."
        )
    if checkpoint_dir is not None and Path(checkpoint_dir).is_file():
        raise ConfigError(f"checkpoint_dir={str(checkpoint_dir)!r} is a file; give a folder.")
    d = setup(opts.device)
    try:
        with _own_rng(d):  # seeded for the run; the caller's RNG states come back after it
            return _finetune(
                student, data, teacher, opts, d, loss_fn, eval_fn, checkpoint_dir, resume
            )
    finally:
        teardown(d)


@contextlib.contextmanager
def _own_rng(d: Dist) -> Iterator[None]:
    """Restores the global torch, ``random`` and numpy RNG states afterwards."""
    py, npy = random.getstate(), np.random.get_state()
    devices = [d.device] if d.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


def _finetune(
    student: nn.Module,
    data: Any,
    teacher: nn.Module | None,
    opts: FinetuneOptions,
    d: Dist,
    loss_fn: Callable | None,
    eval_fn: Callable | None,
    checkpoint_dir: str | os.PathLike | None,
    resume: str | os.PathLike | None,
) -> FinetuneResult:
    started = time.perf_counter()
    run = _Run(opts, d, loss_fn)
    ckpt = find_checkpoint(resume) if resume is not None else None
    _seed(opts.seed)
    model = copy_model(student).to(d.device)
    if ckpt is not None:
        check_same_model(ckpt, model.state_dict(), "model.", "model")
    if teacher is not None:
        teacher.to(d.device)
    stream = make_stream(data, opts.batch_size, d.rank, d.world, opts.seed, opts.workers)
    pos, start = Position(), 0
    if ckpt is not None:
        _check_resume(ckpt, opts, stream.unit, d.world, run)
        pos = Position(ckpt.state["position"]["epoch"], ckpt.state["position"]["offset"])
        start = int(ckpt.state["step"])
        load_rng(ckpt)
        stream.epoch_rng = ckpt.tensors.get("data.epoch_rng")
    total = _total_steps(opts, stream, pos, start)
    batches = stream.iterate(pos)
    pending = [next(batches)]
    forked = [d.device.index or 0] if d.device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):  # the probe leaves the run's RNG alone
        torch.manual_seed(opts.seed + 1)
        pr = probe(model, teacher, split_batch(pending[0][0], d.device), opts, loss_fn)
    projections = pr.projections.to(d.device)
    net = _Trainable(model, projections, [s for s, _ in opts.hidden])
    opt = _optimizer(net, opts)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, opts.warmup_steps, total))
    if ckpt is not None:
        check_run(ckpt, model, projections)
        load_run(ckpt, model, projections, opt, sched)
        run.restore(ckpt.state["history"])
    engine: nn.Module = net
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [d.device] if d.device.type == "cuda" else None
        engine = DDP(net, device_ids=ids)
    t_tap = FeatureTap(teacher, sorted({t for _, t in opts.hidden}), "teacher") if teacher else None
    params = [p for p in net.parameters() if p.requires_grad]
    progress = Progress(total, start, opts.progress, d.main)
    for text in run.warnings:
        if d.main:
            _warnings.warn(text, stacklevel=3)

    def save(step: int) -> Path | None:
        if not d.main or checkpoint_dir is None:
            return None
        tensors, state = save_run(
            model,
            projections,
            opt,
            sched,
            stream.epoch_rng,
            {
                "position": {"epoch": pos.epoch, "offset": pos.offset, "unit": stream.unit},
                "world_size": d.world,
                "options": opts.to_dict(),
                "history": run.history(),
            },
        )
        return write_checkpoint(checkpoint_dir, step, tensors, state)

    step, stopped, last_eval, last_ckpt, written = start, False, None, None, None
    net.train()
    teacher_ctx = eval_mode(teacher) if teacher is not None else contextlib.nullcontext()
    try:
        with teacher_ctx:
            while step < total and not stopped:
                opt.zero_grad(set_to_none=True)
                loss_sum = torch.zeros((), device=d.device)
                samples = 0
                for micro in range(opts.accumulate):
                    raw, pos = pending.pop() if pending else next(batches)
                    batch = split_batch(raw, d.device)
                    last = micro == opts.accumulate - 1
                    sync = contextlib.nullcontext() if d.world == 1 or last else engine.no_sync()
                    with sync:
                        loss = run.loss(engine, teacher, t_tap, batch, pr)
                        (loss / opts.accumulate).backward()
                    loss_sum += loss.detach()
                    samples += batch.size * d.world
                if opts.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, opts.grad_clip)
                opt.step()
                sched.step()
                step += 1
                value = mean(loss_sum / opts.accumulate, d)
                if not math.isfinite(value):
                    raise ConfigError(
                        f"the loss is {value} at step {step}; lower lr (now {opts.lr:g}) or "
                        "set grad_clip=, and check the data for NaN."
                    )
                run.losses.append(value)
                run.samples += samples
                progress.update(samples, value)
                if eval_fn is not None and opts.eval_every and step % opts.eval_every == 0:
                    stopped = run.evaluate(eval_fn, model, step)
                    last_eval = step
                    progress.note(f"step {step}: eval {run.evals[-1][1]:.4g}")
                if opts.checkpoint_every and step % opts.checkpoint_every == 0:
                    written, last_ckpt = save(step) or written, step
            if eval_fn is not None and last_eval != step:
                run.evaluate(eval_fn, model, step)
            if checkpoint_dir is not None and last_ckpt != step:
                written = save(step) or written
    finally:
        progress.close()
        net.tap.close()
        if t_tap is not None:
            t_tap.close()
    per_epoch = stream.per_epoch()
    size = getattr(stream, "global_batch", stream.world)
    epochs = pos.epoch + (pos.offset / (per_epoch * size) if per_epoch else 0.0)
    return FinetuneResult(
        model=model.eval(),
        steps=step,
        epochs=epochs,
        samples=run.samples,
        losses=run.losses,
        evals=run.evals,
        best_eval=run.best,
        best_step=run.best_step,
        stopped_early=stopped,
        resumed_from=start if ckpt is not None else None,
        checkpoint=written,
        projections=projections,
        warnings=run.warnings,
        seconds=time.perf_counter() - started,
        world_size=d.world,
    )
