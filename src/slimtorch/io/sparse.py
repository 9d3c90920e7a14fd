"""Compact encoding of sparse tensors for saving: a packed bitmask plus the non-zero values.

``pack`` returns ``{"mask": uint8[ceil(n / 8)], "values": dtype[nnz]}`` when that is smaller
than the dense bytes (a float32 tensor at 90% zeros packs to ~13% of its size), else None.
``unpack`` restores the tensor bit for bit. Zeros that are ``-0.0`` (what ``w * mask`` gives
for negative weights) are recorded in a third part, ``"negzero"``: a packed bitmask over the
zero positions, present only when there is one. Bits are packed most significant first, as
``numpy.packbits`` does. Pure functions of tensors; safetensors can store every part.

Example:
    >>> w = torch.randn(256, 256) * (torch.rand(256, 256) > 0.9)
    >>> parts = pack(w)
    >>> torch.equal(unpack(parts, w.shape, w.dtype), w)
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..errors import FormatError

__all__ = ["pack", "packed_nbytes", "unpack"]

_SIZES = (1, 2, 4, 8)
_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
_KEYS = ({"mask", "values"}, {"mask", "values", "negzero"})


def _packbits(bits: torch.Tensor) -> torch.Tensor:
    pad = (-bits.numel()) % 8
    padded = torch.cat([bits, bits.new_zeros(pad)]) if pad else bits
    return (padded.view(-1, 8).to(torch.uint8) * _WEIGHTS).sum(1, dtype=torch.uint8)


def _unpackbits(packed: torch.Tensor, n: int) -> torch.Tensor:
    return ((packed.unsqueeze(1) & _WEIGHTS) != 0).flatten()[:n]


def _packable(t: torch.Tensor) -> bool:
    return (
        t.layout == torch.strided
        and not t.is_quantized
        and t.element_size() in _SIZES
        and not t.is_complex()
        and t.numel() >= 8
    )


def packed_nbytes(n: int, nnz: int, element_size: int) -> int:
    """Bytes of the packed form of ``n`` elements holding ``nnz`` non-zeros."""
    return (n + 7) // 8 + nnz * element_size


def pack(tensor: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """Encodes ``tensor`` as a bitmask of its non-zero elements plus their values.

    Args:
        tensor: any strided tensor on any device (the parts are on the CPU).

    Returns:
        ``{"mask": uint8[ceil(numel / 8)], "values": tensor.dtype[nnz]}`` (plus
        ``"negzero": uint8[ceil(zeros / 8)]`` when some zeros are ``-0.0``) when those take
        fewer bytes than the dense tensor, otherwise None (store it dense). Shape and dtype
        are not stored: pass them to ``unpack``.

    Example:
        >>> pack(torch.ones(100)) is None
        True
    """
    if not _packable(tensor):
        return None
    flat = tensor.detach().reshape(-1).cpu().contiguous()
    bits = flat != 0
    nnz = int(bits.sum())
    negzero = None
    if flat.is_floating_point():
        neg = torch.signbit(flat[~bits])
        negzero = _packbits(neg) if neg.any() else None
    size = packed_nbytes(flat.numel(), nnz, flat.element_size())
    size += 0 if negzero is None else negzero.numel()
    if size >= flat.numel() * flat.element_size():
        return None
    parts = {"mask": _packbits(bits), "values": flat[bits].clone()}
    return parts if negzero is None else parts | {"negzero": negzero}


def unpack(
    parts: Mapping[str, torch.Tensor], shape: Sequence[int], dtype: torch.dtype
) -> torch.Tensor:
    """Restores the tensor that ``pack`` encoded, bit for bit.

    Args:
        parts: ``{"mask": ..., "values": ...}`` from ``pack``.
        shape: the original shape.
        dtype: the original dtype.

    Returns:
        A CPU tensor of ``shape`` and ``dtype``.

    Raises:
        FormatError: parts missing, of the wrong dtype or size, or not matching each other
            (a truncated or tampered file).
    """
    if not isinstance(parts, Mapping) or set(parts) not in _KEYS:
        keys = sorted(parts) if isinstance(parts, Mapping) else type(parts).__name__
        raise FormatError(
            f"packed tensor parts are {keys}, expected exactly ['mask', 'values'] and "
            "optionally 'negzero', as written by slimtorch.io.sparse.pack; the file is damaged "
            "or from another tool."
        )
    mask, values = parts["mask"], parts["values"]
    n = 1
    for s in shape:
        n *= int(s)
    if mask.dtype != torch.uint8 or mask.dim() != 1 or mask.numel() != (n + 7) // 8:
        raise FormatError(
            f"packed mask of dtype {mask.dtype} and shape {tuple(mask.shape)} does not fit a "
            f"tensor of shape {tuple(shape)} (expected uint8[{(n + 7) // 8}]); the file is "
            "damaged."
        )
    if values.dtype != dtype or values.dim() != 1:
        raise FormatError(
            f"packed values have dtype {values.dtype} and shape {tuple(values.shape)}, "
            f"expected a 1-D {dtype} tensor; the file is damaged."
        )
    bits = _unpackbits(mask.cpu(), n)
    if int(bits.sum()) != values.numel():
        raise FormatError(
            f"packed mask marks {int(bits.sum())} non-zeros but {values.numel()} values are "
            "stored; the file is damaged."
        )
    out = torch.zeros(n, dtype=dtype)
    out[bits] = values.cpu()
    if "negzero" in parts:
        zeros = torch.nonzero(~bits).flatten()
        neg = parts["negzero"]
        if neg.dtype != torch.uint8 or neg.dim() != 1 or neg.numel() != (zeros.numel() + 7) // 8:
            raise FormatError(
                f"packed negzero part of dtype {neg.dtype} and shape {tuple(neg.shape)} does "
                f"not fit {zeros.numel()} zeros; the file is damaged."
            )
        out[zeros[_unpackbits(neg.cpu(), zeros.numel())]] = -0.0
    return out.view(*shape)
