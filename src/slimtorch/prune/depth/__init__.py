"""Depth pruning: whole blocks scored on calibration data and taken out of the model."""

from .api import prune_layers
from .options import SCORES, LayerOptions

__all__ = ["SCORES", "LayerOptions", "prune_layers"]
