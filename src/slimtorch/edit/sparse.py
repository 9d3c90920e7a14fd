"""Sparse-kernel swaps: a dense layer replaced by its CSR twin, recorded so ``.slim`` keeps it.

A ``.slim`` file stores the dense weights (packed: bitmask plus non-zeros) and the edit
``{"op": "sparsify", "module": name}``; loading builds the dense model, loads the weights,
then swaps the sparse layers in again, so the round trip is exact.
"""

from __future__ import annotations

import copy

from torch import nn

from ..errors import FormatError
from ..nn.sparse import SPARSE_KINDS
from .log import record_edit

__all__ = ["densified", "sparsify_module_"]


def _swap(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    parent._modules[child] = new


def sparsify_module_(
    model: nn.Module, name: str, sparse: nn.Module | None = None, *, record: bool = True
) -> None:
    """Replaces the layer at ``name`` by its sparse twin (built from it unless given)."""
    try:
        dense = model.get_submodule(name)
    except AttributeError as exc:
        raise FormatError(f"cannot sparsify {name!r}: the model has no such module") from exc
    if sparse is None:
        build = SPARSE_KINDS.lookup(type(dense))
        if build is None:
            raise FormatError(
                f"cannot sparsify {name!r}: no sparse kernel for {type(dense).__name__}"
            )
        sparse = build(dense)
    _swap(model, name, sparse)
    if record:
        record_edit(model, {"op": "sparsify", "module": name}, owned=True)


def densified(model: nn.Module) -> nn.Module:
    """``model``, or a copy whose sparse layers are dense again (for saving)."""
    sparse = [m for n, m in model.named_modules() if hasattr(m, "to_dense") and n]
    if not sparse:
        return model
    # The copy gets dense twins in place of the sparse layers (CSR tensors cannot be copied).
    return copy.deepcopy(model, {id(m): m.to_dense() for m in sparse})
