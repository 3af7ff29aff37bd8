"""ASGI middleware in front of the app: API key, body size and body time limits, metrics.

The body is read here, before FastAPI sees it, so its limits hold for every endpoint: its
size is counted as it arrives (a client that sends no, or a false, Content-Length still
cannot make the server hold more than ``max_body_bytes``) and it must arrive whole within
``body_timeout_s`` of the headers (a client trickling it, or stopping half-way, gets 408
rather than holding a connection forever).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

from torchlab.serve.limits import within
from torchlab.serve.metrics import Metrics
from torchlab.serve.responses import respond
from torchlab.serve.settings import ServeSettings

OPEN_PATHS = {"/health", "/ready", "/docs", "/openapi.json", "/docs/oauth2-redirect"}
CLOSE = {"Connection": "close"}  # a stalled client's connection is not kept for another request


# A POST endpoint answered in front of the app: (Content-Type, body) -> the response, or
# None to leave the request to the app.
Direct = Callable[[str, bytes], Awaitable[Response | None]]


class Guard:
    """API key, request-size and body-time limits, request metrics.

    Args:
        app: The ASGI app behind it.
        metrics: Where requests and refusals are counted.
        settings: The limits and the API key.
        paths: The app's own paths (others are counted as ``other``, bounding labels).
        direct: POST endpoints answered here, once the body is read and checked, rather
            than through the app: the hot path of a server under load, where FastAPI's
            routing, request object and dependency solving cost more than the work (the
            app declares the same endpoints, with the same functions, for its OpenAPI
            schema).
    """

    def __init__(
        self,
        app: Any,
        *,
        metrics: Metrics,
        settings: ServeSettings,
        paths: set[str],
        direct: dict[str, Direct] | None = None,
    ) -> None:
        self.app, self.metrics, self.settings, self.paths = app, metrics, settings, paths
        self.direct = direct or {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, path, status = time.perf_counter(), scope["path"], [500]

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.guarded(scope, receive, send_status)
        finally:
            known = path if path in self.paths else "other"  # bounded label values
            self.metrics.request(known, status[0], time.perf_counter() - started)

    async def guarded(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        key = self.settings.api_key
        if key is not None and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"x-api-key", b"")
            if not secrets.compare_digest(given, key.encode()):
                self.metrics.error("unauthorized")
                await respond(send, 401, "Missing or wrong API key; send header X-API-Key.")
                return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self.too_large(send, limit)
            return
        try:
            body = await within(self.settings.body_timeout_s, self.read_body(receive, limit))
        except (TimeoutError, asyncio.TimeoutError):  # the same class from Python 3.11
            self.metrics.error("body_timeout")
            seconds = self.settings.body_timeout_s
            message = f"The request body did not arrive within {seconds:g} s; send it at once."
            await respond(send, 408, message, CLOSE)
            return
        if body is None:  # the client left
            return
        if len(body) > limit:
            await self.too_large(send, limit)
            return
        data = bytes(body)
        direct = self.direct.get(scope["path"]) if scope["method"] == "POST" else None
        if direct is not None:
            media = headers.get(b"content-type", b"").decode("latin-1")
            # An exception passes on to the app's outermost handler, which answers 500.
            response = await direct(media, data)
            if response is not None:
                await response(scope, receive_nothing, send)
                return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def read_body(receive: Any, limit: int) -> bytearray | None:
        """The whole body, or its first bytes past ``limit``; None when the client left."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > limit or not message.get("more_body", False):
                return body

    async def too_large(self, send: Any, limit: int) -> None:
        self.metrics.error("too_large")
        await respond(
            send, 413, f"The request body is over {limit} bytes; send fewer rows per request."
        )


async def receive_nothing() -> dict[str, Any]:
    """A response sent outside the app reads no more of the request."""
    return {"type": "http.disconnect"}
