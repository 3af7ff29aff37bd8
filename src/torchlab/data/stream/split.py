"""A split read as a stream of pieces (row groups, tar shards), its loader and its position.

:class:`StreamedSplit` deals out the rows of an epoch as :mod:`~torchlab.data.stream.layout`
says; a subclass reads a window of pieces (:meth:`StreamedSplit.read_window`) and says how its
rows are picked, joined and turned into a batch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from torchlab.data.base import Batch
from torchlab.data.loaders import Loader, WorkerError, default_workers
from torchlab.data.stream.layout import Layout, Segment
from torchlab.distributed import World
from torchlab.errors import DataError, TorchlabError
from torchlab.memory import release_freed_memory


@dataclass
class Shared:
    """What every split's loader shares: the worker count, fixed by the first epoch and
    restored from a checkpoint, since the order of batches depends on it."""

    workers: int | None = None


class StreamedSplit(IterableDataset):
    """The rows of one split, read window by window, as batches.

    Args:
        sizes: Rows of the split in each piece, in storage order.
        shared: The worker count all splits of the data share.
        buffer: The fewest rows shuffled together.
    """

    def __init__(self, sizes: tuple[int, ...], shared: Shared, buffer: int) -> None:
        self.sizes, self.shared, self.buffer = sizes, shared, buffer
        self.layout: Layout | None = None
        self.epoch, self.start = 0, 0

    # --- what a subclass says -------------------------------------------------------------

    def read_window(self, window: list[Segment]) -> Any:
        """The window's rows, in storage order: anything :meth:`select` can index."""
        raise NotImplementedError

    def select(self, rows: Any, index: Any) -> Any:
        """``rows[index]`` for an index array or a slice."""
        raise NotImplementedError

    def join(self, parts: list[Any]) -> Any:
        """Rows read in parts, as one."""
        raise NotImplementedError

    def finish(self, rows: Any) -> Batch:
        """One batch's rows as the batch the model takes."""
        return rows

    def auto_workers(self) -> int:
        """Loader workers for ``data.num_workers: auto``."""
        return default_workers()

    # --- the stream -----------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(self.sizes)

    def make_loader(self, **settings: Any) -> StreamLoader:
        """The loader :func:`torchlab.data.loaders.build_loader` returns for this split."""
        return StreamLoader(self, **settings, buffer=self.buffer)

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        # PyTorch's loader asks its workers in turn from worker 0 on, so after a resume at
        # batch ``start`` worker 0 serves the lane whose turn comes next.
        lane = 0 if info is None else (info.id + self.start) % info.num_workers
        try:
            yield from self.batches(lane)
        except TorchlabError as exc:
            if info is None:
                raise
            yield WorkerError(exc)

    def batches(self, worker: int) -> Iterator[Batch]:
        """The batches ``worker`` serves this epoch, from where a resumed epoch starts."""
        layout = self.layout
        if layout is None:
            raise RuntimeError("StreamLoader.epoch sets the layout before reading")
        size = layout.batch_size
        served = layout.skipped(worker, self.start)
        skip = served * size
        held, count = [], 0
        for index, window in enumerate(layout.windows(self.epoch, worker)):
            rows = sum(s.rows for s in window)
            if skip >= rows:  # trained on before a resume: not even read
                skip -= rows
                continue
            part = self.read_window(window)
            order = layout.permutation(self.epoch, worker, index, rows)
            part = self.select(part, order[skip:] if order is not None else slice(skip, None))
            held.append(part)
            count += rows - skip
            skip = 0
            while count >= size:
                rows_now = self.join(held)
                self.seed_batch(layout, worker, served)
                yield self.finish(self.select(rows_now, slice(0, size)))
                held, count, served = (
                    [self.select(rows_now, slice(size, None))],
                    count - size,
                    served + 1,
                )
        if count:
            self.seed_batch(layout, worker, served)
            yield self.finish(self.join(held))

    def seed_batch(self, layout: Layout, worker: int, batch: int) -> None:
        """Seed a worker's random generators (augmentation) from the batch's place alone, so
        they repeat after a resume; the main process keeps its own, checkpointed stream."""
        if get_worker_info() is None:
            return
        key = [layout.seed, self.epoch, layout.rank, worker, batch]
        seed = int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] % 2**63)
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)

    def head(self, count: int) -> Batch:
        """The split's first ``count`` rows in storage order (for reports)."""
        layout = Layout(self.sizes, batch_size=count, shuffle=False, seed=0, buffer=1)
        parts, rows = [], 0
        for window in layout.windows(0, 0):
            if rows >= count:
                break
            parts.append(self.read_window(window))
            rows += sum(s.rows for s in window)
        return self.finish(self.select(self.join(parts), slice(0, count)))


def keep(item: Any) -> Any:
    return item


class StreamLoader(Loader):
    """Batches of a :class:`StreamedSplit`, read by worker processes, resumable at any batch."""

    def __init__(
        self,
        dataset: StreamedSplit,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        drop_last: bool,
        num_workers: int,
        pin_memory: bool,
        world: World,
        pad: bool,
        buffer: int,
    ) -> None:
        self.dataset, self.pin_memory, self.workers = dataset, pin_memory, num_workers
        self.settings = {
            "sizes": dataset.sizes, "batch_size": batch_size, "shuffle": shuffle, "seed": seed,
            "rank": world.rank, "world": world.size, "buffer": buffer, "pad": pad,
            "drop_last": drop_last,
        }  # fmt: skip

    def layout(self) -> Layout:
        """This split's layout; evaluation reads in storage order (in this process), so
        predictions line up with the rows."""
        if not self.settings["shuffle"]:
            return Layout(**self.settings, workers=0)
        if self.dataset.shared.workers is None:
            self.dataset.shared.workers = self.workers
        return Layout(**self.settings, workers=self.dataset.shared.workers)

    def __len__(self) -> int:
        return len(self.layout())

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        layout = self.layout()
        self.dataset.layout, self.dataset.epoch, self.dataset.start = layout, epoch, start
        if not layout.workers:
            yield from self.dataset.batches(0)
            return
        release_freed_memory()  # workers are forked now, from this process
        loader = DataLoader(
            self.dataset,
            batch_size=None,
            num_workers=layout.workers,
            pin_memory=self.pin_memory,
            collate_fn=keep,
            # Its own generator: the workers' seeds would otherwise be drawn from the global
            # one, which a resumed run restores after the epoch's loader was made.
            generator=torch.Generator().manual_seed(layout.seed * 1_000_003 + epoch),
        )
        for batch in loader:
            if isinstance(batch, WorkerError):
                raise batch.error
            yield batch


class StreamPosition:
    """Saves where the stream is in checkpoints: the epoch, the batch and the worker count
    its order depends on; a resumed run reads with the same count, and refuses data that
    changed since.

    A training callback (the hooks of :class:`torchlab.training.callbacks.Callback`, written
    out because data does not import training).
    """

    def __init__(self, shared: Shared, pieces: int, rows: int) -> None:
        self.shared, self.pieces, self.rows = shared, pieces, rows
        self.position = (0, 0)

    def on_fit_start(self, trainer: Any) -> None: ...
    def on_epoch_start(self, trainer: Any) -> None: ...
    def on_train_epoch_end(self, trainer: Any) -> None: ...
    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None: ...
    def on_fit_end(self, trainer: Any) -> None: ...

    def on_train_step_end(self, trainer: Any, step: Any) -> None:
        self.position = (trainer.state.epoch, trainer.state.batch_in_epoch)

    def state_dict(self) -> dict[str, Any]:
        epoch, batch = self.position
        return {"workers": self.shared.workers, "epoch": epoch, "batch": batch,
                "pieces": self.pieces, "rows": self.rows}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        then = (state.get("rows", self.rows), state.get("pieces", self.pieces))
        if then != (self.rows, self.pieces):
            raise DataError(
                f"The streamed data changed since the checkpoint ({then[0]:,} rows in {then[1]} "
                f"pieces then, {self.rows:,} in {self.pieces} now); restore it, or start a new run."
            )
        if state.get("workers") is not None:
            self.shared.workers = state["workers"]
        self.position = (state.get("epoch", 0), state.get("batch", 0))
