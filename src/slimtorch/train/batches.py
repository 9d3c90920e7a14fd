"""Streams of micro-batches with a position that a checkpoint can store and resume from.

A ``Dataset`` is read in a seeded order: epoch ``e`` uses the permutation of
``torch.randperm(n)`` drawn from a generator seeded with ``(seed, e)``, so any epoch's order
can be rebuilt without replaying the earlier ones. Each step takes the next
``batch_size * world_size`` indices of the permutation (the global batch) and rank ``r`` reads
its ``r``-th slice of them; an incomplete last global batch is dropped. The position is the
number of samples the epoch has consumed on all ranks together, so a run resumes at the same
sample under another world size.

Any other iterable is read as it comes: batch ``k`` of an epoch goes to rank ``k % world``
and the position counts batches. To resume mid-epoch the iterable is iterated again from the
torch RNG state it started the epoch with (a shuffling ``DataLoader`` then draws the same
order) and the consumed batches are skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from ..errors import InputError

_END = object()

__all__ = ["Batch", "DatasetStream", "IterableStream", "Position", "make_stream", "split_batch"]


@dataclass
class Position:
    """Where a stream is: ``offset`` samples (or batches) into epoch ``epoch``."""

    epoch: int = 0
    offset: int = 0


@dataclass
class Batch:
    """One micro-batch, split into the model's inputs and the labels (None without)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    labels: torch.Tensor | None
    size: int


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to(v, device) for v in value)
    return value


def _size(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return int(value.shape[0]) if value.ndim else 1
    items = value.values() if isinstance(value, Mapping) else value
    if isinstance(items, Iterable) and not isinstance(items, str):
        for v in items:
            n = _size(v)
            if n:
                return n
    return len(value) if isinstance(value, Sequence) else 0


def split_batch(batch: Any, device: torch.device) -> Batch:
    """``(inputs, labels)``, ``(inputs,)``, a tensor, or a dict (labels under ``"labels"``).

    ``inputs`` may itself be a tuple (positional inputs) or a dict (keyword inputs).
    """
    labels = None
    if isinstance(batch, torch.Tensor):
        inputs: Any = batch
    elif isinstance(batch, Mapping):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        labels = batch.get("labels")
    elif isinstance(batch, list | tuple) and 1 <= len(batch) <= 2:
        inputs = batch[0]
        labels = batch[1] if len(batch) == 2 else None
    else:
        what = f"a {type(batch).__name__}"
        if isinstance(batch, list | tuple):
            what += f" of {len(batch)} items"
        raise InputError(
            f"a batch is {what}; finetune reads (inputs, labels), (inputs,), a tensor of "
            "inputs, or a dict of keyword inputs with optional 'labels'. Group several inputs "
            "as ((x1, x2), labels)."
        )
    if labels is not None and not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    inputs, labels = _to(inputs, device), _to(labels, device)
    if isinstance(inputs, Mapping):
        args, kwargs = (), dict(inputs)
    elif isinstance(inputs, list | tuple):
        args, kwargs = tuple(inputs), {}
    else:
        args, kwargs = (inputs,), {}
    return Batch(args, kwargs, labels, _size(inputs))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of ``range(n)`` that epoch ``epoch`` reads a Dataset in."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (1 << 63))
    return torch.randperm(n, generator=g)


class DatasetStream:
    """Micro-batches of a map-style ``Dataset`` in the seeded order, sharded over ranks."""

    unit = "samples"

    def __init__(
        self, dataset: Dataset, batch_size: int, rank: int, world: int, seed: int, workers: int
    ) -> None:
        self.dataset, self.batch_size, self.rank, self.world = dataset, batch_size, rank, world
        self.seed, self.workers = seed, workers
        self.n = len(dataset)  # type: ignore[arg-type]
        self.global_batch = batch_size * world
        self.epoch_rng: torch.Tensor | None = None  # unused: the order is rebuilt from the seed

    def per_epoch(self) -> int | None:
        return self.n // self.global_batch

    def _indices(self, epoch: int, offset: int) -> Iterator[list[int]]:
        order = epoch_order(self.n, self.seed, epoch).tolist()
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        for start in range(offset, self.n - self.global_batch + 1, self.global_batch):
            yield order[start + lo : start + hi]

    def iterate(self, pos: Position) -> Iterator[tuple[Any, Position]]:
        """Yields ``(batch, position after it)`` forever, from ``pos`` on."""
        epoch, offset = pos.epoch, pos.offset
        while True:
            loader = DataLoader(
                self.dataset,
                batch_sampler=list(self._indices(epoch, offset)),
                num_workers=self.workers,
                collate_fn=default_collate,
                generator=torch.Generator().manual_seed(self.seed),  # not the global RNG
            )
            for batch in loader:
                offset += self.global_batch
                yield batch, Position(epoch, offset)
            epoch, offset = epoch + 1, 0


class IterableStream:
    """Micro-batches of any iterable of batches: batch ``k`` of an epoch goes to rank
    ``k % world``; a one-shot iterator is refused when a second pass is needed."""

    unit = "batches"

    def __init__(self, data: Iterable[Any], rank: int, world: int) -> None:
        self.data, self.rank, self.world = data, rank, world
        self.epoch_rng: torch.Tensor | None = None

    def per_epoch(self) -> int | None:
        try:
            return len(self.data) // self.world  # type: ignore[arg-type]
        except TypeError:
            return None

    def iterate(self, pos: Position) -> Iterator[tuple[Any, Position]]:
        epoch, offset = pos.epoch, pos.offset
        per_epoch = self.per_epoch()
        if per_epoch is not None and offset >= per_epoch * self.world:
            epoch, offset = epoch + 1, 0  # the checkpoint was taken at the epoch's end
        resuming = offset > 0 and self.epoch_rng is not None
        while True:
            now = torch.get_rng_state()
            if resuming:  # read the epoch in the order it was first read in
                torch.set_rng_state(self.epoch_rng)  # type: ignore[arg-type]
            else:
                self.epoch_rng = now
            iterator = iter(self.data)
            if epoch > pos.epoch and iterator is self.data:
                raise InputError(
                    "data is a one-shot iterator (a generator?) and the run needs a second "
                    "pass over it; pass a list, a DataLoader or a Dataset, or steps= that fit "
                    "in one pass."
                )
            # A shuffling DataLoader draws its order from the RNG on the first next(), so
            # the epoch's RNG state stays until then.
            first = next(iterator, _END)
            if resuming:
                torch.set_rng_state(now)
                resuming = False
            batches = itertools.chain([first], iterator) if first is not _END else iter(())
            group: list[Any] = []
            count = 0
            for k, batch in enumerate(batches):
                if k < offset:
                    continue
                group.append(batch)
                if len(group) == self.world:
                    count += 1
                    offset = k + 1
                    yield group[self.rank], Position(epoch, offset)
                    group = []
            if count == 0 and offset == 0:
                raise InputError(
                    f"data yielded fewer than {self.world} batch(es) in epoch {epoch}; give "
                    "it at least one batch per process."
                )
            epoch, offset = epoch + 1, 0


def make_stream(
    data: Any, batch_size: int, rank: int, world: int, seed: int, workers: int
) -> DatasetStream | IterableStream:
    """The stream that reads ``data``: a ``Dataset`` with ``__len__`` is indexed in the seeded
    order, anything else iterable is read as batches."""
    if isinstance(data, Dataset) and hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        stream = DatasetStream(data, batch_size, rank, world, seed, workers)
        if stream.per_epoch() == 0:
            raise InputError(
                f"the dataset holds {stream.n} samples, fewer than one global batch of "
                f"{stream.global_batch} (batch_size={batch_size} x {world} processes); lower "
                "batch_size."
            )
        return stream
    if isinstance(data, DataLoader) or (
        isinstance(data, Iterable) and not isinstance(data, str | bytes | Mapping)
    ):
        return IterableStream(data, rank, world)
    raise InputError(
        f"data of type {type(data).__name__} is neither a torch Dataset nor an iterable of "
        "batches; pass e.g. slimtorch.train.data.digits('train') or a DataLoader."
    )
