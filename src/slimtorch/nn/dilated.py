"""Dilated ("à trous") convolution helpers: sizes, padding and receptive field.

A kernel of size ``k`` with dilation ``d`` spans ``(k - 1) * d + 1`` input pixels with only
``k`` taps, so a 3x3 conv with dilation 3 sees as far as a 7x7 conv with 9 instead of 49
weights per channel pair.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError
from ._args import check_positive

__all__ = [
    "dilated_conv2d",
    "dilation_to_cover",
    "effective_kernel_size",
    "receptive_field_gain",
    "same_padding",
]


def effective_kernel_size(kernel_size: int, dilation: int = 1) -> int:
    """Input pixels one output of a dilated kernel spans: ``(k - 1) * d + 1``.

    Example:
        >>> effective_kernel_size(3, dilation=3)
        7
    """
    check_positive(kernel_size=kernel_size, dilation=dilation)
    return (kernel_size - 1) * dilation + 1


def receptive_field_gain(kernel_size: int, dilation: int = 1, jump: int = 1) -> int:
    """Pixels a conv adds to the receptive field: ``(k - 1) * d * jump``.

    ``jump`` is the product of the strides before the layer (input pixels between
    neighbouring elements of its input).

    Example:
        >>> receptive_field_gain(3, dilation=2, jump=4)
        16
    """
    check_positive(kernel_size=kernel_size, dilation=dilation, jump=jump)
    return (kernel_size - 1) * dilation * jump


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Symmetric padding that keeps the spatial size at stride 1: ``(k - 1) * d / 2``.

    Raises:
        ConfigError: when ``(k - 1) * d`` is odd (no symmetric padding keeps the size).

    Example:
        >>> same_padding(3, dilation=4)
        4
    """
    span = effective_kernel_size(kernel_size, dilation) - 1
    if span % 2:
        raise ConfigError(
            f"kernel_size={kernel_size} with dilation={dilation} spans {span + 1} pixels, an "
            "even number: no symmetric padding keeps the size. Use an odd kernel or an even "
            "dilation, or nn.Conv2d(padding='same') for asymmetric padding."
        )
    return span // 2


def dilation_to_cover(kernel_size: int, span: int) -> int:
    """Dilation at which ``kernel_size`` taps span exactly ``span`` pixels.

    Example:
        >>> dilation_to_cover(3, 7)  # a 3x3 conv with dilation 3 spans a 7x7 window
        3
    """
    check_positive(kernel_size=kernel_size, span=span)
    if kernel_size < 2 or (span - 1) % (kernel_size - 1) or span < kernel_size:
        raise ConfigError(
            f"a kernel of size {kernel_size} cannot span exactly {span} pixels with an integer "
            f"dilation; (span - 1) must be a positive multiple of (kernel_size - 1)."
        )
    return (span - 1) // (kernel_size - 1)


def dilated_conv2d(
    in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 2, **kwargs: Any
) -> nn.Conv2d:
    """An ``nn.Conv2d`` with ``dilation`` and the padding that keeps the size at stride 1.

    Example:
        >>> conv = dilated_conv2d(16, 16, 3, dilation=4)
        >>> conv.padding, conv(torch.randn(1, 16, 32, 32)).shape[-1]
        ((4, 4), 32)
    """
    padding = same_padding(kernel_size, dilation)
    return nn.Conv2d(
        in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, **kwargs
    )
