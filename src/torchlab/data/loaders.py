"""Loaders with a deterministic, resumable order.

The order of epoch ``e`` depends only on ``(seed, e)``, so a resumed run sees exactly the
batches an uninterrupted one would, starting at the batch where it stopped.

In-memory splits are served by :class:`TensorLoader`, which indexes whole batches out of
tensors already on the device instead of collating sample by sample: for small models
this is most of an epoch's time in a plain ``DataLoader``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sized
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from torchlab.data.base import Batch, TensorSplit
from torchlab.distributed import World, shard


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


class EpochSampler(Sampler[int]):
    """Indices of one epoch in :func:`epoch_order`, skipping samples already seen."""

    def __init__(
        self, n: int, *, seed: int, shuffle: bool, world: World | None = None, pad: bool = False
    ) -> None:
        world = world or World()
        self.n, self.seed, self.shuffle, self.world, self.pad = n, seed, shuffle, world, pad
        self.epoch, self.skip = 0, 0

    def __iter__(self) -> Iterator[int]:
        order = epoch_order(self.n, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle)
        return iter(shard(order, self.world, self.pad)[self.skip :].tolist())

    def __len__(self) -> int:
        return local_size(self.n, self.world, self.pad) - self.skip


def collate_pairs(samples: list[tuple[Any, Any]]) -> Batch:
    inputs, target = default_collate(samples)
    return Batch(inputs, target)


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
        self.sampler = EpochSampler(
            len(dataset),  # type: ignore[arg-type]
            seed=seed,
            shuffle=shuffle,
            world=world,
            pad=pad,
        )
        self.seed = seed
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            drop_last=drop_last,
            num_workers=num_workers,
            pin_memory=pin_memory,
            collate_fn=collate,
            persistent_workers=False,
            generator=torch.Generator(),
        )

    def __len__(self) -> int:
        n = local_size(self.sampler.n, self.sampler.world, self.sampler.pad)
        return n // self.batch_size if self.loader.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        self.sampler.epoch, self.sampler.skip = epoch, start * self.batch_size
        # Worker seeds come from this generator: seed it per epoch so augmentation in
        # workers repeats exactly after a resume.
        self.loader.generator.manual_seed(self.seed * 1_000_003 + epoch)  # type: ignore[union-attr]
        yield from self.loader


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
    if isinstance(split, TensorSplit):
        return TensorLoader(split, batch_size, shuffle, seed, device, drop_last, world, pad=shuffle)
    workers = default_workers() if num_workers == "auto" else int(num_workers)
    pin = device.type == "cuda" if pin_memory == "auto" else bool(pin_memory)
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


class BucketBatchSampler(Sampler[list[int]]):
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

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches(self.epoch)[self.skip :])

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
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            collate_fn=collate,
            persistent_workers=False,
            generator=torch.Generator(),
        )

    def __len__(self) -> int:
        return len(self.sampler.batches(0))  # the same count every epoch

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        self.sampler.epoch, self.sampler.skip = epoch, start
        self.loader.generator.manual_seed(self.seed * 1_000_003 + epoch)  # type: ignore[union-attr]
        yield from self.loader
