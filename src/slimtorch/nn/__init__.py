"""Building blocks for efficient CNNs and transformers, and the registry ``.slim`` rebuilds from."""

from ._registry import build_module, module_config, register_module
from .attention import PrunableMultiheadAttention
from .blocks import ChannelPermute, ChannelShuffle, GroupedConv2d, valid_groups
from .dilated import (
    dilated_conv2d,
    dilation_to_cover,
    effective_kernel_size,
    receptive_field_gain,
    same_padding,
)
from .lowrank import LowRankLinear, TuckerConv2d
from .separable import DepthwiseSeparableConv2d, repeat_channels
from .shuffle_stage import PieceBatchNorm, PrunableShuffleStage
from .window_attention import PrunableWindowAttention

__all__ = [
    "ChannelPermute",
    "ChannelShuffle",
    "DepthwiseSeparableConv2d",
    "GroupedConv2d",
    "LowRankLinear",
    "PieceBatchNorm",
    "PrunableMultiheadAttention",
    "PrunableShuffleStage",
    "PrunableWindowAttention",
    "TuckerConv2d",
    "build_module",
    "dilated_conv2d",
    "dilation_to_cover",
    "effective_kernel_size",
    "module_config",
    "receptive_field_gain",
    "register_module",
    "repeat_channels",
    "same_padding",
    "valid_groups",
]
