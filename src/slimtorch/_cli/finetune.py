"""``slimtorch finetune``: fine-tune (and distill) a model on a built-in data set or a folder.

Runs as it is under ``torchrun --nproc_per_node=N -m slimtorch.cli finetune ...``: every
process trains, rank 0 prints and writes ``-o`` and the checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from torch import nn

from ..io.slim import load, save
from ..io.spec import load_model
from ..train import FinetuneOptions, accuracy, finetune
from ..train.data import builtin_data
from ._common import check_output


def _model(spec: str, trust_code: bool) -> nn.Module:
    if spec.endswith(".slim"):
        return load(spec, trust_code=trust_code)
    return load_model(spec)


def _data(args: argparse.Namespace) -> tuple[Any, Any]:
    """Training data and a test split (None for a folder)."""
    return builtin_data(args.data, args.image_size)


def cmd_finetune(args: argparse.Namespace) -> int:
    check_output(args)
    opts = FinetuneOptions(
        epochs=args.epochs if args.steps is None else None,
        steps=args.steps,
        lr=args.lr,
        optimizer=args.optimizer,
        batch_size=args.batch_size,
        alpha=args.alpha,
        temperature=args.temperature,
        warmup_steps=args.warmup_steps,
        checkpoint_every=args.checkpoint_every if args.checkpoint_dir or args.resume else None,
        seed=args.seed,
        progress=not args.no_progress and not args.json,
    )
    student = _model(args.model, args.trust_code)
    teacher = _model(args.teacher, args.trust_code).eval() if args.teacher else None
    train, test = _data(args)
    before = accuracy(student, test) if test is not None else None
    result = finetune(
        student,
        train,
        teacher,
        options=opts,
        checkpoint_dir=args.checkpoint_dir or args.resume,
        resume=args.resume,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    after = accuracy(result.model, test) if test is not None else None
    if args.output:
        save(result.model, args.output)
    if args.json:
        out = {
            "steps": result.steps,
            "epochs": result.epochs,
            "resumed_from": result.resumed_from,
            "final_loss": result.losses[-1] if result.losses else None,
            "accuracy_before": before,
            "accuracy_after": after,
            "world_size": result.world_size,
            "checkpoint": str(result.checkpoint) if result.checkpoint else None,
            "output": args.output,
            "warnings": result.warnings,
        }
        print(json.dumps(out, indent=2))
        return 0
    print(result.summary())
    if after is not None:
        print(f"test accuracy on {args.data}: {100 * before:.1f}% -> {100 * after:.1f}%")
    for w in result.warnings:
        print(f"warning: {w}")
    if args.output:
        print(f"saved {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a model, distilling from a teacher; resumable, runs under torchrun",
    )
    p.add_argument("model", help="file.slim, torchvision:NAME, timm:NAME or pkg.module:factory")
    p.add_argument("--data", required=True, help="digits, mnist1d, or a folder CLASS/IMAGE")
    p.add_argument("--teacher", help="the model to distill from (a .slim file or a spec)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=3, help="passes over the data (3)")
    length.add_argument("--steps", type=int, help="optimizer steps instead of --epochs")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (1e-3)")
    p.add_argument("--optimizer", default="adamw", help="adamw (default) or sgd")
    p.add_argument("--batch-size", type=int, default=64, help="per process (64)")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps (0)")
    p.add_argument("--alpha", type=float, default=0.9, help="weight of distillation (0.9)")
    p.add_argument("--temperature", type=float, default=4.0, help="distillation T (4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=32, help="for a folder of images (32)")
    p.add_argument("--checkpoint-dir", help="write checkpoints here")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps (100)")
    p.add_argument("--resume", help="continue the run whose checkpoints are in this folder")
    p.add_argument(
        "--trust-code",
        action="store_true",
        help="allow .slim files whose spec calls package.module:factory",
    )
    p.add_argument("-o", "--output", help="save the fine-tuned model as a .slim file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_finetune)
