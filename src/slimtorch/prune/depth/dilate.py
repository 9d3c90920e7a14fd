"""Restoring the receptive field that removed blocks took with them.

A removed block's stride-1 convs each widened the field by ``(k - 1) * dilation`` pixels at
their stage's resolution. The nearest block that stays in the same container gets that width
back: its stride-1 ``k x k`` convs with "same" padding have their dilation raised (padding
raised with it, so shapes stay), the added ``(k - 1) * extra`` summing to at least what was
lost. The weights are kept; the dilated convs compute something new, so fine-tune after.
Each change is an ``edit.replace_module_`` (a conv with the new dilation), recorded for
``.slim``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

from torch import nn

from ...edit.modules import replace_module_
from ...graph.blocks import Block

__all__ = ["restore_receptive_field_"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _lost(block_module: nn.Module) -> list[int] | None:
    """Field width per spatial dim the block's stride-1 convs added, or None if none."""
    total: list[int] | None = None
    for m in block_module.modules():
        if isinstance(m, _CONVS) and all(s == 1 for s in m.stride):
            add = [(k - 1) * d for k, d in zip(m.kernel_size, m.dilation)]
            total = add if total is None else [a + b for a, b in zip(total, add)]
    return total if total and any(total) else None


def _dilatable(m: nn.Module) -> bool:
    return (
        isinstance(m, _CONVS)
        and all(s == 1 for s in m.stride)
        and all(k > 1 and k % 2 == 1 for k in m.kernel_size)
        and m.padding_mode == "zeros"
        and (
            m.padding == "same"
            or list(m.padding) == [d * (k - 1) // 2 for k, d in zip(m.kernel_size, m.dilation)]
        )
    )


def restore_receptive_field_(
    model: nn.Module, chosen: Sequence[Block], warnings: list[str]
) -> dict[str, list[int]]:
    """Raises the dilation of convs next to the chosen blocks (still in ``model``, about to be
    removed) so the field they added is kept; returns ``{conv: new dilation}``."""
    gone = {m for b in chosen for m in b.members}
    out: dict[str, list[int]] = {}
    for block in chosen:
        first = model.get_submodule(block.members[0])
        lost = _lost(first) if len(block.members) == 1 else None
        if lost is None:
            continue
        container = model.get_submodule(block.container) if block.container else model
        prefix = block.container + "." if block.container else ""
        names = [prefix + c for c in container._modules]
        here = names.index(block.members[0])
        order = sorted(
            (i for i, n in enumerate(names) if n not in gone), key=lambda i: (abs(i - here), -i)
        )
        target = None
        for i in order:
            convs = [
                (f"{names[i]}.{n}" if n else names[i], m)
                for n, m in model.get_submodule(names[i]).named_modules()
                if _dilatable(m)
            ]
            if convs:
                target = convs
                break
        if target is None:
            warnings.append(
                f"the receptive field of removed block {block.name!r} is not restored: no block "
                "left in its container has a stride-1 conv with 'same' padding to dilate"
            )
            continue
        for dim, need in enumerate(lost):
            share = math.ceil(need / len(target))
            for name, conv in target:
                k = conv.kernel_size[dim]
                extra = math.ceil(share / (k - 1))
                dil = list(conv.dilation)
                dil[dim] += extra
                conv.dilation = tuple(dil)
                if conv.padding != "same":
                    pad = list(conv.padding)
                    pad[dim] = dil[dim] * (k - 1) // 2
                    conv.padding = tuple(pad)
                out[name] = list(conv.dilation)
        for name, conv in target:
            replace_module_(
                model, name, copy.deepcopy(conv), why={"restore_receptive_field": block.name}
            )
    return out
