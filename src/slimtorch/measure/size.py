"""Size of a model's weights as saved on disk."""

from __future__ import annotations

import io

import torch
from torch import nn

__all__ = ["state_dict_bytes"]


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``, the file users ship today.

    Models on the ``meta`` device have no data; their size is the sum of tensor byte sizes.
    """
    sd = model.state_dict()
    if any(t.is_meta for t in sd.values() if isinstance(t, torch.Tensor)):
        return sum(t.numel() * t.element_size() for t in sd.values() if isinstance(t, torch.Tensor))
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.tell()
