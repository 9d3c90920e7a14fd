"""``prune_layers``: depth pruning that takes whole blocks out of the model.

Pipeline: trace -> removable blocks (``graph.blocks``) -> scores on calibration data ->
chosen blocks (a count, a MAC target, or a latency measured on this CPU) ->
``slimtorch.edit.delete_block_``. The result is a plain, shallower ``nn.Module``; the input
model is untouched.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..._forward import Inputs, calibration_batches, check_model, copy_model
from ..._validate import check_finite, check_names
from ...edit.log import edits_of
from ...edit.modules import delete_block_, replace_module_
from ...errors import ForwardError, PruneError
from ...graph.blocks import Block, BlockSet, find_blocks
from ...graph.ops import CONVOLUTIONS
from ...graph.trace import ModelGraph, trace
from ...io.spec import remember_origin
from ...measure.analyze import count_macs
from ...measure.latency import benchmark
from ...measure.macs import node_macs
from ..channels.api import PruneResult
from ..channels.solve import measured_ms
from .dilate import restore_receptive_field_
from .options import LayerOptions
from .project import fit_projection, projection_for
from .score import Stand, angular_scores, influence_scores, loss_scores
from .score import _pairs as block_pairs

__all__ = ["prune_layers"]


def prune_layers(
    model: nn.Module,
    example_inputs: Inputs,
    *,
    n: int | None = None,
    target_macs: int | None = None,
    target_latency_ms: float | None = None,
    speedup: float | None = None,
    threads: int = 1,
    data: Any = None,
    score: str = "block_influence",
    blocks: Sequence[str] | None = None,
    restore_receptive_field: bool = False,
) -> PruneResult:
    """Removes whole blocks (residual blocks, transformer layers, same-shape layers).

    Removable blocks are found on a trace of the model: the residual blocks whose input and
    output shapes match (ResNet, MobileNetV2, ConvNeXt, ViT / Swin / BERT layers) or, in a
    model without skips, the same-shape layers of its ``nn.Sequential`` containers (a conv
    with its norm and activation). Each is scored on ``data``; the lowest go. A removed block
    is gone from the module tree (not replaced by a no-op), a Hugging Face
    ``config.num_hidden_layers`` follows, and the removal is recorded for ``.slim``.

    Args:
        model: the trained model (not modified).
        example_inputs: inputs for one traced forward (and for the timings).
        n: how many blocks to remove.
        target_macs: instead, the fewest blocks (in score order) that bring MACs to this.
        target_latency_ms: instead, the latency of one forward on ``example_inputs`` to
            reach, timed on this CPU at ``threads`` against the original in interleaved runs.
        speedup: instead, how many times faster than the original, timed the same way.
        threads: intra-op threads of those timings (1: a single-core device).
        data: calibration batches (each as ``example_inputs`` are) to score blocks on.
        score: ``"block_influence"`` (1 - cos(input, output) per block, ShortGPT),
            ``"angular"`` (angular distance spanned by ``n`` consecutive blocks, Gromov et
            al.) or ``"loss"`` (relative change of the model's output with the block
            skipped: slower, one pass per block, and the most direct).
        blocks: candidate blocks by module name (default: every removable block). A named
            block whose output shape differs from its input's (a conv that widens) is
            replaced by a 1x1 conv or linear fitted by least squares on ``data``; one where no
            such fit exists raises ``PruneError``. With ``blocks`` and no count or target,
            all named blocks go.
        restore_receptive_field: raise the dilation of the stride-1 convs of the nearest
            block that stays (same container) so the receptive field a removed block added
            is kept (its weights are kept, its function changes: fine-tune after).

    Returns:
        A ``PruneResult``: ``.model``, ``.plan["layers"]`` (candidates, scores, removed),
        ``.before`` / ``.after`` params and MACs.

    Example:
        >>> import torchvision
        >>> x = torch.randn(1, 3, 64, 64)
        >>> r = prune_layers(torchvision.models.resnet18(), x, n=2, data=[x])
        >>> sum(len(getattr(r.model, f"layer{i}")) for i in range(1, 5))
        6
    """
    opts = LayerOptions(
        n=n,
        target_macs=target_macs,
        target_latency_ms=target_latency_ms,
        speedup=speedup,
        threads=threads,
        score=score,
        blocks=None if blocks is None else tuple(blocks),
        restore_receptive_field=restore_receptive_field,
    )
    check_model(model)
    check_finite(model, "prune_layers")
    work = remember_origin(copy_model(model))
    graph = trace(work, example_inputs, meta=True)
    cands = _candidates(work, graph, find_blocks(work, graph), opts.blocks)
    convs = {b.name for b in cands if any(graph.nodes[i].packet in CONVOLUTIONS for i in b.ops)}
    everything = opts.blocks is not None and opts.n is None and not _target(opts)
    if opts.n is not None and opts.n > len(cands):
        raise PruneError(
            f"n={opts.n} asks for more blocks than can be removed: {len(cands)} "
            f"({_names(cands)}); ask for at most {len(cands)}, or name other blocks in blocks=."
        )
    batches = (
        None
        if everything and data is None
        else calibration_batches(data, "prune_layers (block scores)")
    )
    layers, fits = _projections(work, cands, convs, batches)
    stand: dict[str, Stand] = dict(layers)
    warnings: list[str] = []
    scores: dict[str, float] = {}
    if everything:
        chosen = list(cands)
        order: Any = None
    elif opts.score == "angular":
        chains = _chains(cands)
        flat = [w for c in chains for k in range(1, len(c) + 1) for w in _windows(c, k)]
        dist = angular_scores(work, batches, flat, convs)
        scores = {"+".join(b.name for b in w): d for w, d in zip(flat, dist)}
        order = _angular_order(flat, dist)
        chosen = []
    else:
        if opts.score == "loss":
            scores = loss_scores(work, batches, cands, stand)
        else:
            scores = influence_scores(work, batches, cands, convs, stand)
        ranked = sorted(cands, key=lambda b: scores[b.name])
        order = lambda k: ranked[:k]  # noqa: E731
        chosen = []
    before_macs = sum(count_macs(graph).values())
    latency: dict[str, Any] = {}
    if order is not None:
        chosen = _choose(work, example_inputs, opts, order, len(cands), graph, layers, latency)
    pruned = copy_model(work)
    dilated: dict[str, list[int]] = {}
    if opts.restore_receptive_field:  # on the names the blocks still have, before removal
        dilated = restore_receptive_field_(pruned, chosen, warnings)
    _remove_(pruned, chosen, layers)
    after = _check_runs(pruned, graph, example_inputs, chosen)
    plan: dict[str, Any] = {
        "options": opts.to_dict(),
        "layers": {
            "candidates": [b.name for b in cands],
            "score": opts.score,
            "scores": scores,
            "removed": [b.name for b in chosen],
            "projections": fits,
            "dilated": dilated,
        },
        "edits": edits_of(pruned)[len(edits_of(work)) :],
    }
    if latency:
        final = measured_ms(pruned, work, example_inputs, opts.threads, latency["original_ms"])
        latency["measured_ms"] = final
        if final > 1.05 * latency["target_ms"]:
            warnings.append(
                f"the pruned model measures {final:.2f} ms against the target "
                f"{latency['target_ms']:.2f} ms: timings vary on a busy machine; measure again "
                "on a quiet one"
            )
        plan["latency"] = latency
    return PruneResult(
        model=pruned,
        plan=plan,
        warnings=warnings,
        before={"params": _params(model, graph), "macs": before_macs},
        after={"params": _params(pruned, after), "macs": sum(count_macs(after).values())},
    )


def _params(model: nn.Module, graph: ModelGraph) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n in graph.used_params)


def _target(opts: LayerOptions) -> bool:
    return any(
        getattr(opts, k) is not None for k in ("target_macs", "target_latency_ms", "speedup")
    )


def _names(blocks: Sequence[Block], limit: int = 6) -> str:
    names = [b.name for b in blocks]
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "") or "none"


def _candidates(
    model: nn.Module, graph: ModelGraph, bset: BlockSet, names: Sequence[str] | None
) -> list[Block]:
    """The default removable blocks, or the named ones (each a unit or a module that ran)."""
    if names is None:
        if not bset.default:
            why = "; ".join(f"{k}: {v}" for k, v in bset.skipped.items())
            raise PruneError(
                "found no removable block: no residual block with equal input and output "
                "shapes and no same-shape layer in an nn.Sequential / nn.ModuleList"
                f"{' (' + why + ')' if why else ''}. Name the blocks with blocks=[...]; a "
                "block that changes the width is then replaced by a fitted 1x1 projection."
            )
        return list(bset.default)
    known = bset.by_name()
    out = []
    for name in names:
        block = known.get(name) or _module_block(model, graph, name)
        out.append(block)
    for a in out:
        for b in out:
            if a is not b and any(m.startswith(o + ".") for m in b.members for o in a.members):
                raise PruneError(f"blocks names {a.name!r} and {b.name!r}, one inside the other")
    return out


def _module_block(model: nn.Module, graph: ModelGraph, name: str) -> Block:
    """A named module that is not a unit of a container: removable if it ran once."""
    modules = dict(model.named_modules())
    if name not in modules or not name:
        check_names([name], [n for n in modules if n], "blocks")
    call = graph.calls.get(name)
    if call is None or call.count != 1 or call.in_tid is None or call.out_tid is None:
        raise PruneError(
            f"block {name!r} cannot be removed: it "
            + ("did not run in the traced forward" if call is None else "is not one call of a "
               "tensor to a tensor (it ran more than once, or takes or returns no tensor)")
            + "; name a block that runs once, e.g. one of the model's residual blocks."
        )  # fmt: skip
    ops = tuple(i for i, node in enumerate(graph.nodes) if node.module.startswith(name))
    return Block(
        name=name,
        members=(name,),
        container=name.rpartition(".")[0],
        index=0,
        in_shape=graph.tensors[call.in_tid].shape,
        out_shape=graph.tensors[call.out_tid].shape,
        residual=False,
        in_tid=call.in_tid,
        out_tid=call.out_tid,
        ops=ops,
    )


def _projections(
    work: nn.Module, cands: Sequence[Block], convs: set[str], batches: list[Inputs] | None
) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """For each candidate that changes the shape, a 1x1 conv / linear fitted to it."""
    layers: dict[str, nn.Module] = {}
    for b in cands:
        if b.same_shape:
            continue
        layer = projection_for(b, b.name in convs)
        if layer is None:
            raise PruneError(
                f"block {b.name!r} maps {b.in_shape} to {b.out_shape}: no identity, 1x1 conv "
                "or linear layer can stand in for it, so its removal cannot be made "
                "shape-safe; name a block whose input and output differ in channels (and "
                "stride) only."
            )
        layers[b.name] = layer.to(next(work.parameters()).dtype)
    if not layers:
        return {}, {}
    if batches is None:
        batches = calibration_batches(None, f"the projection that replaces {_names(cands)}")
    fits = {}
    for name, layer in layers.items():
        one = {name: next(b for b in cands if b.name == name)}
        pairs = ((i[name], o[name]) for i, o in block_pairs(work, batches, one, one))
        fits[name] = {"type": type(layer).__name__, "fit_error": fit_projection(layer, pairs)}
    return layers, fits


def _chains(cands: Sequence[Block]) -> list[list[Block]]:
    """Maximal runs of candidates where each one's output is the next one's input."""
    chains: list[list[Block]] = []
    by_input = {b.in_tid: b for b in cands}
    starts = [b for b in cands if not any(c.out_tid == b.in_tid for c in cands)]
    for b in starts:
        chain = [b]
        while chain[-1].out_tid in by_input:
            chain.append(by_input[chain[-1].out_tid])
        chains.append(chain)
    return chains


def _windows(chain: list[Block], k: int) -> list[list[Block]]:
    return [chain[i : i + k] for i in range(len(chain) - k + 1)]


def _angular_order(flat: list[list[Block]], dist: list[float]) -> Any:
    """k -> the k consecutive blocks spanning the least angular distance."""

    def order(k: int) -> list[Block]:
        windows = [(d, w) for w, d in zip(flat, dist) if len(w) == k]
        if not windows:
            longest = max(len(w) for w in flat)
            raise PruneError(
                f"score='angular' removes consecutive blocks, and the longest run of "
                f"consecutive removable blocks has {longest}; ask for at most {longest}, or "
                "use score='block_influence'."
            )
        return min(windows, key=lambda t: t[0])[1]

    return order


def _estimate_macs(base: int, graph: ModelGraph, chosen: Sequence[Block], layers: dict) -> int:
    """MACs after removing ``chosen``: their ops go, a projection's 1x1 layer comes in (each
    output element costs its input channels)."""
    gone = sum(node_macs(graph, graph.nodes[i]) for b in chosen for i in b.ops)
    added = sum(
        math.prod(b.out_shape) * layers[b.name].weight.shape[1] for b in chosen if b.name in layers
    )
    return base - gone + added


def _choose(
    work: nn.Module,
    example_inputs: Inputs,
    opts: LayerOptions,
    order: Any,
    count: int,
    graph: ModelGraph,
    layers: dict[str, nn.Module],
    latency: dict[str, Any],
) -> list[Block]:
    """The blocks to remove: ``order(n)``, or the smallest ``k`` whose ``order(k)`` meets a
    MAC or measured-latency target."""
    if opts.n is not None:
        return order(opts.n)
    available = [k for k in range(1, count + 1) if _try(order, k) is not None]
    if opts.target_macs is not None:
        base = sum(count_macs(graph).values())
        if base <= opts.target_macs:
            return []
        for k in available:
            if _estimate_macs(base, graph, order(k), layers) <= opts.target_macs:
                return order(k)
        deepest = _estimate_macs(base, graph, order(available[-1]), layers)
        raise PruneError(
            f"target_macs={opts.target_macs:,} cannot be reached by removing blocks: the model "
            f"has {base:,} MACs and removing all {available[-1]} removable blocks leaves "
            f"{deepest:,}. Raise the target, or prune channels as well (prune_channels)."
        )
    base_ms = benchmark(work, example_inputs, opts.threads, warmup=3, repeats=15).median_ms
    target = opts.target_latency_ms if opts.speedup is None else base_ms / opts.speedup
    latency.update(threads=opts.threads, original_ms=base_ms, target_ms=target, steps=[])
    if base_ms <= target:
        return []

    def ms_at(k: int) -> float:
        candidate = copy_model(work)
        _remove_(candidate, order(k), layers)
        ms = measured_ms(candidate, work, example_inputs, opts.threads, base_ms)
        latency["steps"].append({"blocks": k, "ms": ms})
        return ms

    lo, hi = 0, len(available) - 1
    deepest = ms_at(available[hi])
    if deepest > target:
        what = f"speedup={opts.speedup:g}" if opts.speedup else f"target_latency_ms={target:g}"
        raise PruneError(
            f"{what} cannot be reached by removing blocks on this CPU at {opts.threads} "
            f"thread(s): the model takes {base_ms:.2f} ms and removing all "
            f"{available[hi]} removable blocks still takes {deepest:.2f} ms (target "
            f"{target:.2f} ms). Raise the target, or prune channels as well (prune_channels)."
        )
    while lo < hi:  # the fewest blocks that meet the target
        mid = (lo + hi) // 2
        if ms_at(available[mid]) <= target:
            hi = mid
        else:
            lo = mid + 1
    return order(available[hi])


def _try(order: Any, k: int) -> list[Block] | None:
    try:
        return order(k)
    except PruneError:
        return None


def _path_key(name: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"\.", name))


def _remove_(model: nn.Module, chosen: Sequence[Block], layers: dict[str, nn.Module]) -> None:
    """Removes the chosen blocks from ``model`` through the edit layer, last first (so the
    names of a ``ModuleList`` that renumbers stay valid for the removals still to come)."""
    steps: list[tuple[str, Block, int]] = []
    for b in chosen:
        for i, m in enumerate(b.members):
            steps.append((m, b, i))
    for member, block, i in sorted(steps, key=lambda s: _path_key(s[0]), reverse=True):
        why = {"block": block.name}
        if i == 0 and block.name in layers:
            replace_module_(model, member, copy_model(layers[block.name]), why=why)
        else:
            delete_block_(model, member, why=why)


def _check_runs(
    pruned: nn.Module, graph: ModelGraph, example_inputs: Inputs, chosen: Sequence[Block]
) -> ModelGraph:
    """The pruned model's trace, after checking that it runs and returns the same shapes."""
    try:
        after = trace(pruned, example_inputs, meta=True)
    except ForwardError as exc:
        raise PruneError(
            f"removing {_names(chosen)} breaks the model's forward ({exc}); leave those blocks "
            "out of blocks=, or name blocks whose input and output shapes match."
        ) from exc
    shapes = [[g.tensors[t].shape for t in g.outputs] for g in (graph, after)]
    if shapes[0] != shapes[1]:
        raise PruneError(
            f"removing {_names(chosen)} changes the model's output shapes from {shapes[0]} to "
            f"{shapes[1]}; name blocks whose input and output shapes match."
        )
    return after
