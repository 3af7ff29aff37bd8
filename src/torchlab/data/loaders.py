"""Loaders with a deterministic, resumable order.

The order of epoch ``e`` depends only on ``(seed, e)``, so a resumed run sees exactly the
batches an uninterrupted one would, starting at the batch where it stopped.

In-memory splits are served by :class:`TensorLoader`, which indexes whole batches out of
tensors already on the device instead of collating sample by sample: for small models
this is most of an epoch's time in a plain ``DataLoader``.

Random augmentation in loader workers draws from a seed of its own per batch, derived from
``(seed, epoch, rank, batch position)``, so it too repeats exactly after a mid-epoch resume
and does not depend on the number of workers.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sized
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from torchlab.data.base import Batch, TensorSplit
from torchlab.distributed import World, shard
from torchlab.errors import TorchlabError
from torchlab.memory import release_freed_memory


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    """The sample order of one epoch: a permutation drawn from ``(seed, epoch)`` alone."""
    if not shuffle:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def local_size(n: int, world: World, pad: bool) -> int:
    """How many of ``n`` samples this rank sees in an epoch (see :func:`shard`)."""
    if not world.distributed:
        return n
    return -(-n // world.size) if pad else len(range(world.rank, n, world.size))


class Loader(Sized):
    """Iterates the batches of one epoch from a given batch onward."""

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        raise NotImplementedError


@dataclass
class TensorLoader(Loader):
    """Whole-batch indexing of in-memory tensors held on the training device."""

    split: TensorSplit
    batch_size: int
    shuffle: bool
    seed: int
    device: torch.device
    drop_last: bool = False
    world: World = field(default_factory=World)
    pad: bool = False  # training pads so every rank has as many batches (see ``shard``)

    def __post_init__(self) -> None:
        self.inputs = self.split.inputs.to(self.device)
        self.target = self.split.target.to(self.device)

    def __len__(self) -> int:
        n = local_size(len(self.inputs), self.world, self.pad)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = epoch_order(len(self.inputs), seed=self.seed, epoch=epoch, shuffle=self.shuffle)
        order = shard(order, self.world, self.pad).to(self.device)
        for i in range(start, len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield Batch(self.inputs[index], self.target[index])


def collate_pairs(samples: list[tuple[Any, Any]]) -> Batch:
    inputs, target = default_collate(samples)
    return Batch(inputs, target)


class SeededBatch(list):
    """The indices of one batch and the seed its augmentation draws from in a worker."""

    seed: int


def seeded(batches: list[list[int]], *, seed: int, epoch: int, world: World,
           skip: int) -> Iterator[SeededBatch]:  # fmt: skip
    """``batches[skip:]``, each carrying a seed fixed by its position in the epoch."""
    base = ((seed * 1_000_003 + epoch) * 1_009 + world.rank) * 1_000_003
    for position in range(skip, len(batches)):
        batch = SeededBatch(batches[position])
        batch.seed = (base + position) % 2**63
        yield batch


@dataclass(frozen=True)
class WorkerError:
    """A torchlab error met in a loader worker, sent back in place of its batch.

    A worker's exception reaches the training process rebuilt from torch's formatted
    traceback (its message becomes the traceback); sent back as a value, the error is
    raised there as itself: one line naming the file and the fix.
    """

    error: TorchlabError


class ErrorsAsBatches:
    """Wraps a collate: an item or a collate that failed in a worker becomes its batch."""

    def __init__(self, collate: Any) -> None:
        self.collate = collate

    def __call__(self, samples: list[Any]) -> Any:
        failed = next((s for s in samples if isinstance(s, WorkerError)), None)
        if failed is not None:
            return failed
        try:
            return self.collate(samples)
        except TorchlabError as exc:
            if get_worker_info() is None:
                raise
            return WorkerError(exc)


class SeededItems(Dataset):
    """Fetches a :class:`SeededBatch`, seeding a worker's random generators from it first.

    Worker processes otherwise draw from one stream per worker across many batches, so which
    batches a worker happened to serve would change the augmentation after a resume. The
    main process keeps its own stream (checkpointed with the run), so it is left alone.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getitems__(self, batch: SeededBatch) -> list[Any]:
        if get_worker_info() is None:
            return [self.dataset[i] for i in batch]
        torch.manual_seed(batch.seed)
        random.seed(batch.seed)
        np.random.seed(batch.seed % 2**32)
        try:
            return [self.dataset[i] for i in batch]
        except TorchlabError as exc:
            return [WorkerError(exc)]


class EpochBatches(Sampler[SeededBatch]):
    """Batches of one epoch in :func:`epoch_order`, skipping the batches already seen."""

    def __init__(self, n: int, batch_size: int, *, seed: int, shuffle: bool, drop_last: bool,
                 world: World, pad: bool) -> None:  # fmt: skip
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.drop_last, self.world, self.pad = drop_last, world, pad
        self.epoch, self.skip = 0, 0

    def batches(self) -> list[list[int]]:
        order = epoch_order(self.n, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle)
        order = shard(order, self.world, self.pad).tolist()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[SeededBatch]:
        return seeded(self.batches(), seed=self.seed, epoch=self.epoch, world=self.world,
                      skip=self.skip)  # fmt: skip

    def __len__(self) -> int:
        return len(self.batches()) - self.skip


class DatasetLoader(Loader):
    """A standard ``DataLoader`` (workers, pinned memory) with a resumable order."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        drop_last: bool,
        num_workers: int,
        pin_memory: bool,
        collate: Any = collate_pairs,
        world: World | None = None,
        pad: bool = False,
    ) -> None:
        self.batch_size = batch_size
        self.seed = seed
        world = world or World()
        n = len(dataset)  # type: ignore[arg-type]
        self.sampler = EpochBatches(
            n, batch_size, seed=seed, shuffle=shuffle, drop_last=drop_last, world=world, pad=pad
        )
        self.size = local_size(n, world, pad)
        self.loader = self._data_loader(dataset, num_workers, pin_memory, collate)

    def _data_loader(self, dataset: Dataset, workers: int, pin: bool, collate: Any) -> DataLoader:
        return DataLoader(
            SeededItems(dataset),
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=pin,
            collate_fn=ErrorsAsBatches(collate),
            persistent_workers=False,
        )

    def __len__(self) -> int:
        drop_last = self.sampler.drop_last
        return self.size // self.batch_size if drop_last else -(-self.size // self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        self.sampler.epoch, self.sampler.skip = epoch, start
        if self.loader.num_workers:  # workers are forked now, from this process
            release_freed_memory()
        for batch in self.loader:
            if isinstance(batch, WorkerError):
                raise batch.error
            yield batch


def default_workers() -> int:
    """Workers for file-backed datasets: leave one core to the training process."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def build_loader(
    split: TensorSplit | Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    device: torch.device,
    drop_last: bool = False,
    num_workers: int | str = "auto",
    pin_memory: bool | str = "auto",
    world: World | None = None,
    collate: Any = None,
) -> Loader:
    """The fastest correct loader for ``split`` on ``device``.

    Under DDP each rank gets its shard; shuffled (training) loaders are padded so every
    rank runs the same number of steps.
    """
    world = world or World()
    pin = device.type == "cuda" if pin_memory == "auto" else bool(pin_memory)
    if hasattr(split, "make_loader"):  # a split that streams (e.g. a Parquet dataset)
        workers = split.auto_workers() if num_workers == "auto" else int(num_workers)
        return split.make_loader(
            batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
            num_workers=workers, pin_memory=pin, world=world, pad=shuffle,
        )  # fmt: skip
    workers = default_workers() if num_workers == "auto" else int(num_workers)
    if isinstance(split, TensorSplit):
        return TensorLoader(split, batch_size, shuffle, seed, device, drop_last, world, pad=shuffle)
    if shuffle and getattr(split, "bucket_lengths", None) is not None:  # e.g. texts
        return BucketLoader(
            split,
            batch_size=batch_size,
            seed=seed,
            drop_last=drop_last,
            num_workers=workers,
            pin_memory=pin,
            collate=collate or collate_pairs,
            world=world,
        )
    return DatasetLoader(
        split,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
        num_workers=workers,
        pin_memory=pin,
        world=world,
        pad=shuffle,
        collate=collate or collate_pairs,
    )


def bucket_batches(
    lengths: torch.Tensor, batch_size: int, *, seed: int, epoch: int, pool: int = 50
) -> list[list[int]]:
    """Batches of samples of similar length, in an order drawn from ``(seed, epoch)`` alone.

    The epoch's permutation is cut into pools of ``pool`` batches; each pool is sorted by
    length and cut into batches, so little of a batch is padding, and the batches are then
    shuffled so lengths do not rise steadily through an epoch.
    """
    order = epoch_order(len(lengths), seed=seed, epoch=epoch, shuffle=True)
    batches: list[list[int]] = []
    span = batch_size * pool
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[torch.sort(lengths[chunk], stable=True).indices]
        batches += [chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size)]
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7_919)
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


class BucketBatchSampler(Sampler[SeededBatch]):
    """Length-bucketed batches of one epoch (see :func:`bucket_batches`), skipping those seen.

    Under DDP each rank takes every ``size``-th batch, the list padded by repeating its
    start so every rank runs the same number of steps.
    """

    def __init__(
        self,
        lengths: Any,
        batch_size: int,
        *,
        seed: int,
        drop_last: bool,
        world: World | None = None,
    ) -> None:
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        self.batch_size, self.seed, self.drop_last = batch_size, seed, drop_last
        self.world = world or World()
        self.epoch, self.skip = 0, 0

    def batches(self, epoch: int) -> list[list[int]]:
        """Every batch this rank sees in ``epoch``, in order."""
        batches = bucket_batches(self.lengths, self.batch_size, seed=self.seed, epoch=epoch)
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.world.distributed:
            if len(batches) % self.world.size:
                batches += batches[: self.world.size - len(batches) % self.world.size]
            batches = batches[self.world.rank :: self.world.size]
        return batches

    def __iter__(self) -> Iterator[SeededBatch]:
        return seeded(self.batches(self.epoch), seed=self.seed, epoch=self.epoch,
                      world=self.world, skip=self.skip)  # fmt: skip

    def __len__(self) -> int:
        return len(self.batches(self.epoch)) - self.skip


class BucketLoader(DatasetLoader):
    """A :class:`DatasetLoader` whose training batches group samples of similar length.

    Used for datasets with a ``bucket_lengths`` attribute (token counts per sample), so
    padded text batches waste little compute; the order still depends on ``(seed, epoch)``
    alone, so a resumed run sees exactly the remaining batches.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        seed: int,
        drop_last: bool,
        num_workers: int,
        pin_memory: bool,
        collate: Any = collate_pairs,
        world: World | None = None,
    ) -> None:
        self.batch_size, self.seed = batch_size, seed
        lengths = dataset.bucket_lengths  # type: ignore[attr-defined]
        self.sampler = BucketBatchSampler(
            lengths, batch_size, seed=seed, drop_last=drop_last, world=world
        )
        self.loader = self._data_loader(dataset, num_workers, pin_memory, collate)

    def __len__(self) -> int:
        return len(self.sampler.batches(0))  # the same count every epoch
