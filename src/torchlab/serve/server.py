"""uvicorn as ``torchlab serve`` runs it, with a time limit on each request's headers and
each answer written in one piece.

uvicorn closes idle keep-alive connections, but once a request's first byte has arrived
nothing bounds how long its headers take: a client sending them a byte at a time holds the
connection (and a file descriptor) forever, before any ASGI middleware is called. The
protocol here adds that bound to uvicorn's own HTTP/1.1 protocol (httptools or h11); the
body's time limit is the :class:`~torchlab.serve.guard.Guard` middleware's. Its transport
is wrapped in :class:`Coalescing`, so that an answer's head and body leave together.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

LOOPBACK = "127.0.0.1"


class HeaderTimeout:
    """Mixin for uvicorn's HTTP protocol classes: each request's headers must arrive within
    ``header_timeout`` seconds of the connection opening or, on a kept-alive connection,
    of the request's first byte. Past it the connection is closed, with a 408 answer when
    part of a request had arrived."""

    header_timeout: float = 10.0
    on_timeout: Callable[[], None] | None = None
    _header_timer: asyncio.TimerHandle | None = None
    _partial = False  # some bytes of the request awaited have arrived

    # uvicorn's protocols set these; declared for readers and type checkers.
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(Coalescing(transport, self.loop))  # type: ignore[misc]
        self._start_header_timer()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle  # a new cycle begins when a request's headers are complete
        if self._header_timer is None and (cycle is None or cycle.response_complete):
            self._start_header_timer()
        self._partial = True
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not cycle:
            self._stop_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _start_header_timer(self) -> None:
        self._partial = False
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._partial:
            if self.on_timeout is not None:
                self.on_timeout()
            self.transport.write(request_timeout(self.header_timeout))
        self.transport.close()


class Coalescing:
    """A transport whose writes in one turn of the event loop go out as one: uvicorn writes
    an answer's head and body separately, two system calls and two TCP segments for a
    small JSON answer; this sends them together, at the end of the turn."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport, self.loop = transport, loop
        self.pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(data)

    def flush(self) -> None:
        if self.pending and not self.transport.is_closing():
            self.transport.write(b"".join(self.pending))
        self.pending.clear()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + sum(map(len, self.pending))

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self.transport, name)


def request_timeout(seconds: float) -> bytes:
    """A whole 408 answer with the documented error body, closing the connection."""
    body = json.dumps(
        {"error": f"The request headers did not arrive within {seconds:g} s; send them at once."}
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def http_protocol(
    seconds: float, on_timeout: Callable[[], None] | None = None, base: type | None = None
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (``base``; by default httptools' when installed, as
    uvicorn picks) with a ``seconds`` limit on each request's headers and coalesced
    writes."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol as base
    fields = {"header_timeout": seconds, "on_timeout": staticmethod(on_timeout)}
    return type(f"Timed{base.__name__}", (HeaderTimeout, base), fields)


def server_config(
    app: Any,
    *,
    host: str = LOOPBACK,
    port: int = 8000,
    log_level: str = "info",
    access_log: bool = False,
    base: type | None = None,
) -> uvicorn.Config:
    """The uvicorn configuration ``torchlab serve`` runs an app of
    :func:`~torchlab.serve.app.create_app` with (its settings and metrics on ``app.state``)."""
    import uvicorn

    settings, metrics = app.state.settings, app.state.metrics
    protocol = http_protocol(
        settings.header_timeout_s, lambda: metrics.error("header_timeout"), base
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,  # one log line per request costs throughput; /metrics counts them
        proxy_headers=access_log,  # a proxy's X-Forwarded-For matters only to the access log
        timeout_keep_alive=5,
        http=protocol,
    )
