"""``PrunableWindowAttention``: Swin's shifted-window attention with an explicit ``head_dim``.

torchvision's ``ShiftedWindowAttention`` (and ``V2``) compute ``head_dim = C // num_heads``
from the input width ``C`` inside their forward, so neither heads nor the width can shrink
alone. This twin holds the same parameters under the same names (``qkv``, ``proj``, the
relative position bias table or ``cpb_mlp`` and ``logit_scale``) and reshapes by
``num_heads`` and ``head_dim``, which channel pruning keeps in step. ``from_torch`` copies a
trained module's state exactly; the function is torchvision's, with ``head_dim`` explicit.

Shape:
    ``(B, H, W, C)`` -> ``(B, H, W, C_out)`` (``C_out`` is ``proj``'s output width).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ._registry import register_module

__all__ = ["PrunableWindowAttention", "window_attention"]


def _shift_mask(x: torch.Tensor, pad_hw: tuple[int, int], window: list[int], shift: list[int]):
    pad_h, pad_w = pad_hw
    mask = x.new_zeros((pad_h, pad_w))
    h_slices = ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None))
    w_slices = ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None))
    count = 0
    for h in h_slices:
        for w in w_slices:
            mask[h[0] : h[1], w[0] : w[1]] = count
            count += 1
    n_windows = (pad_h // window[0]) * (pad_w // window[1])
    mask = mask.view(pad_h // window[0], window[0], pad_w // window[1], window[1])
    mask = mask.permute(0, 2, 1, 3).reshape(n_windows, window[0] * window[1])
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def window_attention(
    x: torch.Tensor,
    qkv: nn.Linear,
    proj: nn.Linear,
    position_bias: torch.Tensor,
    window: list[int],
    num_heads: int,
    head_dim: int,
    shift: list[int],
    *,
    attention_dropout: float = 0.0,
    dropout: float = 0.0,
    logit_scale: torch.Tensor | None = None,
    training: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Window multi-head self-attention with relative position bias, shifted or not."""
    b, h, w, c = x.shape
    pad_r, pad_b = (window[1] - w % window[1]) % window[1], (window[0] - h % window[0]) % window[0]
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    _, pad_h, pad_w, _ = x.shape
    shift = [0 if window[0] >= pad_h else shift[0], 0 if window[1] >= pad_w else shift[1]]
    if sum(shift) > 0:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    n_windows = (pad_h // window[0]) * (pad_w // window[1])
    x = x.view(b, pad_h // window[0], window[0], pad_w // window[1], window[1], c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b * n_windows, window[0] * window[1], c)
    bias = qkv.bias
    if logit_scale is not None and bias is not None:  # V2 has no key bias
        # By a (3, 1) mask rather than a slice: no fixed position, so heads stay prunable.
        keep = torch.tensor([1.0, 0.0, 1.0], dtype=bias.dtype, device=bias.device)[:, None]
        bias = (bias.view(3, -1) * keep).reshape(-1)
    out = F.linear(x, qkv.weight, bias)
    out = out.reshape(x.size(0), x.size(1), 3, num_heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = out[0], out[1], out[2]
    if logit_scale is not None:  # cosine attention (V2)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = attn * torch.clamp(logit_scale, max=math.log(100.0)).exp()
    else:
        attn = (q * (head_dim**-0.5 if scale is None else scale)).matmul(k.transpose(-2, -1))
    attn = attn + position_bias
    if sum(shift) > 0:
        mask = _shift_mask(x, (pad_h, pad_w), window, shift)
        attn = attn.view(x.size(0) // n_windows, n_windows, num_heads, x.size(1), x.size(1))
        attn = attn + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, num_heads, x.size(1), x.size(1))
    attn = F.dropout(F.softmax(attn, dim=-1), p=attention_dropout, training=training)
    x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), num_heads * head_dim)
    x = F.dropout(proj(x), p=dropout, training=training)
    c_out = x.shape[-1]
    x = x.view(b, pad_h // window[0], pad_w // window[1], window[0], window[1], c_out)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, pad_h, pad_w, c_out)
    if sum(shift) > 0:
        x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
    return x[:, :h, :w, :].contiguous()


def _relative_index(window: list[int]) -> torch.Tensor:
    coords = torch.stack(
        torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij")
    ).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window[0] - 1
    rel[:, :, 1] += window[1] - 1
    rel[:, :, 0] *= 2 * window[1] - 1
    return rel.sum(-1).flatten()


def _coords_table(window: list[int]) -> torch.Tensor:
    h = torch.arange(-(window[0] - 1), window[0], dtype=torch.float32)
    w = torch.arange(-(window[1] - 1), window[1], dtype=torch.float32)
    table = torch.stack(torch.meshgrid([h, w], indexing="ij")).permute(1, 2, 0).contiguous()
    table = table.unsqueeze(0)
    table[:, :, :, 0] /= window[0] - 1
    table[:, :, :, 1] /= window[1] - 1
    table *= 8
    return torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / 3.0


@register_module
class PrunableWindowAttention(nn.Module):
    """Shifted-window attention (Swin V1, or V2 with ``cosine=True``) over ``qkv``/``proj``.

    Args:
        dim: input width; window_size / shift_size: pairs; num_heads: heads;
        head_dim: per-head width (``dim // num_heads`` by default);
        qkv_bias / proj_bias: biases; attention_dropout / dropout: in training;
        cosine: Swin V2's cosine attention with ``logit_scale`` and a ``cpb_mlp`` bias.
        out_dim: output width (``dim`` by default).
        scale: factor of the q.k scores (``head_dim ** -0.5`` of the width given), kept when
            pruning shrinks ``head_dim``.
    """

    def __init__(
        self,
        dim: int,
        window_size: list[int],
        shift_size: list[int],
        num_heads: int,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        attention_dropout: float = 0.0,
        dropout: float = 0.0,
        cosine: bool = False,
        out_dim: int | None = None,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        self.window_size, self.shift_size = list(window_size), list(shift_size)
        self.num_heads, self.head_dim = num_heads, head_dim or dim // num_heads
        self.scale = float(scale) if scale is not None else self.head_dim**-0.5
        self.attention_dropout, self.dropout, self.cosine = attention_dropout, dropout, cosine
        inner = self.num_heads * self.head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.proj = nn.Linear(inner, out_dim or dim, bias=proj_bias)
        n = (2 * window_size[0] - 1) * (2 * window_size[1] - 1)
        if cosine:
            self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))
            self.cpb_mlp = nn.Sequential(
                nn.Linear(2, 512, bias=True),
                nn.ReLU(inplace=True),
                nn.Linear(512, num_heads, False),
            )
            self.register_buffer("relative_coords_table", _coords_table(self.window_size))
        else:
            self.relative_position_bias_table = nn.Parameter(torch.zeros(n, num_heads))
        self.register_buffer("relative_position_index", _relative_index(self.window_size))

    @classmethod
    def from_torch(cls, module: nn.Module) -> PrunableWindowAttention:
        """The exact twin of torchvision's ``ShiftedWindowAttention`` or ``...V2``."""
        cosine = hasattr(module, "logit_scale")
        twin = cls(
            module.qkv.in_features,
            module.window_size,
            module.shift_size,
            module.num_heads,
            module.qkv.out_features // (3 * module.num_heads),
            module.qkv.bias is not None,
            module.proj.bias is not None,
            module.attention_dropout,
            module.dropout,
            cosine,
            module.proj.out_features,
        )
        twin.load_state_dict(module.state_dict())
        p = module.qkv.weight
        return twin.to(p.device, p.dtype).train(module.training)

    def position_bias(self) -> torch.Tensor:
        table = (
            self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
            if self.cosine
            else self.relative_position_bias_table
        )
        n = self.window_size[0] * self.window_size[1]
        bias = table[self.relative_position_index].view(n, n, -1)
        bias = bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        return 16 * torch.sigmoid(bias) if self.cosine else bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return window_attention(
            x,
            self.qkv,
            self.proj,
            self.position_bias(),
            self.window_size,
            self.num_heads,
            self.head_dim,
            self.shift_size,
            attention_dropout=self.attention_dropout,
            dropout=self.dropout,
            logit_scale=self.logit_scale if self.cosine else None,
            training=self.training,
            scale=self.scale,
        )

    def config(self) -> dict[str, Any]:
        return {
            "dim": self.qkv.in_features,
            "window_size": self.window_size,
            "shift_size": self.shift_size,
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "scale": self.scale,
            "qkv_bias": self.qkv.bias is not None,
            "proj_bias": self.proj.bias is not None,
            "attention_dropout": self.attention_dropout,
            "dropout": self.dropout,
            "cosine": self.cosine,
            "out_dim": self.proj.out_features,
        }

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, window={self.window_size}"
