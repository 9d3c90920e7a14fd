"""The real all-MiniLM-L6-v2 from 6 to 4 layers: which pair each score removes, against all 15.

Every pair of the 6 layers is removed in turn (``prune_layers(blocks=[a, b])``) and the
4-layer model's sentence embeddings are compared with the original's on the held-out
sentences (every fifth of ``slimtorch.train.sentences()``, as in ``minilm_distill.py``):
cosine (mean) and the Spearman correlation of the pairwise-similarity matrices. The pairs are
ranked by cosine. Then ``prune_layers(n=2, score=...)`` picks a pair for each score, scored
on 4 calibration batches of 32 training sentences; the pick of ``block_influence`` (and the
exhaustive best, if another) is distilled for ``--steps`` steps (``finetune(pool="mean",
distill="cosine")``). Last, batch-1 latency (one training sentence) of the 6- and 4-layer
models, interleaved, at 1 thread.

Run: python benchmarks/minilm_layers.py [--steps 100]
"""

from __future__ import annotations

import argparse
import itertools

import torch

from latency_accuracy import speedup
from minilm_distill import load
from slimtorch import benchmark, finetune, prune_layers
from slimtorch.report.table import format_table
from slimtorch.train.embeddings import agreement, sentence_embeddings, token_batches


def short(pair: tuple[str, ...]) -> str:
    return "+".join(n.rsplit(".", 1)[1] for n in pair)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bert, tok, train, held_out, example = load()
    calib = token_batches(tok, train, 32)[:4]
    ref = sentence_embeddings(bert, tok, held_out)
    layers = [f"encoder.layer.{i}" for i in range(6)]
    pairs = {}
    for pair in itertools.combinations(layers, 2):
        model = prune_layers(bert, example, blocks=list(pair)).model
        pairs[pair] = agreement(sentence_embeddings(model, tok, held_out), ref)
    ranked = sorted(pairs, key=lambda p: -pairs[p]["cos_mean"])
    picks = {}
    for score in ("block_influence", "angular", "loss"):
        r = prune_layers(bert, example, n=2, data=calib, score=score)
        picks[score] = tuple(sorted(r.plan["layers"]["removed"]))
    rows = [
        (
            short(p), str(i + 1), f"{pairs[p]['cos_mean']:.4f}", f"{pairs[p]['spearman']:.4f}",
            ", ".join(s for s, q in picks.items() if q == p),
        )
        for i, p in enumerate(ranked)
    ]  # fmt: skip
    print(f"all-MiniLM-L6-v2, 6 -> 4 layers; {len(held_out)} held-out sentences")
    print(format_table(("layers removed", "rank", "cos mean", "Spearman", "picked by"), rows))
    data = token_batches(tok, train, 16, epochs=-(-args.steps // -(-len(train) // 16)))
    dist = []
    for label, pair in (("block_influence", picks["block_influence"]), ("best", ranked[0])):
        if label == "best" and pair == picks["block_influence"]:
            continue
        student = prune_layers(bert, example, blocks=list(pair)).model
        student.embeddings.word_embeddings.weight.requires_grad_(False)
        warm = max(1, args.steps // 10)
        r = finetune(student, data, bert, steps=args.steps, lr=args.lr, pool="mean",
                     distill="cosine", warmup_steps=warm, progress=False)  # fmt: skip
        after = agreement(sentence_embeddings(r.model, tok, held_out), ref)
        dist.append((
            f"{label} ({short(pair)})", f"{pairs[pair]['cos_mean']:.4f}",
            f"{after['cos_mean']:.4f}", f"{pairs[pair]['spearman']:.4f}",
            f"{after['spearman']:.4f}",
        ))  # fmt: skip
    print(f"distilled {args.steps} steps, lr {args.lr:g}, batch 16")
    print(format_table(("pair", "cos before", "cos after", "Spearman before",
                        "Spearman after"), dist))  # fmt: skip
    four = prune_layers(bert, example, blocks=list(picks["block_influence"])).model.eval()
    one = dict(tok(train[:1], return_tensors="pt"))
    torch.set_num_threads(1)
    base = benchmark(bert, one, threads=1).median_ms
    gain = speedup(four, bert, one)
    print(
        f"batch 1, {one['input_ids'].shape[1]} tokens, 1 thread: 6 layers {base:.2f} ms, "
        f"4 layers {base / gain:.2f} ms ({gain:.2f}x, interleaved)"
    )


if __name__ == "__main__":
    main()
