"""``PrunableShuffleStage``: a ShuffleNetV2 stage with its channel shuffles folded away.

torchvision's ShuffleNetV2 block halves its input (``chunk``), runs one half through a
branch, concatenates and shuffles (``channel_shuffle(x, 2)``). The code ties every channel
index to others, so no channel between blocks can be removed while that code runs. But a
shuffle followed by a chunk takes a *prefix* of every part it interleaved, so across a stage
each branch's output rows are read in contiguous ranges: its *pieces*. This stage keeps its
channels as a list of pieces: a branch ends in one BatchNorm per piece
(``PieceBatchNorm``), a later branch reads the concatenation of the pieces it needs (its
first conv's input columns permuted to match), and the stage returns its pieces
concatenated (the next layer's input columns permuted to match, see ``from_torchvision``).
Piece sizes are read off the BatchNorms when it runs, so channel pruning may keep any number
of each piece, and a pruned stage is still a plain module.

Shape:
    ``(B, C_in, H, W)`` -> ``(B, C_out, H / 2, W / 2)``.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ._args import check_positive
from ._registry import register_module

__all__ = ["PieceBatchNorm", "PrunableShuffleStage", "shuffle_routes"]

Label = tuple[int, int]  # (producer, row): producer 0 is the first block's branch1


def _shuffle2(labels: list[Label]) -> list[Label]:
    """``channel_shuffle(x, 2)`` on channel labels: output ``2j + g`` is input ``g*C/2 + j``."""
    half = len(labels) // 2
    return [labels[g * half + j] for j in range(half) for g in range(2)]


def shuffle_routes(half: int, repeats: int) -> dict[str, Any]:
    """Where every channel of a torchvision ShuffleNetV2 stage comes from and goes.

    Producer 0 is the first block's ``branch1``, producer ``k + 1`` the ``branch2`` of block
    ``k``; each makes ``half`` rows. Returns ``pieces`` (``[producer, start, stop]`` in
    order), ``reads`` (for block ``k >= 1``, the labels of its branch input in torchvision's
    order), and ``out`` (the labels of the stage output in torchvision's order).
    """
    labels = _shuffle2([(0, r) for r in range(half)] + [(1, r) for r in range(half)])
    reads: list[list[Label]] = [[]]
    cuts: dict[int, set[int]] = {p: {0, half} for p in range(repeats + 1)}
    for k in range(1, repeats):
        keep, branch = labels[:half], labels[half:]
        reads.append(branch)
        rows: dict[int, list[int]] = {}
        for p, r in branch:
            rows.setdefault(p, []).append(r)
        for p, rs in rows.items():
            if rs != list(range(rs[0], rs[0] + len(rs))):
                raise ConfigError("a branch reads rows that are not contiguous; no twin")
            cuts[p] |= {rs[0], rs[0] + len(rs)}
        labels = _shuffle2(keep + [(k + 1, r) for r in range(half)])
    pieces = []
    for p in range(repeats + 1):
        bounds = sorted(cuts[p])
        pieces += [[p, a, b] for a, b in itertools.pairwise(bounds)]
    return {"pieces": pieces, "reads": reads, "out": labels}


def _piece_of(pieces: list[list[int]], label: Label) -> int:
    p, r = label
    return next(i for i, (q, a, b) in enumerate(pieces) if q == p and a <= r < b)


@register_module
class PieceBatchNorm(nn.Module):
    """BatchNorm (and ReLU) over consecutive channel ranges, returned as separate tensors.

    Args:
        sizes: channels of each range, in order.
        eps / momentum: as ``nn.BatchNorm2d``.
        relu: apply ReLU to each range.
    """

    def __init__(
        self, sizes: list[int], eps: float = 1e-5, momentum: float | None = 0.1, relu: bool = True
    ) -> None:
        super().__init__()
        check_positive(**{f"sizes[{i}]": s for i, s in enumerate(sizes)})
        self.norms = nn.ModuleList(nn.BatchNorm2d(s, eps, momentum) for s in sizes)
        self.relu = bool(relu)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        parts = x.split([n.num_features for n in self.norms], 1)
        out = [norm(p) for norm, p in zip(self.norms, parts)]
        return [F.relu(p) for p in out] if self.relu else out

    def config(self) -> dict[str, Any]:
        first = self.norms[0]
        return {
            "sizes": [n.num_features for n in self.norms],
            "eps": first.eps,
            "momentum": first.momentum,
            "relu": self.relu,
        }


def _branch(cin: int, mid: int, stride: int, sizes: list[int], first_1x1: bool) -> nn.Sequential:
    """torchvision's branch layout, its last BatchNorm + ReLU split into pieces."""
    tail = [
        nn.Conv2d(mid if first_1x1 else cin, mid, 1, bias=False),
        PieceBatchNorm(sizes),
    ]
    dw_ch = mid if first_1x1 else cin
    depthwise = [
        nn.Conv2d(dw_ch, dw_ch, 3, stride, 1, groups=dw_ch, bias=False),
        nn.BatchNorm2d(dw_ch),
    ]
    if not first_1x1:  # branch1: depthwise, then 1x1
        return nn.Sequential(*depthwise, *tail)
    head = [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True)]
    return nn.Sequential(*head, *depthwise, *tail)


@register_module
class PrunableShuffleStage(nn.Module):
    """One ShuffleNetV2 stage (a stride-2 block, then ``repeats - 1`` stride-1 blocks),
    computing what torchvision's computes, with every channel prunable.

    Args:
        in_channels: input width.
        out_channels: output width (each branch makes half of it).
        repeats: blocks in the stage, the first with stride 2.
    """

    def __init__(self, in_channels: int, out_channels: int, repeats: int) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, out_channels=out_channels, repeats=repeats)
        if out_channels % 2:
            raise ConfigError(f"out_channels={out_channels} must be even (two branches)")
        self.in_channels, self.out_channels, self.repeats = in_channels, out_channels, repeats
        half = out_channels // 2
        routes = shuffle_routes(half, repeats)
        pieces = routes["pieces"]
        self.owned = [[i for i, pc in enumerate(pieces) if pc[0] == p] for p in range(repeats + 1)]
        sizes = [[pieces[i][2] - pieces[i][1] for i in ids] for ids in self.owned]
        self.reads = [sorted({_piece_of(pieces, lb) for lb in r}) for r in routes["reads"]]
        read = {i for ids in self.reads for i in ids}
        self.out = [i for i in range(len(pieces)) if i not in read]
        self.branch1 = _branch(in_channels, half, 2, sizes[0], first_1x1=False)
        self.branches = nn.ModuleList(
            [_branch(in_channels, half, 2, sizes[1], first_1x1=True)]
            + [_branch(half, half, 1, sizes[k + 1], first_1x1=True) for k in range(1, repeats)]
        )
        self._routes = routes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state: list[torch.Tensor | None] = [None] * sum(len(ids) for ids in self.owned)
        for producer, branch in enumerate((self.branch1, *self.branches)):
            reads = self.reads[producer - 1] if producer >= 2 else None
            inp = x if reads is None else torch.cat([state[i] for i in reads], 1)
            for i, t in zip(self.owned[producer], branch(inp)):
                state[i] = t
        return torch.cat([state[i] for i in self.out], 1)

    # -- from torchvision ---------------------------------------------------------------
    def output_order(self) -> list[int]:
        """``order[t]``: the channel of torchvision's stage output that channel ``t`` holds."""
        pieces, labels = self._routes["pieces"], self._routes["out"]
        where = {lb: j for j, lb in enumerate(labels)}
        return [where[(p, r)] for i in self.out for p, a, b in [pieces[i]] for r in range(a, b)]

    def _input_order(self, block: int) -> list[int]:
        """For block ``block >= 1``, the position in torchvision's branch input of each
        channel of this stage's branch input."""
        pieces, labels = self._routes["pieces"], self._routes["reads"][block]
        where = {lb: j for j, lb in enumerate(labels)}
        ids = self.reads[block]
        return [where[(p, r)] for i in ids for p, a, b in [pieces[i]] for r in range(a, b)]

    @classmethod
    def from_torchvision(
        cls, stage: nn.Sequential, input_order: list[int] | None = None
    ) -> PrunableShuffleStage:
        """The exact twin of a trained torchvision ShuffleNetV2 stage (weights copied).

        Args:
            stage: ``model.stage2`` (or 3, 4): ``InvertedResidual`` blocks, stride 2 first.
            input_order: ``order[t]``, the torchvision channel that input channel ``t``
                holds (``output_order()`` of the previous twin stage); None for the same
                order as torchvision's.
        """
        blocks = list(stage)
        first = blocks[0] if blocks else None
        if (
            first is None
            or getattr(first, "stride", None) != 2
            or len(getattr(first, "branch1", ())) != 5
            or any(getattr(b, "stride", None) != 1 or len(b.branch1) for b in blocks[1:])
            or any(len(getattr(b, "branch2", ())) != 8 for b in blocks)
        ):
            raise ConfigError(
                "not a torchvision ShuffleNetV2 stage (a stride-2 block, then stride-1 blocks)"
            )
        cin = first.branch1[0].in_channels
        half = first.branch2[-3].out_channels
        twin = cls(cin, 2 * half, len(blocks))
        order = torch.as_tensor(input_order if input_order is not None else range(cin))
        with torch.no_grad():
            b1 = first.branch1
            _copy_seq(twin.branch1[:2], b1[:2], rows=order)
            _copy_seq(twin.branch1[2:3], b1[2:3], cols=order)
            _copy_pieces(twin.branch1[3], b1[3])
            for k, (mine, theirs) in enumerate(zip(twin.branches, (b.branch2 for b in blocks))):
                cols = order if k == 0 else torch.as_tensor(twin._input_order(k))
                _copy_seq(mine[:1], theirs[:1], cols=cols)
                _copy_seq(mine[1:6], theirs[1:6])
                _copy_pieces(mine[6], theirs[6])
        return twin.train(stage.training)

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "repeats": self.repeats,
        }

    def extra_repr(self) -> str:
        return f"repeats={self.repeats}, pieces={sum(len(ids) for ids in self.owned)}"


def _copy_seq(
    mine: nn.Module,
    theirs: nn.Module,
    rows: torch.Tensor | None = None,
    cols: torch.Tensor | None = None,
) -> None:
    """Copies parameters and buffers, optionally permuting dim 0 (``rows``) or dim 1."""
    src = dict(theirs.state_dict())
    for key, dst in mine.state_dict().items():
        value = src[key]
        if rows is not None and value.dim() >= 1:
            value = value.index_select(0, rows)
        if cols is not None and value.dim() >= 2:
            value = value.index_select(1, cols)
        dst.copy_(value)


def _copy_pieces(mine: PieceBatchNorm, bn: nn.BatchNorm2d) -> None:
    start = 0
    for norm in mine.norms:
        n = norm.num_features
        for key, dst in norm.state_dict().items():
            value = bn.state_dict()[key]
            dst.copy_(value[start : start + n] if value.dim() else value)
        norm.eps, norm.momentum = bn.eps, bn.momentum
        start += n
