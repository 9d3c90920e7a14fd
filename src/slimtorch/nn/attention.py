"""``PrunableMultiheadAttention``: ``nn.MultiheadAttention`` with separate q/k/v projections.

``nn.MultiheadAttention`` keeps q, k and v in one packed ``in_proj_weight`` and checks in its
forward that every width equals ``embed_dim``, so neither its heads nor the width it sits on
can shrink. This twin computes the same function from four ``nn.Linear`` layers and reshapes
by ``num_heads`` and ``head_dim``, which channel pruning keeps in step; ``from_torch`` copies a
trained module exactly. The forward takes the same arguments and returns ``(output, weights)``.

Shape:
    query ``(N, L, E)`` (``(L, N, E)`` unless ``batch_first``), key/value ``(N, S, Ek/Ev)``
    -> output ``(N, L, E_out)``, weights ``(N, L, S)`` (or ``(N, H, L, S)``) or None.

Example:
    >>> mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    >>> twin = PrunableMultiheadAttention.from_torch(mha).eval()
    >>> x = torch.randn(2, 5, 16)
    >>> torch.allclose(twin(x, x, x)[0], mha(x, x, x)[0], atol=1e-6)
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ._args import check_positive
from ._registry import register_module

__all__ = ["PrunableMultiheadAttention"]


def _additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A float mask to add to the scores (True in a bool mask means "not allowed")."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros_like(mask, dtype=dtype).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


@register_module
class PrunableMultiheadAttention(nn.Module):
    """Multi-head attention over ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj``.

    Args:
        embed_dim: width of the query (and of the output).
        num_heads: heads; ``head_dim = embed_dim // num_heads`` unless given.
        kdim / vdim: widths of key and value (default ``embed_dim``).
        bias: biases on the projections.
        batch_first: inputs are ``(N, L, E)`` rather than ``(L, N, E)``.
        dropout: dropout on the attention weights in training.
        head_dim: per-head width of q and k (and of v unless ``v_head_dim`` is given).
        v_head_dim: per-head width of v (and of the input of ``out_proj``).
        scale: factor of the q.k scores; ``head_dim ** -0.5`` of the width given, and kept
            when channel pruning shrinks ``head_dim``, so the pruned scores are those of the
            original model.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        kdim: int | None = None,
        vdim: int | None = None,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        head_dim: int | None = None,
        scale: float | None = None,
        v_head_dim: int | None = None,
    ) -> None:
        super().__init__()
        check_positive(embed_dim=embed_dim, num_heads=num_heads)
        head_dim = head_dim or embed_dim // num_heads
        if head_dim * num_heads == 0:
            raise ConfigError(f"embed_dim={embed_dim} gives no width per head for {num_heads}")
        self.num_heads, self.head_dim = num_heads, head_dim
        self.v_head_dim = v_head_dim or head_dim
        self.scale = float(scale) if scale is not None else head_dim**-0.5
        self.batch_first, self.dropout = batch_first, float(dropout)
        inner, v_inner = num_heads * head_dim, num_heads * self.v_head_dim
        self.q_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.k_proj = nn.Linear(kdim or embed_dim, inner, bias=bias)
        self.v_proj = nn.Linear(vdim or embed_dim, v_inner, bias=bias)
        self.out_proj = nn.Linear(v_inner, embed_dim, bias=bias)

    @property
    def embed_dim(self) -> int:
        return self.q_proj.in_features

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> PrunableMultiheadAttention:
        """The exact twin of a trained ``nn.MultiheadAttention`` (weights copied)."""
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ConfigError(
                "nn.MultiheadAttention with add_bias_kv or add_zero_attn has no prunable twin"
            )
        twin = cls(
            mha.embed_dim,
            mha.num_heads,
            mha.kdim,
            mha.vdim,
            bias=mha.in_proj_bias is not None,
            batch_first=mha.batch_first,
            dropout=mha.dropout,
        )
        e = mha.embed_dim
        if mha._qkv_same_embed_dim:
            weights = mha.in_proj_weight.detach().split(e)
        else:
            weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
        biases = mha.in_proj_bias.detach().split(e) if mha.in_proj_bias is not None else None
        with torch.no_grad():
            for i, proj in enumerate((twin.q_proj, twin.k_proj, twin.v_proj)):
                proj.weight.copy_(weights[i])
                if biases is not None:
                    proj.bias.copy_(biases[i])
            twin.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None:
                twin.out_proj.bias.copy_(mha.out_proj.bias)
        return twin.to(mha.out_proj.weight.device, mha.out_proj.weight.dtype).train(mha.training)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, n_q, n_k = query.shape[0], query.shape[1], key.shape[1]
        h, d = self.num_heads, self.head_dim
        q = self.q_proj(query).view(b, n_q, h, d).transpose(1, 2)
        k = self.k_proj(key).view(b, n_k, h, d).transpose(1, 2)
        v = self.v_proj(value).view(b, n_k, h, self.v_head_dim).transpose(1, 2)
        mask = _additive(attn_mask, q.dtype)
        if mask is not None and mask.dim() == 3:  # (N * H, L, S)
            mask = mask.view(b, -1, n_q, n_k)
        padding = _additive(key_padding_mask, q.dtype)
        if padding is not None:
            padding = padding.view(b, 1, 1, n_k)
            mask = padding if mask is None else mask + padding
        if is_causal and mask is None:
            causal = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).triu(1)
            mask = _additive(causal, q.dtype)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) * self.scale
            attn = (scores if mask is None else scores + mask).softmax(-1)
            out = F.dropout(attn, p, self.training) @ v
            weights = attn.mean(1) if average_attn_weights else attn
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=p, scale=self.scale
            )
        out = self.out_proj(out.transpose(1, 2).reshape(b, n_q, h * self.v_head_dim))
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def config(self) -> dict[str, Any]:
        return {
            "embed_dim": self.q_proj.in_features,
            "num_heads": self.num_heads,
            "kdim": self.k_proj.in_features,
            "vdim": self.v_proj.in_features,
            "bias": self.q_proj.bias is not None,
            "batch_first": self.batch_first,
            "dropout": self.dropout,
            "head_dim": self.head_dim,
            "scale": self.scale,
            "v_head_dim": self.v_head_dim,
        }

    def extra_repr(self) -> str:
        return (
            f"num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"v_head_dim={self.v_head_dim}, batch_first={self.batch_first}"
        )
