"""Compensation: refit the kept weights of layers whose inputs were pruned, from data.

After channels are removed, a layer that read them computes something else. ``compensate_``
refits every dense conv and linear whose input channels shrank, by ridge least squares on
calibration activations (He et al. 2017, ThiNet; FLAP's bias term), so that the pruned layer,
fed what the pruned model gives it, reproduces the original layer's kept outputs on what the
original model gives it:

    min over W', b' of  || X' W'^T + b' - Y ||^2 + lam || W' - W0 ||^2,   Y = X W^T + b

``W0`` is the layer's weight as sliced, so the fit is exact when nothing was removed
(``X' = X`` gives ``W' = W0`` for any ``lam``) and shrinks toward the sliced weights where the
data says little. The intercept ``b'`` carries the mean of what the removed inputs added; a
layer without a bias passes it to the BatchNorm that reads its output (``running_mean``), or
is fit without one. Convs are fit on their unfolded input patches (``F.unfold``).

Layers are refit in the order they run, each on the activations of the model as already refit
upstream: one partial forward of each model per layer and batch (the forward stops at the
layer). Only values change, so nothing is added to the edit log; a ``.slim`` file holds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._forward import Inputs, calibration_batches, eval_mode, run_forward, split_inputs
from .._validate import check_int
from ..errors import ConfigError
from ..report.table import format_table
from .log import edits_of

__all__ = ["CompensationReport", "compensate_"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class CompensationReport:
    """What ``compensate_`` refit.

    Attributes:
        rows: per refit layer: name, input channels kept / original, and the relative error
            of its kept outputs on the calibration rows before and after the refit.
        skipped: layers whose inputs shrank but that were not refit, with the reason.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def table(self) -> str:
        rows = [
            (r["layer"], f"{r['inputs']}/{r['original_inputs']}", r["bias"],
             f"{r['error_before']:.4f}", f"{r['error_after']:.4f}")
            for r in self.rows
        ]  # fmt: skip
        headers = ("layer", "inputs kept", "bias", "error before", "after")
        return format_table(headers, rows, "compensation: relative error of each layer's output")

    def __str__(self) -> str:
        return self.table()


class _Stop(Exception):
    """Raised by a hook to end a forward once the layer of interest has run."""


def _run_until(model: nn.Module, batch: Inputs, module: Any, want: str) -> Any:
    """The input of ``module`` (``want="in"``), or the outputs of a list of modules, in a
    forward of ``model`` that stops as soon as it has them."""
    modules = [module] if want == "in" else list(module)
    got: dict[int, torch.Tensor] = {}

    def pre(m: nn.Module, args: tuple) -> None:
        got[0] = args[0].detach()
        raise _Stop

    def post(m: nn.Module, args: tuple, out: Any, i: int) -> None:
        got.setdefault(i, out.detach())
        if len(got) == len(modules):
            raise _Stop

    if want == "in":
        handles = [module.register_forward_pre_hook(pre)]
    else:
        handles = [
            m.register_forward_hook(lambda m, a, o, i=i: post(m, a, o, i))
            for i, m in enumerate(modules)
        ]
    args, kwargs = split_inputs(batch)
    try:
        model(*args, **kwargs)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    if len(got) != len(modules):
        raise ConfigError("internal error: a layer to refit did not run on this batch")
    return got[0] if want == "in" else [got[i] for i in range(len(modules))]


def _batched(module: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """A conv's unbatched input or output (``(C, H, W)``, ``(C, L)``) with a batch dim."""
    spatial = 2 if isinstance(module, nn.Conv2d) else 1
    return t.unsqueeze(0) if t.dim() == spatial + 1 else t


def _rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the layer multiplies by its flattened weight, one row per output position."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    x = _batched(module, x)
    if isinstance(module, nn.Conv1d):
        x = x.unsqueeze(-2)
        pad, dil, stride, k = (0, *module.padding), (1, *module.dilation), (
            1, *module.stride), (1, *module.kernel_size)  # fmt: skip
    else:
        pad, dil, stride, k = module.padding, module.dilation, module.stride, module.kernel_size
    patches = F.unfold(x, k, dilation=dil, padding=pad, stride=stride)  # [N, C*k*k, L]
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def _outputs(module: nn.Module, y: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        return y.reshape(-1, y.shape[-1])
    y = _batched(module, y)
    return y.reshape(y.shape[0], y.shape[1], -1).transpose(1, 2).reshape(-1, y.shape[1])


def _why_not(module: nn.Module, ref: nn.Module | None, shared: set[int]) -> str | None:
    if ref is None or type(ref) is not type(module):
        return "no layer of the same type and name in the reference model"
    if id(module.weight) in shared:
        return "its weight is tied to another layer's (refitting one would change both)"
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        if module.groups != 1:
            return "a grouped conv (its inputs are pruned with its outputs)"
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return f"padding {module.padding!r} ({module.padding_mode}) is not refit"
    return None


def _kept_outputs(
    model: nn.Module, reference: nn.Module, name: str, module: nn.Module, ref: nn.Module
) -> torch.Tensor | None:
    """Indices of the reference layer's outputs that the layer still computes, from the edit
    log (None where it cannot be told)."""
    idx = torch.arange(ref.weight.shape[0])
    if module.weight.shape[0] == ref.weight.shape[0]:
        return idx
    old, new = edits_of(reference), edits_of(model)
    if new[: len(old)] != old:
        return None
    for edit in new[len(old) :]:
        if edit.get("op") == "prune":
            keep = edit.get("tensors", {}).get(f"{name}.weight", {}).get("0")
            if keep is not None:
                idx = idx[torch.as_tensor(keep, dtype=torch.long)]
    return idx if len(idx) == module.weight.shape[0] else None


def _following_norms(model: nn.Module, batch: Inputs, layers: dict[str, nn.Module]) -> dict:
    """For each layer whose output goes straight into a BatchNorm, that norm."""
    outs: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # keeps ids unique during the forward
    found: dict[str, nn.Module] = {}
    handles = []
    for name, layer in layers.items():

        def post(m: nn.Module, a: tuple, out: Any, name: str = name) -> None:
            if isinstance(out, torch.Tensor):
                outs[id(out)] = name
                keep.append(out)

        handles.append(layer.register_forward_hook(post))
    for norm in model.modules():
        if isinstance(norm, _NORMS) and norm.running_mean is not None:

            def pre(m: nn.Module, a: tuple) -> None:
                if a and id(a[0]) in outs:
                    found.setdefault(outs[id(a[0])], m)

            handles.append(norm.register_forward_pre_hook(pre))
    try:
        run_forward(model, batch)
    finally:
        for h in handles:
            h.remove()
    return found


def _order(model: nn.Module, batch: Inputs, layers: dict[str, nn.Module]) -> list[list[str]]:
    """The layers in the order they first run, those that read one same tensor (q, k and v
    of an attention; a block's first conv and its shortcut) together: one forward gives all
    of them their input."""
    seen: list[tuple[str, int]] = []
    alive: list[torch.Tensor] = []

    def pre(m: nn.Module, a: tuple, name: str) -> None:
        if all(name != n for n, _ in seen) and a and isinstance(a[0], torch.Tensor):
            seen.append((name, id(a[0])))
            alive.append(a[0])

    handles = [
        layer.register_forward_pre_hook(lambda m, a, name=name: pre(m, a, name))
        for name, layer in layers.items()
    ]
    try:
        run_forward(model, batch)
    finally:
        for h in handles:
            h.remove()
    groups: list[list[str]] = []
    last = None
    for name, tid in seen:
        if groups and tid == last:
            groups[-1].append(name)
        else:
            groups.append([name])
        last = tid
    return groups


@torch.no_grad()
def compensate_(
    model: nn.Module,
    reference: nn.Module,
    data: Any,
    *,
    ridge: float = 1e-3,
    max_rows: int = 2048,
    layers: str | Sequence[str] = "pruned",
) -> CompensationReport:
    """Refits, in place, the layers of ``model`` whose input channels were pruned.

    Args:
        model: the pruned model (changed in place: weights, biases, BatchNorm means).
        reference: the model before pruning (not changed); layers are matched by name.
        data: calibration batches, each given as ``example_inputs`` are (a few batches from
            the training set; for a DataLoader of ``(x, y)``: ``[x for x, _ in loader]``).
        ridge: ``lam`` relative to the mean diagonal of ``X'^T X'``.
        max_rows: output positions sampled per batch and layer (convs have many).
        layers: ``"pruned"``: every dense conv and linear whose inputs shrank; ``"all"``:
            every dense conv and linear, also those that only see drifted activations of
            pruned layers upstream; or a list of layer names.

    Returns:
        A ``CompensationReport`` (per layer: error of its outputs before and after).

    Example:
        >>> r = prune_channels(model, x, 0.5)
        >>> report = compensate_(r.model, model, [x1, x2])
    """
    if not ridge >= 0:
        raise ConfigError(f"ridge={ridge!r} must be >= 0 (relative ridge, e.g. 1e-3).")
    check_int("max_rows", max_rows, hint="e.g. 2048")
    batches = calibration_batches(data, "compensate_")
    report = CompensationReport()
    ref_modules = dict(reference.named_modules())
    if isinstance(layers, str) and layers not in ("pruned", "all"):
        raise ConfigError(f"layers={layers!r} is invalid; use 'pruned', 'all' or a list of names.")
    wanted = None if isinstance(layers, str) else set(layers)
    candidates: dict[str, nn.Module] = {}
    seen: set[int] = set()
    shared: set[int] = set()
    for _, p in model.named_parameters(remove_duplicate=False):
        (shared if id(p) in seen else seen).add(id(p))
    for name, module in model.named_modules():
        if not isinstance(module, _LAYERS) or (wanted is not None and name not in wanted):
            continue
        ref = ref_modules.get(name)
        shrank = ref is None or ref.weight.shape[1:] != module.weight.shape[1:]
        if layers == "pruned" and not shrank:
            continue
        why = _why_not(module, ref, shared)
        if why is not None:
            report.skipped[name] = why
            continue
        candidates[name] = module
    if wanted is not None and (missing := wanted - set(candidates) - set(report.skipped)):
        raise ConfigError(
            f"layers {sorted(missing)} are not linear or conv layers of the model whose inputs "
            "match the reference; leave layers='pruned' to refit every one that qualifies."
        )
    if not candidates:
        return report
    with eval_mode(model), eval_mode(reference):
        for batch in batches:  # clear errors for batches that do not fit, up front
            run_forward(reference, batch)
        norms = _following_norms(model, batches[0], candidates)
        for i, names in enumerate(_order(model, batches[0], candidates)):
            kept = {}
            for name in names:
                k = _kept_outputs(model, reference, name, candidates[name], ref_modules[name])
                if k is None:
                    report.skipped[name] = "its kept outputs are not in the edit log"
                else:
                    kept[name] = k
            if kept:
                fits = [_Fit(n, candidates[n], ref_modules[n], kept[n], norms.get(n))
                        for n in kept]  # fmt: skip
                report.rows.extend(_refit(model, reference, batches, fits, ridge, max_rows, i))
    return report


@dataclass
class _Fit:
    """The least-squares system of one layer, accumulated over the calibration batches."""

    name: str
    module: nn.Module
    ref: nn.Module
    kept: torch.Tensor
    norm: nn.Module | None
    gram: torch.Tensor = field(init=False)
    cross: torch.Tensor = field(init=False)
    theta0: torch.Tensor = field(init=False)
    energy: float = 0.0

    def __post_init__(self) -> None:
        module = self.module
        self.intercept = module.bias is not None or self.norm is not None
        w0 = module.weight.detach().reshape(module.weight.shape[0], -1).double()
        self.d = w0.shape[1]
        rows = [w0.t()]
        if self.intercept:
            bias = module.bias
            rows.append(
                bias.detach().double()[None] if bias is not None else w0.new_zeros(1, len(w0))
            )
        self.theta0 = torch.cat(rows)
        self.gram = torch.zeros(len(self.theta0), len(self.theta0), dtype=torch.float64)
        self.cross = torch.zeros_like(self.theta0)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        a = x.double()
        if self.intercept:
            a = torch.cat([a, a.new_ones(a.shape[0], 1)], 1)
        y = y.double()
        self.gram += a.t() @ a
        self.cross += a.t() @ y
        self.energy += float(y.square().sum())

    def error(self, t: torch.Tensor) -> float:
        """Relative error of the kept outputs on the calibration rows with parameters ``t``."""
        sq = float((t * (self.gram @ t)).sum() - 2 * (t * self.cross).sum()) + self.energy
        return (max(sq, 0.0) / max(self.energy, 1e-30)) ** 0.5

    def solve(self, ridge: float) -> torch.Tensor:
        d = self.d
        lam = ridge * float(self.gram.diagonal()[:d].mean()) if d else 0.0
        reg = torch.full((len(self.gram),), lam, dtype=torch.float64)
        if self.intercept:
            reg[d] = 0.0
        reg = reg + 1e-12 * float(self.gram.diagonal().abs().max().clamp_min(1.0))
        eye = torch.diag(reg)
        return torch.linalg.solve(self.gram + eye, self.cross + eye @ self.theta0)

    def write(self, theta: torch.Tensor) -> None:
        weight = self.module.weight
        weight.copy_(theta[: self.d].t().reshape(weight.shape).to(weight.dtype))
        if self.intercept:
            b = theta[self.d]
            if self.module.bias is not None:
                self.module.bias.copy_(b.to(self.module.bias.dtype))
            else:
                self.norm.running_mean.sub_(b.to(self.norm.running_mean.dtype))


def _refit(
    model: nn.Module,
    reference: nn.Module,
    batches: list[Inputs],
    fits: list[_Fit],
    ridge: float,
    max_rows: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Refits layers that read one same tensor: one partial forward of each model per batch."""
    gen = torch.Generator().manual_seed(seed)
    first = fits[0]
    for batch in batches:
        x_in = _run_until(model, batch, first.module, "in")
        outs = _run_until(reference, batch, [f.ref for f in fits], "out")
        x = _rows(first.module, x_in)
        pick = (
            torch.randperm(x.shape[0], generator=gen)[:max_rows] if x.shape[0] > max_rows else None
        )
        x = x if pick is None else x[pick]
        for fit, y in zip(fits, outs):
            y = _outputs(fit.ref, y)[:, fit.kept]
            fit.add(x, y if pick is None else y[pick])
    rows = []
    for fit in fits:
        theta = fit.solve(ridge)
        before, after = fit.error(fit.theta0), fit.error(theta)
        fit.write(theta)
        module = fit.module
        rows.append({
            "layer": fit.name,
            "inputs": int(module.weight.shape[1]),
            "original_inputs": int(fit.ref.weight.shape[1]),
            "bias": "own" if module.bias is not None else "norm" if fit.norm else "none",
            "error_before": before,
            "error_after": after,
        })  # fmt: skip
    return rows
