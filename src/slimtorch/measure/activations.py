"""Statistics of the activations that layers read, from a few calibration batches.

``input_moments`` runs the model on each batch and accumulates, for every ``nn.Linear`` and
convolution, the mean and mean square of each input channel (features of a linear, dim 1 of
a conv) over every other position. Data-aware importance criteria weight a column of a
layer's weight by these (Wanda, FLAP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .._forward import Inputs, eval_mode, run_forward

__all__ = ["Moments", "input_moments"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class Moments:
    """Per input channel of one layer: how many values were seen, their mean and mean square."""

    count: int
    mean: torch.Tensor  # float64
    mean_sq: torch.Tensor  # float64

    @property
    def var(self) -> torch.Tensor:
        return (self.mean_sq - self.mean.square()).clamp_min(0)


def _channels(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` as ``[channels, values]`` for the layer's input-channel dim."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1]).t()
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def input_moments(
    model: nn.Module, batches: Sequence[Inputs], names: Sequence[str] | None = None
) -> dict[str, Moments]:
    """Input-channel moments of every linear and conv layer (or of ``names``) of ``model``.

    Args:
        model: run in eval mode without gradients; not modified.
        batches: calibration inputs, each as ``example_inputs`` are given.
        names: the layers to watch; by default every ``nn.Linear`` and ``nn.Conv*d``.

    Returns:
        ``{layer name: Moments}`` for the layers that ran.
    """
    if names is None:
        names = [n for n, m in model.named_modules() if isinstance(m, _LAYERS)]
    sums: dict[str, list] = {}
    handles = []

    def hook(module: nn.Module, args: tuple, name: str) -> None:
        if not args or not isinstance(args[0], torch.Tensor) or not args[0].is_floating_point():
            return
        x = _channels(module, args[0].detach()).double()
        acc = sums.setdefault(name, [0, 0.0, 0.0])
        acc[0] += x.shape[1]
        acc[1] = acc[1] + x.sum(1)
        acc[2] = acc[2] + x.square().sum(1)

    for name in names:
        module = model.get_submodule(name)
        handles.append(module.register_forward_pre_hook(lambda m, a, name=name: hook(m, a, name)))
    try:
        with eval_mode(model), torch.no_grad():
            for batch in batches:
                run_forward(model, batch)
    finally:
        for h in handles:
            h.remove()
    return {
        name: Moments(n, s / max(n, 1), sq / max(n, 1)) for name, (n, s, sq) in sums.items() if n
    }
