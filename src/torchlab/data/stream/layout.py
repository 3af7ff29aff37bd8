"""Where each row of a streamed split goes in one epoch: the order, the ranks, the workers.

Rows live in *pieces* (a Parquet row group, a tar shard) whose sizes are known before an
epoch starts. An epoch's order depends only on ``(seed, epoch)`` and the layout (ranks,
workers, batch size), never on timing, so a resumed run skips exactly the batches it has
trained on:

1. The pieces are permuted by ``(seed, epoch)`` and laid end to end.
2. Each rank takes a contiguous run of that sequence; training pads the last ranks from
   the start of the sequence (at most ``world - 1`` rows) so every rank takes as many steps.
3. Each loader worker takes a contiguous run of its rank's batches, reads it in *windows*
   of whole pieces holding at least ``buffer`` rows, shuffles each window by
   ``(seed, epoch, rank, worker, window)`` and cuts it into batches.
4. PyTorch's loader takes batches from its workers in turn, so batch ``p`` of a rank is
   batch ``p // workers`` of worker ``p % workers``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segment:
    """Rows ``start:stop`` of piece ``piece`` (counted within that piece's rows of the split)."""

    piece: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Layout:
    """How one epoch of a split is dealt out.

    Attributes:
        sizes: Rows of the split in each piece, in storage order.
        batch_size: Rows per batch.
        shuffle: Permute pieces and rows (training); otherwise storage order.
        seed: The run's seed.
        rank, world: This process among the DDP ranks.
        workers: Loader worker processes of this rank (0 reads in the main process).
        buffer: The fewest rows shuffled together in one window.
        pad: Pad the ranks to equal rows (training under DDP).
        drop_last: Leave out a rank's last, short batch.
    """

    sizes: tuple[int, ...]
    batch_size: int
    shuffle: bool
    seed: int
    rank: int = 0
    world: int = 1
    workers: int = 0
    buffer: int = 65_536
    pad: bool = False
    drop_last: bool = False

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def rank_rows(self) -> tuple[int, int]:
        """This rank's run ``[start, stop)`` of the epoch's sequence (``stop`` may pass its
        end when padding: those rows wrap around to its start)."""
        if self.pad and self.world > 1:
            each = -(-self.total // self.world)
            return self.rank * each, (self.rank + 1) * each
        each, extra = divmod(self.total, self.world)
        start = self.rank * each + min(self.rank, extra)
        return start, start + each + (self.rank < extra)

    def rows(self) -> int:
        """Rows this rank trains on in an epoch (after ``drop_last``)."""
        start, stop = self.rank_rows()
        rows = stop - start
        return rows // self.batch_size * self.batch_size if self.drop_last else rows

    def __len__(self) -> int:
        """Batches of this rank in an epoch."""
        return -(-self.rows() // self.batch_size)

    def worker_batches(self, worker: int) -> range:
        """The batches of this rank's epoch that ``worker`` reads (a contiguous run)."""
        lanes = max(1, self.workers)
        each, extra = divmod(len(self), lanes)
        start = worker * each + min(worker, extra)
        return range(start, start + each + (worker < extra))

    def order(self, epoch: int) -> list[int]:
        """The pieces of ``epoch`` in reading order."""
        if not self.shuffle:
            return list(range(len(self.sizes)))
        return np.random.default_rng([self.seed, epoch, 1]).permutation(len(self.sizes)).tolist()

    def segments(self, epoch: int, start: int, stop: int) -> list[Segment]:
        """Rows ``[start, stop)`` of the epoch's sequence, as parts of pieces."""
        order, found = self.order(epoch), []
        total = self.total
        while start < stop and total:
            offset = 0
            for piece in order:
                size = self.sizes[piece]
                low, high = max(start, offset), min(stop, offset + size)
                if low < high:
                    found.append(Segment(piece, low - offset, high - offset))
                offset += size
            start, stop = max(0, start - total), stop - total  # wrap around when padding
        return [s for s in found if s.rows]

    def windows(self, epoch: int, worker: int) -> list[list[Segment]]:
        """The windows ``worker`` reads in ``epoch``: whole pieces, at least ``buffer`` rows."""
        batches = self.worker_batches(worker)
        first, _ = self.rank_rows()
        low = first + batches.start * self.batch_size
        high = first + min(batches.stop * self.batch_size, self.rows())
        found, window, rows = [], [], 0
        for segment in self.segments(epoch, low, high):
            window.append(segment)
            rows += segment.rows
            if rows >= self.buffer:
                found.append(window)
                window, rows = [], 0
        return [*found, window] if window else found

    def permutation(self, epoch: int, worker: int, window: int, rows: int) -> np.ndarray | None:
        """How the rows of one window are shuffled; None keeps their order."""
        if not self.shuffle:
            return None
        key = [self.seed, epoch, 2, self.rank, worker, window]
        return np.random.default_rng(key).permutation(rows)

    def skipped(self, worker: int, start: int) -> int:
        """Batches ``worker`` has already served when the rank resumes at batch ``start``."""
        lanes = max(1, self.workers)
        return len(range(worker, start, lanes))
