"""Channel pruning: groups of coupled channels scored, planned and physically removed."""

from .api import PruneResult, prune_channels
from .importance import register_importance
from .options import ChannelOptions, simd_channels
from .regularize import regularizer
from .twins import register_twin

__all__ = [
    "ChannelOptions",
    "PruneResult",
    "prune_channels",
    "register_importance",
    "register_twin",
    "regularizer",
    "simd_channels",
]
