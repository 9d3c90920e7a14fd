"""Sparse inference layers: ``nn.Linear`` / ``nn.Conv2d`` with CSR weights.

``torch.sparse.mm`` computes them; they pay off on CPUs only at very high sparsity, which is
why ``sparsify_for_inference`` measures before it swaps. ``SPARSE_KINDS`` maps a dense layer
type to the builder of its sparse replacement; each sparse layer has ``to_dense()``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .._registry import Registry
from ..errors import ConfigError

__all__ = ["SPARSE_DTYPES", "SPARSE_KINDS", "SparseConv2d", "SparseLinear", "conv_unsupported"]

SPARSE_DTYPES = (torch.float32, torch.float64)


def _csr(weight: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # "CSR support is in beta": known, and why we measure
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return weight.detach().to_sparse_csr()


def _set_dense(dense: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    # clone(): tensors made under inference_mode cannot be updated in place outside it.
    dense.weight = nn.Parameter(weight.clone())
    if bias is not None:
        dense.bias = nn.Parameter(bias.clone())


class SparseLinear(nn.Module):
    """``nn.Linear`` with its weight stored as a CSR matrix, for inference.

    ``y = x Wᵀ + b`` is computed as ``(W xᵀ)ᵀ`` with ``torch.sparse.mm``. No autograd use is
    intended (the weight is a buffer).

    Args:
        weight: dense ``[out, in]`` weight (converted to CSR).
        bias: ``[out]`` or None.

    Example:
        >>> lin = torch.nn.Linear(64, 32)
        >>> y = SparseLinear.from_dense(lin)(torch.randn(4, 64))   # [4, 32]
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", _csr(weight))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_dense(cls, linear: nn.Linear) -> SparseLinear:
        return cls(linear.weight, linear.bias)

    def __deepcopy__(self, memo: dict) -> SparseLinear:
        # CSR tensors have no storage that copy.deepcopy could copy.
        return SparseLinear.from_dense(self.to_dense()).train(self.training)

    def to_dense(self) -> nn.Linear:
        """The equivalent ``nn.Linear`` (what ``.slim`` files store; loading sparsifies again)."""
        dense = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        _set_dense(dense, self.weight.to_dense(), self.bias)
        return dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        cols = x.reshape(-1, self.in_features).t().contiguous()  # [in, N]
        y = torch.sparse.mm(self.weight, cols).t()  # [N, out]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        nnz = self.weight.values().numel()
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={nnz}"


class SparseConv2d(nn.Module):
    """``nn.Conv2d`` (groups=1, zero padding) as im2col (``F.unfold``) + CSR matmul.

    Args:
        conv: the dense convolution to copy.

    Example:
        >>> conv = torch.nn.Conv2d(8, 16, 3, padding=1)
        >>> y = SparseConv2d(conv)(torch.randn(1, 8, 10, 10))   # [1, 16, 10, 10]
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        reason = conv_unsupported(conv)
        if reason:
            raise ConfigError(f"SparseConv2d cannot replace {conv}: {reason}.")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        weight = conv.weight.detach().reshape(conv.out_channels, -1)
        self.register_buffer("weight", _csr(weight))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def __deepcopy__(self, memo: dict) -> SparseConv2d:
        return SparseConv2d(self.to_dense()).train(self.training)

    def to_dense(self) -> nn.Conv2d:
        """The equivalent ``nn.Conv2d`` (what ``.slim`` files store)."""
        dense = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            bias=self.bias is not None,
        )
        _set_dense(dense, self.weight.to_dense().reshape(dense.weight.shape), self.bias)
        return dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        length = cols.shape[-1]
        cols = cols.transpose(0, 1).reshape(cols.shape[1], b * length)  # [C*kh*kw, B*L]
        y = torch.sparse.mm(self.weight, cols).view(self.out_channels, b, length).transpose(0, 1)
        if self.bias is not None:
            y = y + self.bias[:, None]
        oh = h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1
        ow = w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1
        return y.reshape(b, self.out_channels, oh // self.stride[0] + 1, ow // self.stride[1] + 1)


def conv_unsupported(conv: nn.Conv2d) -> str:
    """Why ``SparseConv2d`` cannot replace ``conv`` ('' when it can)."""
    if conv.groups != 1:
        return f"groups={conv.groups} (only 1 is supported)"
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        return f"padding={conv.padding!r}, padding_mode={conv.padding_mode!r} (need ints, zeros)"
    return ""


SPARSE_KINDS: Registry[Callable[[nn.Module], nn.Module]] = Registry(
    "sparse kernel", "class", inherit="same_forward"
)
SPARSE_KINDS.add(nn.Linear, SparseLinear.from_dense)
SPARSE_KINDS.add(nn.Conv2d, SparseConv2d)
