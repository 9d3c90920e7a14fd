"""The one place that changes a model's structure, and the log of what it changed.

Every structural change slimtorch makes goes through here and is recorded on the model, so
whatever a user did (prune channels, convert layers, sparsify, remove blocks) saves to a
``.slim`` file and reloads:

- ``slice_channels_``: remove channels from parameters and buffers, fix module metadata;
- ``replace_module_`` / ``remove_module_``: swap a submodule (a conversion, a removed block);
- ``delete_block_``: take a block out of its ``Sequential`` / ``ModuleList`` (depth pruning);
- ``attach_mask_`` / ``remove_masks_``: weight masks (values only, nothing to replay);
- ``sparsify_module_``: a dense layer replaced by its CSR twin;
- ``fold_parametrizations_``: weight_norm and other parametrizations folded into plain weights;
- ``compensate_``: refit the layers whose inputs were pruned, from calibration data (values
  only, nothing to replay);
- ``replay_``: apply a recorded log to a freshly built model (``.slim`` loading).
"""

from .channels import (
    SURGERY,
    apply_prune_edit_,
    module_attrs,
    register_surgery,
    settable_attrs,
    slice_channels_,
)
from .fold import fold_parametrizations_
from .log import carry_metadata, edits_of, get_meta, record_edit, set_meta
from .masks import WeightMask, attach_mask_, mask_of, remove_mask_, remove_masks_
from .modules import delete_block_, remove_module_, replace_module_
from .replay import EDIT_OPS, check_edits, replay_
from .sparse import densified, sparsify_module_

__all__ = [
    "EDIT_OPS",
    "SURGERY",
    "WeightMask",
    "apply_prune_edit_",
    "attach_mask_",
    "check_edits",
    "carry_metadata",
    "delete_block_",
    "densified",
    "edits_of",
    "fold_parametrizations_",
    "get_meta",
    "mask_of",
    "module_attrs",
    "record_edit",
    "register_surgery",
    "remove_mask_",
    "remove_masks_",
    "remove_module_",
    "replace_module_",
    "replay_",
    "set_meta",
    "settable_attrs",
    "slice_channels_",
    "sparsify_module_",
]
