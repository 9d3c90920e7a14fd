"""Channel pruning: groups of coupled channels scored, planned and physically removed."""

from .api import PruneResult, prune_channels
from .importance import register_importance
from .options import ChannelOptions, simd_channels
from .regularize import regularizer

__all__ = [
    "ChannelOptions",
    "PruneResult",
    "prune_channels",
    "register_importance",
    "regularizer",
    "simd_channels",
]
