"""Pure math of weight pruning: scores, selection and mask shapes. No module is touched here.

A layer's weight is cut into *units* that are zeroed together: single weights
(``unstructured``), output rows (``rows``; output channels of a conv) or input columns
(``cols``; input channels of a conv). Each unit gets a magnitude (``|w|``, or the
root-mean-square of a row or column), a criterion turns magnitudes into scores, and the
lowest-scoring units are zeroed. N:M patterns keep the ``n`` highest scores of every ``m``
consecutive weights along the input dimension instead.

Weights that an earlier pass already zeroed (``alive == False``) score ``-inf``: they are
zeroed first and count toward the target, so repeated pruning composes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..._registry import Registry
from .options import Pattern

__all__ = [
    "WEIGHT_CRITERIA",
    "Criterion",
    "global_keep",
    "lamp_scores",
    "layer_keep",
    "nm_keep",
    "register_weight_criterion",
    "threshold_keep",
    "unit_magnitudes",
    "unit_scores",
    "units_to_mask",
]

Criterion = Callable[[torch.Tensor], torch.Tensor]
WEIGHT_CRITERIA: Registry[Criterion] = Registry(
    "weight criterion",
    "name",
    hint="Register one with @slimtorch.register_weight_criterion('name').",
)


def register_weight_criterion(
    name: str, *, override: bool = False
) -> Callable[[Criterion], Criterion]:
    """Registers ``fn(magnitudes[U]) -> scores[U]`` (higher is kept) for one layer's units.

    Example:
        >>> @register_weight_criterion("squared")
        ... def squared(m):
        ...     return m * m
    """

    return WEIGHT_CRITERIA.register(name, override=override)


@register_weight_criterion("magnitude")
def magnitude(m: torch.Tensor) -> torch.Tensor:
    """The magnitude itself (|w| for single weights, RMS for rows and columns)."""
    return m


@register_weight_criterion("lamp")
def lamp_scores(m: torch.Tensor) -> torch.Tensor:
    """Layer-adaptive magnitude pruning scores (Lee et al., ICLR 2021).

    With a layer's magnitudes sorted ascending, ``score(u) = m_u² / Σ_{v ≥ u} m_v²``: a
    weight's share of the energy of the weights at least as large. The largest weight of each
    layer scores 1, so scores compare across layers of different scale (global scope).

    Args:
        m: magnitudes of one layer's units, shape ``[U]``.

    Returns:
        Scores in [0, 1], shape ``[U]``.

    Example:
        >>> lamp_scores(torch.tensor([1.0, 2.0, 2.0])).tolist()
        [0.1111111119389534, 0.5, 1.0]
    """
    sorted_m, order = torch.sort(m.float().abs())
    sorted_sq = sorted_m.double().square()
    tail = sorted_sq.flip(0).cumsum(0).flip(0)  # Σ over v >= u in sorted order
    scores = torch.empty(m.shape, dtype=torch.float32)
    scores[order] = (sorted_sq / tail.clamp_min(torch.finfo(torch.float64).tiny)).float()
    return scores


@register_weight_criterion("random")
def random_scores(m: torch.Tensor) -> torch.Tensor:
    """Uniform random scores (a baseline); seed with ``torch.manual_seed``."""
    return torch.rand(m.shape, dtype=torch.float32)


def _units(t: torch.Tensor, kind: str) -> torch.Tensor:
    """``[U, size]`` view of a weight ``[out, in, *k]`` as the units of a pattern."""
    if kind == "rows":
        return t.reshape(t.shape[0], -1)
    if kind == "cols":
        return t.transpose(0, 1).reshape(t.shape[1], -1)
    return t.reshape(-1, 1)


def unit_magnitudes(weight: torch.Tensor, kind: str) -> torch.Tensor:
    """Magnitude per unit: ``|w|`` for single weights, RMS for rows / columns, shape ``[U]``."""
    units = _units(weight.detach().float(), kind)
    if units.shape[1] == 1:
        return units.abs().squeeze(1)
    return units.square().mean(1).sqrt()


def unit_scores(
    weight: torch.Tensor, alive: torch.Tensor, kind: str, criterion: str
) -> tuple[torch.Tensor, int]:
    """Scores of a layer's units and the number of weights per unit.

    Args:
        weight: the current (masked) weight, shape ``[out, in, *k]``.
        alive: bool, same shape; False where an earlier pass zeroed the weight.
        kind: ``unstructured``, ``rows`` or ``cols``.
        criterion: a name in ``WEIGHT_CRITERIA``.

    Returns:
        ``(scores[U], unit_size)``; units with no alive weight score ``-inf``.
    """
    scores = WEIGHT_CRITERIA.get(criterion)(unit_magnitudes(weight, kind)).float().clone()
    dead = ~_units(alive, kind).any(1)
    scores[dead] = -math.inf
    return scores, _units(alive, kind).shape[1]


def _n_prune(fraction: float, n: int) -> int:
    return min(n, math.floor(fraction * n + 0.5))


def layer_keep(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Keeps all but the ``round(fraction * U)`` lowest-scoring units; bool ``[U]``.

    Example:
        >>> layer_keep(torch.tensor([3.0, 1.0, 2.0, 4.0]), 0.5).tolist()
        [True, False, False, True]
    """
    keep = torch.ones(scores.shape, dtype=torch.bool)
    k = _n_prune(fraction, scores.numel())
    if k:
        keep[torch.argsort(scores, stable=True)[:k]] = False
    return keep


def global_keep(
    scores: Sequence[torch.Tensor], sizes: Sequence[int], fraction: float
) -> list[torch.Tensor]:
    """Ranks units of all layers together and zeros the lowest until ``fraction`` of all
    weights are zero (to the nearest unit).

    Args:
        scores: per layer, scores ``[U_i]`` (comparable across layers, e.g. LAMP).
        sizes: per layer, weights per unit.
        fraction: the fraction of all weights to zero.

    Returns:
        Per layer, bool keep masks ``[U_i]``.
    """
    flat = torch.cat([s.float() for s in scores])
    lengths = [s.numel() for s in scores]
    prune = torch.zeros(flat.shape, dtype=torch.bool)
    if all(z == 1 for z in sizes):
        k = _n_prune(fraction, flat.numel())
        if k:
            # kthvalue + ties instead of a full argsort: ResNet-50 has 25M weights.
            t = torch.kthvalue(flat, k).values
            prune = flat < t
            need = k - int(prune.sum())
            prune[torch.nonzero(flat == t).flatten()[:need]] = True
    else:
        unit = torch.cat([torch.full((n,), z, dtype=torch.float64) for n, z in zip(lengths, sizes)])
        budget = fraction * float(unit.sum())
        order = torch.argsort(flat, stable=True)
        cum = unit[order].cumsum(0)
        prune[order[(cum - unit[order] / 2) < budget]] = True
    return [~p for p in prune.split(lengths)]


def threshold_keep(magnitudes: torch.Tensor, threshold: float) -> torch.Tensor:
    """Keeps units whose magnitude is at least ``threshold``; bool ``[U]``."""
    return magnitudes >= threshold


def units_to_mask(keep: torch.Tensor, shape: torch.Size, kind: str) -> torch.Tensor:
    """Expands a per-unit keep vector to a bool mask of the weight's ``shape``."""
    if kind == "rows":
        return keep.view(-1, *([1] * (len(shape) - 1))).expand(shape).clone()
    if kind == "cols":
        return keep.view(1, -1, *([1] * (len(shape) - 2))).expand(shape).clone()
    return keep.reshape(shape)


def nm_keep(
    weight: torch.Tensor, alive: torch.Tensor, pattern: Pattern, criterion: str
) -> torch.Tensor:
    """Keeps the ``n`` highest scores of every ``m`` consecutive weights along dim 1 (input).

    Args:
        weight: ``[out, in, *k]`` with ``in % m == 0``.
        alive: bool, same shape; weights already zeroed stay zeroed (a block may then hold
            fewer than ``n`` non-zeros, which is still a valid N:M block).
        pattern: an ``nm`` pattern.
        criterion: a name in ``WEIGHT_CRITERIA``.

    Returns:
        Bool keep mask of ``weight``'s shape.

    Example:
        >>> nm_keep(torch.tensor([[1.0, -4.0, 3.0, 2.0]]), torch.ones(1, 4, dtype=torch.bool),
        ...         Pattern("nm", 2, 4), "magnitude").tolist()
        [[False, True, True, False]]
    """
    assert weight.shape[1] % pattern.m == 0, "caller checks divisibility"
    inner = weight.detach().movedim(1, -1)  # [out, *k, in]: blocks run along the input dim
    scores = WEIGHT_CRITERIA.get(criterion)(inner.float().abs().flatten()).float().clone()
    scores[~alive.movedim(1, -1).flatten()] = -math.inf
    blocks = scores.view(-1, pattern.m)
    top = torch.topk(blocks, pattern.n, dim=1).indices
    keep = torch.zeros(blocks.shape, dtype=torch.bool).scatter_(1, top, True)
    return keep.view(inner.shape).movedim(-1, 1).contiguous()
