"""Helpers of the serving tests: a live server on 127.0.0.1 and a schemathesis fuzz of it."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from typing import Any

import httpx
import numpy as np
import uvicorn
from PIL import Image

from torchlab.serve import server_config


class LiveServer:
    """uvicorn on an ephemeral 127.0.0.1 port in a background thread, configured as
    ``torchlab serve`` configures it (``base``: another uvicorn HTTP protocol class)."""

    def __init__(self, app: Any, base: type | None = None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = server_config(app, port=self.port, log_level="warning", base=base)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        for _ in range(600):  # bounded: 60 s at most
            if self.server.started:
                break
            time.sleep(0.1)
        assert self.server.started, "the server did not start"
        self.client = httpx.Client(base_url=self.url, timeout=60)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(pixels: np.ndarray) -> bytes:
    """A PNG of uint8 pixels (H, W) or (H, W, 3)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """The value of one sample of ``GET /metrics`` (0 when it is not there yet)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def fuzz(client: httpx.Client, *, max_examples: int = 40, **headers: str) -> set[int]:
    """Every operation of the server's OpenAPI schema called with schemathesis-generated
    requests, valid ones and (for POST bodies) invalid ones: none may get a 5xx, and every
    4xx must carry the documented error body. Returns the status codes seen."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_url(f"{client.base_url}/openapi.json", headers=headers)
    failures: list[tuple[str, str, int, str]] = []
    statuses: set[int] = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if operation.method.upper() == "POST":
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @settings(
                max_examples=max_examples,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            @given(case=operation.as_strategy(mode))
            def call(case: Any) -> None:
                response = case.call(headers=headers)
                statuses.add(response.status_code)
                wrong_body = response.status_code >= 400 and "error" not in response.json()
                if response.status_code >= 500 or wrong_body:
                    failures.append(
                        (case.method, case.path, response.status_code, response.text[:300])
                    )

            try:
                call()
            except Unsatisfiable:  # a raw binary body (/predict/image) has no invalid form
                assert mode is GenerationMode.NEGATIVE, operation.path
    assert not failures, failures[:5]
    return statuses
