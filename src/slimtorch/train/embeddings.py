"""Sentence embeddings for distilling embedding models, and how well two models agree.

``sentence_embeddings`` is sentence-transformers' recipe (mean of ``last_hidden_state`` over
the attention mask, then L2 normalization); ``agreement`` compares a compressed model's
embeddings with the original's: the cosine of each pair, and the Spearman correlation of
the two pairwise cosine-similarity matrices (upper triangle), which is what retrieval and
clustering depend on. ``token_batches`` feeds ``finetune`` with length-bucketed batches so
that little compute goes to padding.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .losses import main_output, mean_pool

__all__ = ["agreement", "sentence_embeddings", "spearman", "token_batches"]

Tokenizer = Callable[..., Any]  # a Hugging Face tokenizer: tok(texts, padding=..., ...)


def _encode(tokenizer: Tokenizer, texts: Sequence[str], max_length: int) -> dict[str, Any]:
    out = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    return dict(out)


def token_batches(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    batch_size: int = 16,
    epochs: int = 1,
    seed: int = 0,
    max_length: int = 128,
) -> list[dict[str, torch.Tensor]]:
    """``epochs`` passes of keyword batches (``input_ids``, ``attention_mask``, ...) for
    ``finetune``: texts of similar token length share a batch (padding is then short) and the
    batches are shuffled per epoch with ``random.Random((seed, epoch))``.

    Example:
        >>> data = token_batches(tok, sentences(), batch_size=16, epochs=3)
        >>> r = finetune(pruned, data, teacher, epochs=1, pool="mean", distill="cosine")
    """
    lengths = [len(tokenizer.tokenize(t)) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches = [_encode(tokenizer, [texts[j] for j in c], max_length) for c in chunks]
    out = []
    for epoch in range(epochs):
        idx = list(range(len(batches)))
        random.Random(f"{seed}-{epoch}").shuffle(idx)
        out.extend(batches[i] for i in idx)
    return out


def sentence_embeddings(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    batch_size: int = 64,
    max_length: int = 128,
) -> torch.Tensor:
    """L2-normalized mean-pooled ``last_hidden_state`` of ``texts``: shape ``(N, D)``."""
    out = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = _encode(tokenizer, texts[i : i + batch_size], max_length)
                h = main_output(model(**enc))
                out.append(F.normalize(mean_pool(h, enc.get("attention_mask")), dim=-1))
    finally:
        model.train(was_training)
    return torch.cat(out)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two 1-D tensors (ties broken by position, which is
    immaterial for float similarities)."""

    def ranks(x: torch.Tensor) -> torch.Tensor:
        r = torch.empty_like(x, dtype=torch.float64)
        r[x.argsort()] = torch.arange(len(x), dtype=torch.float64)
        return r - r.mean()

    ra, rb = ranks(a.flatten()), ranks(b.flatten())
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def agreement(embeddings: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """How closely ``embeddings`` ``(N, D)`` follow ``reference`` ``(N, D')`` (both
    L2-normalized, same texts): ``cos_mean``/``cos_min`` of the per-text cosine (needs
    ``D == D'``), and ``spearman`` between the upper triangles of the two ``N x N``
    cosine-similarity matrices."""
    cos = (embeddings * reference).sum(-1)
    iu = torch.triu_indices(len(reference), len(reference), 1)
    sims = (embeddings @ embeddings.T)[iu[0], iu[1]]
    ref = (reference @ reference.T)[iu[0], iu[1]]
    return {
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "spearman": spearman(sims, ref),
    }
