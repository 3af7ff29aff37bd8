"""What the server accepts and how it batches: :class:`ServeSettings`, checked once."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torchlab.errors import ConfigError
from torchlab.serve.limits import MAX_INFLIGHT_PIXELS, MAX_PIXELS, MAX_REQUEST_PIXELS

COUNTS = (
    "max_batch",
    "queue_size",
    "max_body_bytes",
    "max_rows",
    "max_pixels",
    "max_request_pixels",
    "max_inflight_pixels",
)
SECONDS = ("timeout_s", "header_timeout_s", "body_timeout_s")


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches and what it accepts.

    Attributes:
        max_batch: Most rows per model call; 1 turns dynamic batching off.
        max_wait_ms: How long the first request of a batch waits for others.
        queue_size: Most requests waiting for the model; more get 503.
        timeout_s: Per-request time limit; a slower answer gets 504.
        max_body_bytes: Largest request body (413 beyond, counted as it streams in).
        max_rows: Most rows or images in one request.
        max_pixels: Most pixels in one image (422 beyond).
        max_request_pixels: Most pixels in all the images of one request (413 beyond).
        max_inflight_pixels: Most pixels being decoded at once over all requests; a request
            that would go over waits for none and gets 503 with ``Retry-After``.
        header_timeout_s: Time for a request's headers to arrive once its first byte has
            (or once the connection opened); the connection is closed with 408 beyond.
        body_timeout_s: Time for a request's whole body to arrive after its headers (408).
        api_key: When set, requests other than health/ready/docs need header ``X-API-Key``.
    """

    max_batch: int = 32
    max_wait_ms: float = 5.0
    queue_size: int = 1024
    timeout_s: float = 10.0
    max_body_bytes: int = 8 * 1024 * 1024
    max_rows: int = 256
    max_pixels: int = MAX_PIXELS
    max_request_pixels: int = MAX_REQUEST_PIXELS
    max_inflight_pixels: int = MAX_INFLIGHT_PIXELS
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    api_key: str | None = None

    def __post_init__(self) -> None:
        for name in COUNTS:
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"Received {name}={getattr(self, name)}; expected a positive integer."
                )
        for name in SECONDS:
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"Received {name}={getattr(self, name)}; expected a positive number."
                )
        if not self.max_wait_ms >= 0:
            raise ConfigError(
                f"Received max_wait_ms={self.max_wait_ms}; expected zero or a positive number."
            )
        if not self.max_pixels <= self.max_request_pixels <= self.max_inflight_pixels:
            raise ConfigError(
                f"Received max_pixels={self.max_pixels}, max_request_pixels="
                f"{self.max_request_pixels}, max_inflight_pixels={self.max_inflight_pixels}; "
                "expected each at most the next (an image must fit a request, a request the "
                "server), so raise the later ones."
            )

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "api_key"}
