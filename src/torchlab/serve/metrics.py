"""Prometheus text-format metrics, kept in memory by the serving process.

Small on purpose (counters and histograms only), so the server needs no client library;
the exposition format is https://prometheus.io/docs/instrumenting/exposition_formats/.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out, running = [], 0
        for bound, count in zip((*self.buckets, "+Inf"), self.counts, strict=True):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        tail = f"{{{labels}}}" if labels else ""
        return [*out, f"{name}_sum{tail} {self.sum}", f"{name}_count{tail} {self.count}"]


class Metrics:
    """Requests by path and status, request latency, batch sizes, errors by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.queue_depth = 0

    def request(self, path: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[path, status] += 1
            self.latency.setdefault(path, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def batch(self, rows: int) -> None:
        with self._lock:
            self.batch_size.observe(rows)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP torchlab_requests_total HTTP requests by path and status code.",
                "# TYPE torchlab_requests_total counter",
            ]
            for (path, status), n in sorted(self.requests.items()):
                lines.append(f'torchlab_requests_total{{path="{path}",status="{status}"}} {n}')
            lines += [
                "# HELP torchlab_request_seconds Request latency in seconds by path.",
                "# TYPE torchlab_request_seconds histogram",
            ]
            for path, histogram in sorted(self.latency.items()):
                lines += histogram.lines("torchlab_request_seconds", f'path="{path}"')
            lines += [
                "# HELP torchlab_batch_rows Rows per model call (dynamic batching).",
                "# TYPE torchlab_batch_rows histogram",
                *self.batch_size.lines("torchlab_batch_rows"),
                "# HELP torchlab_errors_total Failed requests by kind.",
                "# TYPE torchlab_errors_total counter",
            ]
            for kind, n in sorted(self.errors.items()):
                lines.append(f'torchlab_errors_total{{kind="{kind}"}} {n}')
            lines += [
                "# HELP torchlab_queue_depth Requests waiting for the model.",
                "# TYPE torchlab_queue_depth gauge",
                f"torchlab_queue_depth {self.queue_depth}",
            ]
        return "\n".join(lines) + "\n"
