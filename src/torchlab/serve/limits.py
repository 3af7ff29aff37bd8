"""Bounds a server keeps: on the pixels it decodes (per image, per request and for all
requests at once) and on how long it waits.

A compressed image is small on the wire and large in memory: a PNG of one flat colour,
4000x4000 pixels, is about 55 kB and decodes to 48 MB of bytes, 192 MB as the float32 RGB
pixels that are resized to the model's size. The body limit therefore bounds nothing here;
the pixel counts in the images' headers, read before anything is decoded, do.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from torchlab.errors import DataError

MAX_PIXELS = 16_000_000  # one image: a 16-megapixel photo
MAX_REQUEST_PIXELS = 64_000_000  # one request's images together
MAX_INFLIGHT_PIXELS = 128_000_000  # every request being decoded at once
RETRY_AFTER_S = 1
T = TypeVar("T")


class OverBudget(DataError):
    """A request's images hold more pixels than one request may (413)."""


class Busy(Exception):
    """The images being decoded leave no room for this request's now (503, retry)."""


class PixelBudget:
    """Pixels being decoded, held per request for as long as its images are decoded.

    ``hold`` refuses at once rather than waiting, so a burst of large images is answered
    503 (retry later) instead of queueing work and memory. Thread-safe: requests decode in
    worker threads.

    Args:
        per_request: Most pixels in one request's images.
        in_flight: Most pixels held by all requests together.
    """

    def __init__(
        self, per_request: int = MAX_REQUEST_PIXELS, in_flight: int = MAX_INFLIGHT_PIXELS
    ) -> None:
        self.per_request, self.in_flight = per_request, in_flight
        self.held = 0
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Reserve ``pixels`` while the block runs.

        Raises:
            OverBudget: ``pixels`` is over the per-request limit.
            Busy: Other requests hold too much of the shared budget now.
        """
        if pixels > self.per_request:
            raise OverBudget(
                f"The request's images hold {pixels} pixels in all, over the limit of "
                f"{self.per_request} per request; send fewer or smaller images."
            )
        with self._lock:
            if self.held + pixels > self.in_flight:
                raise Busy(
                    "The server is decoding as many image pixels as it may at once; "
                    f"retry in {RETRY_AFTER_S} s."
                )
            self.held += pixels
        try:
            yield
        finally:
            with self._lock:
                self.held -= pixels


async def within(seconds: float | None, awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result, or TimeoutError after ``seconds`` (None: no limit); a future
    still pending then is cancelled."""
    if sys.version_info >= (3, 11):  # a timer, no extra task or future per call
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover
