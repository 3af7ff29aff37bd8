"""Prometheus metrics of one server, through ``prometheus_client``.

Each app has its own :class:`~prometheus_client.CollectorRegistry`, so several apps in one
process (tests, a process serving two models) count separately. The hot path is a cached
counter increment and a histogram observation per request; gauges (queue depth, pixels
being decoded) are read when ``/metrics`` is scraped, never written per request.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Requests by path and status, request latency, batch sizes, errors by kind, unseen
    categories by column, queue depth, pixels being decoded and the process's memory."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self._requests = Counter(
            "torchlab_requests_total",
            "HTTP requests by path and status code.",
            ["path", "status"],
            registry=registry,
        )
        self._latency = Histogram(
            "torchlab_request_seconds",
            "Request latency in seconds by path.",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._batch = Histogram(
            "torchlab_batch_rows",
            "Rows per model call (dynamic batching).",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self._errors = Counter(
            "torchlab_errors_total", "Failed requests by kind.", ["kind"], registry=registry
        )
        self._unseen = Counter(
            "torchlab_unseen_categories_total",
            "Table cells holding a category not seen in training, by column.",
            ["column"],
            registry=registry,
        )
        self._queue = Gauge(
            "torchlab_queue_depth", "Requests waiting for the model.", registry=registry
        )
        self._decoding = Gauge(
            "torchlab_decoding_pixels", "Pixels of the images being decoded now.", registry=registry
        )
        ProcessCollector(registry=registry)  # process_resident_memory_bytes and friends
        self._counted: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def request(self, path: str, status: int, seconds: float) -> None:
        """Count one answered request (``path`` from a bounded set)."""
        children = self._counted.get((path, status))
        if children is None:  # labels() is a locked lookup: done once per path and status
            children = (self._requests.labels(path, str(status)), self._latency.labels(path))
            self._counted[path, status] = children
        children[0].inc()
        children[1].observe(seconds)

    def error(self, kind: str) -> None:
        self._errors.labels(kind).inc()

    def unseen(self, column: str) -> None:
        self._unseen.labels(column).inc()

    def batch(self, rows: int) -> None:
        self._batch.observe(rows)

    def watch(
        self,
        *,
        queue_depth: Callable[[], float] | None = None,
        decoding: Callable[[], float] | None = None,
    ) -> None:
        """Read the queue depth and the pixels being decoded from these when scraped."""
        if queue_depth is not None:
            self._queue.set_function(queue_depth)
        if decoding is not None:
            self._decoding.set_function(decoding)

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0 when it has none yet), e.g.
        ``value("torchlab_errors_total", kind="timeout")``."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def render(self) -> bytes:
        """The Prometheus text exposition (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
