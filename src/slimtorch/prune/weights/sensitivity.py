"""Per-layer sensitivity to weight pruning, and per-layer sparsities from it.

``sensitivity`` prunes one layer at a time on a copy of the model and records a metric;
``SensitivityResult.allocate`` turns a global target into a per-layer dict that
``prune_weights_`` accepts.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..._files import atomic_write
from ..._forward import check_model
from ..._validate import check_number
from ...errors import ConfigError, PruneError
from ...report.table import format_table, human
from .api import prune_weights_, selected_layers
from .layers import prunable_layers
from .options import WeightOptions, check_fraction, suggest

__all__ = ["SensitivityResult", "sensitivity"]


@dataclass(frozen=True)
class SensitivityResult:
    """Metric of the model with one layer pruned, per layer and sparsity.

    Attributes:
        baseline: the metric of the unpruned model.
        sparsities: the tested fractions, ascending.
        metrics: ``{layer: (metric at each sparsity)}``.
        sizes: weights per layer.
        higher_is_better: True for accuracy, False for a loss.
    """

    baseline: float
    sparsities: tuple[float, ...]
    metrics: dict[str, tuple[float, ...]]
    sizes: dict[str, int]
    higher_is_better: bool = True

    def drop(self, layer: str) -> tuple[float, ...]:
        """How much worse than the baseline each tested sparsity is (positive = worse)."""
        sign = 1.0 if self.higher_is_better else -1.0
        return tuple(sign * (self.baseline - m) for m in self.metrics[layer])

    def tolerated(self, layer: str, tolerance: float) -> float:
        """The largest tested sparsity whose drop is at most ``tolerance`` (0.0 if none).

        Sparsities above the first one that exceeds the tolerance are not considered, so a
        noisy lucky point at high sparsity does not count.
        """
        best = 0.0
        for s, d in zip(self.sparsities, self.drop(layer)):
            if d > tolerance:
                break
            best = s
        return best

    def allocate(self, target: float, tolerance: float = 0.01) -> dict[str, float]:
        """Per-layer sparsities reaching ``target`` over the tested layers' weights.

        Each layer gets ``α · s_tol(layer)``, clipped to the largest tested sparsity, where
        ``s_tol`` is ``tolerated(layer, tolerance)`` and one factor ``α`` is solved (bisection)
        so that the weight-weighted mean equals ``target``. Layers keep their relative
        robustness: a layer that tolerated 0.9 ends twice as sparse as one that tolerated 0.45
        (unless clipped); a layer that tolerated nothing stays dense. ``α < 1`` when the target
        is below what the tolerance allows, ``α > 1`` (accepting more than ``tolerance`` per
        layer) when above. The drops of single layers do not add up exactly: check the
        combined model and fine-tune.

        Args:
            target: fraction of zeros over the tested layers' weights, in [0, 1].
            tolerance: the largest acceptable drop of one layer, in the metric's units.

        Returns:
            ``{layer: sparsity}`` for ``prune_weights_(model, sparsity=...)``.

        Example:
            >>> ratios = result.allocate(0.8, tolerance=0.01)
            >>> prune_weights_(model, sparsity=ratios)
        """
        check_fraction("target", target)
        check_number("tolerance", tolerance, low=0, hint="the metric drop you accept")
        cap = max(self.sparsities)
        s_tol = {name: self.tolerated(name, tolerance) for name in self.metrics}
        total = sum(self.sizes[n] for n in s_tol)

        def reached(alpha: float) -> float:
            return sum(self.sizes[n] * min(alpha * s, cap) for n, s in s_tol.items()) / total

        most = sum(self.sizes[n] * cap for n, s in s_tol.items() if s > 0) / total
        if target > most + 1e-9:
            raise PruneError(
                f"target {target} is unreachable: with tolerance={tolerance} the layers that "
                f"tolerate any pruning hold {most:.4f} of the weights at the largest tested "
                f"sparsity {cap}; raise tolerance, test higher sparsities, or lower the target."
            )
        hi = cap / min((s for s in s_tol.values() if s > 0), default=cap)
        lo = 0.0
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if reached(mid) < target else (lo, mid)
        return {n: min(hi * s, cap) for n, s in s_tol.items()}

    def table(self) -> str:
        """Layers as rows, tested sparsities as columns, the metric in cells."""
        headers = ["layer", "weights", *(f"{100 * s:g}%" for s in self.sparsities)]
        rows = [
            [name, human(self.sizes[name]), *(f"{m:.4f}" for m in ms)]
            for name, ms in self.metrics.items()
        ]
        return format_table(
            headers, rows, f"metric with one layer pruned (dense: {self.baseline:.4f})"
        )

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str | Path) -> Path:
        """Writes a PNG: the metric against sparsity, one line per layer.

        Uses matplotlib's Agg canvas directly, so no GUI backend or global pyplot state is
        touched.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 5), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        xs = [100 * s for s in self.sparsities]
        for name, ms in self.metrics.items():
            ax.plot(xs, ms, marker="o", linewidth=1, label=name)
        ax.axhline(self.baseline, color="black", linestyle="--", linewidth=1, label="dense")
        ax.set_xlabel("sparsity of the layer (%)")
        ax.set_ylabel("metric")
        ax.set_title("sensitivity to weight pruning, one layer at a time")
        if len(self.metrics) <= 20:
            ax.legend(fontsize="small", ncol=2)
        fig.tight_layout()
        return atomic_write(path, lambda f: fig.savefig(f, format="png"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "sparsities": list(self.sparsities),
            "metrics": {k: list(v) for k, v in self.metrics.items()},
            "sizes": dict(self.sizes),
            "higher_is_better": self.higher_is_better,
        }


def sensitivity(
    model: nn.Module,
    eval_fn: Callable[[nn.Module], float],
    sparsities: Sequence[float] = (0.5, 0.7, 0.9, 0.95),
    layers: Iterable[str] | None = None,
    *,
    criterion: str = "magnitude",
    pattern: str = "unstructured",
    higher_is_better: bool = True,
) -> SensitivityResult:
    """Prunes one layer at a time (on a copy) and evaluates, for each tested sparsity.

    The model is never changed: each layer is pruned on a fresh ``copy.deepcopy``, so
    ``eval_fn`` must evaluate the model it is given, not one captured elsewhere. Costs
    ``1 + len(layers) * len(sparsities)`` calls of ``eval_fn``: keep it small (a few batches).

    Args:
        model: the trained model.
        eval_fn: ``eval_fn(model) -> float``, e.g. accuracy on a held-out batch.
        sparsities: fractions to test.
        layers: module names to test; every prunable layer by default.
        criterion / pattern: as in ``prune_weights_``.
        higher_is_better: False when the metric is a loss.

    Returns:
        A ``SensitivityResult`` (``.table()``, ``.plot(path)``, ``.allocate(target)``).

    Example:
        >>> result = sensitivity(model, lambda m: accuracy(m, val), sparsities=[0.5, 0.9])
        >>> prune_weights_(model, sparsity=result.allocate(0.8, tolerance=0.01))
    """
    check_model(model)
    tested = sorted(check_fraction(f"sparsities[{i}]", s) for i, s in enumerate(sparsities))
    if not tested:
        raise ConfigError("sparsities is empty; pass fractions to test, e.g. [0.5, 0.7, 0.9].")
    if WeightOptions(pattern=pattern).parsed_pattern.kind == "nm":
        raise ConfigError(
            f"pattern {pattern!r} fixes each layer's sparsity, so there is nothing to sweep; "
            "use pattern='unstructured', 'rows' or 'cols'."
        )
    known = prunable_layers(model)
    for name in layers or ():
        if name not in known:
            raise ConfigError(
                f"layers names {name!r}, which is not a prunable layer of the model"
                f"{suggest(name, known)}; see slimtorch.sparsity(model).names."
            )
    probe = WeightOptions(
        sparsity=dict.fromkeys(layers, 0.0) if layers is not None else None,
        criterion=criterion,
        pattern=pattern,
    )
    chosen = selected_layers(model, probe)  # validates names and options up front
    names = list(chosen)
    sizes = {n: int(getattr(m, p).numel()) for n, (m, p) in chosen.items()}
    baseline = float(eval_fn(copy.deepcopy(model)))
    metrics: dict[str, tuple[float, ...]] = {}
    for name in names:
        work = copy.deepcopy(model)
        values = []
        for s in tested:  # ascending: each step composes on the last (nested masks)
            prune_weights_(work, {name: s}, criterion=criterion, pattern=pattern)
            values.append(float(eval_fn(work)))
        metrics[name] = tuple(values)
    return SensitivityResult(baseline, tuple(tested), metrics, sizes, higher_is_better)
