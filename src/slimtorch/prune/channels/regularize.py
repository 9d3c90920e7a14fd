"""Sparsity regularizers for training before channel pruning (Network Slimming).

Add the returned term to the training loss; channels whose scale (or whole filter) the term
drives toward zero are then removed by ``prune_channels(..., importance="bn_scale")`` (or
``"l2"`` for group lasso).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ...errors import ConfigError

__all__ = ["regularizer"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def regularizer(
    model: nn.Module, kind: str = "bn_l1", strength: float = 1e-4
) -> Callable[[], torch.Tensor]:
    """Returns ``penalty()``, a differentiable sparsity term to add to the loss each step.

    Args:
        model: the model being trained.
        kind: ``"bn_l1"``: ``strength * sum |gamma|`` over normalization scales (Liu et al.
            2017); ``"group_lasso"``: ``strength * sum ||W[c]||_2`` over the output filters of
            conv and linear layers (Wen et al. 2016).
        strength: the coefficient (``1e-4`` to ``1e-5`` on ImageNet-size models).

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
        >>> penalty = regularizer(model, "bn_l1", 1e-4)
        >>> loss = model(torch.randn(2, 3, 8, 8)).mean() + penalty()
    """
    if not isinstance(strength, int | float) or strength < 0:
        raise ConfigError(f"strength={strength!r} must be a number >= 0, e.g. 1e-4.")
    if kind == "bn_l1":
        params = [
            m.weight for m in model.modules() if isinstance(m, _NORMS) and m.weight is not None
        ]
        if not params:
            raise ConfigError(
                "kind='bn_l1' found no normalization layers with a scale; use "
                "kind='group_lasso' for models without BatchNorm."
            )

        def penalty() -> torch.Tensor:
            return strength * sum(p.abs().sum() for p in params)

    elif kind == "group_lasso":
        params = [m.weight for m in model.modules() if isinstance(m, _LAYERS)]

        def penalty() -> torch.Tensor:
            return strength * sum(p.flatten(1).norm(dim=1).sum() for p in params)

    else:
        raise ConfigError(f"unknown regularizer kind {kind!r}; use 'bn_l1' or 'group_lasso'.")
    return penalty
