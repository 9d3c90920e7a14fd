"""Weight-preserving structure rewrites: depthwise-separable, grouped, dilated, low-rank, BN fold.

Example:
    >>> import slimtorch as st, torch, torchvision
    >>> result = st.convert(torchvision.models.resnet18(), "fuse_bn",
    ...                     example_inputs=torch.randn(1, 3, 64, 64))
    >>> print(result)  # per-layer table: error, params and MACs before -> after
"""

from . import depthwise, dilated, fuse_bn, grouped, low_rank  # noqa: F401  (register kinds)
from .api import capture_inputs, convert, relative_error
from .atrous import dilate_to_restore, dilator
from .depthwise import DepthwiseSeparable, DepthwiseSeparableOptions
from .dilated import Dilated, DilatedOptions
from .fuse_bn import FuseBN, FuseBNOptions, bn_pairs, foldable
from .grouped import Grouped, GroupedOptions
from .low_rank import LowRank, LowRankOptions
from .registry import (
    Conversion,
    LayerRewrite,
    conversion_kinds,
    get_conversion,
    register_conversion,
)
from .result import ConvertedLayer, ConvertResult, SkippedLayer

__all__ = [
    "Conversion",
    "ConvertResult",
    "ConvertedLayer",
    "DepthwiseSeparable",
    "DepthwiseSeparableOptions",
    "Dilated",
    "DilatedOptions",
    "FuseBN",
    "FuseBNOptions",
    "Grouped",
    "GroupedOptions",
    "LayerRewrite",
    "LowRank",
    "LowRankOptions",
    "SkippedLayer",
    "bn_pairs",
    "capture_inputs",
    "conversion_kinds",
    "convert",
    "dilate_to_restore",
    "dilator",
    "foldable",
    "get_conversion",
    "register_conversion",
    "relative_error",
]
