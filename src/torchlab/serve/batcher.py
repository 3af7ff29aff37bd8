"""Dynamic batching: concurrent requests are run through the model together.

Each request's rows wait in a bounded queue; one worker takes requests until the batch
holds ``max_batch`` rows or ``max_wait`` has passed since the first, runs the model once in
a worker thread (the event loop keeps accepting requests meanwhile) and hands each caller
its own slice of the outputs. A full queue refuses at once (503); a caller that gives up
(timeout, 504) is skipped; a model error fails only the requests of that batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from torchlab.serve.limits import within
from torchlab.serve.metrics import Metrics
from torchlab.serve.requests import concat, rows


class QueueFull(Exception):
    """The request queue is full; the caller should retry later (503)."""


class ModelFailed(Exception):
    """The model raised on the batch this request was part of (500)."""


@dataclass
class _Pending:
    inputs: Any  # (B, ...) tensor, or a dict of them sharing B
    future: asyncio.Future[torch.Tensor] = field(repr=False)
    rows: int = 0


class DynamicBatcher:
    """Queue requests and run them through ``model`` in batches.

    Args:
        model: Model inputs ``(B, ...)`` -> outputs ``(B, K)``; called in a worker thread.
        max_batch: Most rows per model call (1 turns batching off).
        max_wait: Seconds the first request of a batch waits for others.
        queue_size: Most requests waiting; more are refused with :class:`QueueFull`.
        metrics: Where batch sizes are counted and the queue depth is read from.
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        *,
        max_batch: int = 32,
        max_wait: float = 0.005,
        queue_size: int = 1024,
        metrics: Metrics | None = None,
    ) -> None:
        self.model, self.max_batch, self.max_wait = model, max_batch, max_wait
        self.metrics = metrics or Metrics()
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_size)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torchlab-model")
        self._worker: asyncio.Task[None] | None = None
        self._held: _Pending | None = None
        self.metrics.watch(queue_depth=self.queue.qsize)

    async def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self.executor.shutdown(wait=True)

    async def submit(self, inputs: Any, timeout: float | None = None) -> torch.Tensor:
        """The model's outputs for ``inputs`` (rows of one request).

        Raises:
            QueueFull: Too many requests are waiting.
            TimeoutError: No answer within ``timeout`` seconds (other requests go on).
            ModelFailed: The model raised on this request's batch.
        """
        future: asyncio.Future[torch.Tensor] = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Pending(inputs, future, rows(inputs)))
        except asyncio.QueueFull:
            raise QueueFull from None
        return await within(timeout, future)  # cancelled on timeout: the worker skips it

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self._held is not None:
            item, self._held = self._held, None
            return item
        if timeout is None:
            return await self.queue.get()
        try:  # a request already waiting needs no timer (the common case under load)
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            if timeout <= 0:
                return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except (TimeoutError, asyncio.TimeoutError):
            return None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch: list[_Pending] = []
            size = 0
            first = await self._next(None)
            deadline = loop.time() + self.max_wait
            item: _Pending | None = first
            while item is not None:
                if not item.future.done():  # a caller that timed out is skipped
                    if batch and size + item.rows > self.max_batch:
                        self._held = item  # starts the next batch
                        break
                    batch.append(item)
                    size += item.rows
                if size >= self.max_batch:
                    break
                item = await self._next(max(0.0, deadline - loop.time()))
            if batch:
                await self._execute(batch, size)

    async def _execute(self, batch: list[_Pending], rows: int) -> None:
        self.metrics.batch(rows)
        inputs = concat([item.inputs for item in batch])
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.model, inputs
            )
        except Exception as exc:  # fails this batch only, the server goes on
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(ModelFailed(message))
            return
        start = 0
        for item in batch:
            end = start + item.rows
            if not item.future.done():
                item.future.set_result(outputs[start:end])
            start = end
