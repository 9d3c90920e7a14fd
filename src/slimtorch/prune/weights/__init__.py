"""Weight pruning: unstructured, N:M and row/column masks, schedules, sensitivity, CSR."""

from .api import make_permanent_, prune_weights_
from .criteria import register_weight_criterion
from .layers import register_prunable
from .options import WeightOptions
from .schedule import AGP, Iterative, OneShot, PruningSchedule
from .sensitivity import SensitivityResult, sensitivity
from .sparse_infer import SparsifyResult, sparsify_for_inference
from .stats import SparsityReport, sparsity, zeroed_channels

__all__ = [
    "AGP",
    "Iterative",
    "OneShot",
    "PruningSchedule",
    "SensitivityResult",
    "SparsifyResult",
    "SparsityReport",
    "WeightOptions",
    "make_permanent_",
    "prune_weights_",
    "register_prunable",
    "register_weight_criterion",
    "sensitivity",
    "sparsify_for_inference",
    "sparsity",
    "zeroed_channels",
]
