"""What bounds a server's memory and connections, over real HTTP on 127.0.0.1: pixel budgets
per request and in flight, decoding off the event loop, decompression bombs, header and body
time limits (raw sockets), the one error body for FastAPI's own errors, and per-app metrics."""

from __future__ import annotations

import json
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

import torchlab
from serving import LiveServer, b64, metric, png
from torchlab.engine.predict import load_predictor
from torchlab.serve import ServeSettings, create_app

MEGA = 1_000_000
BUDGETS = ServeSettings(
    max_pixels=100 * MEGA, max_request_pixels=100 * MEGA, max_inflight_pixels=100 * MEGA
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    small = {"data.source.per_class": 5, "model.channels": [4, 8], "baseline": None}
    overrides = {"trainer.max_epochs": 1, "trainer.progress": "none", **small}
    return torchlab.train("digits", overrides, output_dir=tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def predictor(run) -> Any:  # type: ignore[no-untyped-def]
    return load_predictor(run.dir)


@pytest.fixture(scope="module")
def server(predictor) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with LiveServer(create_app(predictor, BUDGETS)) as client:
        yield client


@pytest.fixture(scope="module")
def flat() -> str:
    """A 4000x4000 PNG of one grey: 16 M pixels in a few kB."""
    return b64(png(np.full((4000, 4000), 200, np.uint8)))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none (a bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_large_images_are_decoded_off_the_event_loop_within_budgets(server, flat) -> None:  # type: ignore[no-untyped-def]
    answers: list[httpx.Response] = []
    big = threading.Thread(
        target=lambda: answers.append(server.post("/predict", json={"images": [flat] * 6}))
    )
    big.start()
    seen = []  # what the server answered while those 96 M pixels were being decoded
    while big.is_alive() and not seen:
        if metric(server, "torchlab_decoding_pixels") == 96 * MEGA:
            health = server.get("/health")
            busy = server.post("/predict", json={"images": [flat]})  # 16 M more: over 100 M
            if metric(server, "torchlab_decoding_pixels") == 96 * MEGA:  # still decoding
                seen = [health, busy]
    big.join()
    assert seen, "no request was answered while the large one was being decoded"
    health, busy = seen
    assert health.json() == {"status": "ok"}
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert "retry in 1 s" in busy.json()["error"]
    assert answers[0].status_code == 200 and len(answers[0].json()["predictions"]) == 6
    over = server.post("/predict", json={"images": [flat] * 7})
    assert over.status_code == 413
    assert over.json() == {
        "error": "The request's images hold 112000000 pixels in all, over the limit of "
        "100000000 per request; send fewer or smaller images."
    }
    files = [("files", (f"{i}.png", png(np.full((4000, 4000), 9, np.uint8)))) for i in range(7)]
    assert server.post("/predict/upload", files=files).status_code == 413
    assert metric(server, "torchlab_decoding_pixels") == 0
    assert metric(server, "torchlab_errors_total", kind="busy") >= 1


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (10_000, 10_000, "Image 1 (from 0) has 10000x10000 pixels, over the limit of 89478485"),
        (20_000, 10_000, "Image 1 (from 0) has over 178956970 pixels, over the limit of 89478485"),
    ],
)
def test_a_decompression_bomb_is_named_over_the_pixel_limit(server, width, height, message) -> None:  # type: ignore[no-untyped-def]
    """Over Pillow's own limit (``Image.MAX_IMAGE_PIXELS``, here below ``max_pixels``)."""
    small = b64(png(np.zeros((8, 8), np.uint8)))
    answer = server.post("/predict", json={"images": [small, b64(png_header(width, height))]})
    assert answer.status_code == 422
    assert message in answer.json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"images": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nests arrays or objects too deeply"),
        (b'{"images": ["\xff\xfe"]}', "is not valid UTF-8"),
        (b'{"images": [' + b"7" * 5000 + b"]}", "an integer with too many digits"),
        (b'{"images": [', "is not valid JSON"),
    ],
)
def test_unreadable_bodies_get_400_with_the_error_body(server, body, message) -> None:  # type: ignore[no-untyped-def]
    answer = server.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error"} and message in answer.json()["error"]


def test_fastapis_own_errors_get_the_error_body(server) -> None:  # type: ignore[no-untyped-def]
    missing = server.get("/predictions")
    assert missing.status_code == 404
    assert missing.json() == {"error": "There is no endpoint /predictions; GET /docs lists them."}
    wrong = server.get("/predict")
    assert wrong.status_code == 405
    assert wrong.json() == {"error": "GET is not allowed on /predict; use POST."}
    form = server.post(
        "/predict/upload",
        content=b"--x\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert 400 <= form.status_code < 500 and "error" in form.json(), form.text


# --- connections: raw sockets against the real server -------------------------------------


@pytest.fixture(scope="module", params=[HttpToolsProtocol, H11Protocol], ids=["httptools", "h11"])
def impatient(request, predictor) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    settings = ServeSettings(header_timeout_s=0.5, body_timeout_s=0.5)
    live = LiveServer(create_app(predictor, settings), base=request.param)
    with live:
        yield live


def trickle(sock: socket.socket, data: bytes) -> bool:
    """Send ``data`` a byte every 50 ms until the server answers or closes; whether it
    did so before all of ``data`` was sent."""
    for byte in data:
        if select.select([sock], [], [], 0.05)[0]:
            return True
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # the server closed the connection
            return True
    return False


def read_all(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):  # until the server closes (socket timeout: a hang guard)
        received += chunk
    return received


def error_of(answer: bytes) -> str:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    return json.loads(body)["error"]


def test_slow_headers_get_408_and_the_connection_closed(impatient) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as sock:
        endless = b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400
        assert trickle(sock, endless), "the server waited for 20 s of headers"
        assert "headers did not arrive within 0.5 s" in error_of(read_all(sock))
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive, then slow
        assert b'{"status":"ok"}' in sock.recv(65536)
        assert trickle(sock, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400)
        assert "headers did not arrive" in error_of(read_all(sock))
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as sock:
        assert read_all(sock) == b""  # silent: closed without an answer
    assert metric(impatient.client, "torchlab_errors_total", kind="header_timeout") == 2


def test_a_slow_or_unfinished_body_gets_408(impatient) -> None:  # type: ignore[no-untyped-def]
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as sock:
        sock.sendall(head + b"Content-Length: 400\r\n\r\n")
        assert trickle(sock, b"{" + b" " * 399), "the server waited for 20 s of body"
        assert "body did not arrive within 0.5 s" in error_of(read_all(sock))
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as sock:
        sock.sendall(head + b"Content-Length: 100\r\n\r\n" + b'{"images": ')  # and stops
        assert "body did not arrive" in error_of(read_all(sock))
    assert metric(impatient.client, "torchlab_errors_total", kind="body_timeout") == 2
    assert impatient.client.get("/health").status_code == 200


# --- metrics ------------------------------------------------------------------------------


def test_each_app_counts_its_own_metrics_in_prometheus_format(predictor) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client.parser import text_string_to_metric_families

    with TestClient(create_app(predictor)) as first, TestClient(create_app(predictor)) as other:
        for _ in range(3):
            assert first.get("/health").status_code == 200
        answer = first.get("/metrics")
        assert answer.headers["content-type"].startswith("text/plain; version=")
        families = {f.name: f for f in text_string_to_metric_families(answer.text)}
        health = [
            s for s in families["torchlab_requests"].samples if s.labels.get("path") == "/health"
        ]
        assert [s.value for s in health if s.name == "torchlab_requests_total"] == [3.0]
        assert {
            "torchlab_decoding_pixels",
            "torchlab_queue_depth",
            "process_resident_memory_bytes",
        } <= set(families)
        assert "/health" not in other.get("/metrics").text


# --- the command ----------------------------------------------------------------------------


@pytest.mark.e2e  # starts torchlab serve as a process
def test_torchlab_serve_applies_its_limit_options(run, flat, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = ["--port", str(port), "--header-timeout", "0.5", "--max-request-pixels", "20000000"]
    server = subprocess.Popen(
        [sys.executable, "-m", "torchlab", "serve", str(run.dir), *options],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        for _ in range(1200):  # bounded: 2 minutes at most
            try:
                if client.get("/ready").status_code == 200:
                    break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode()  # type: ignore[union-attr]
            time.sleep(0.1)
        over = client.post("/predict", json={"images": [flat, flat]})
        assert over.status_code == 413 and "over the limit of 20000000" in over.json()["error"]
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            assert trickle(sock, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400)
            assert "within 0.5 s" in error_of(read_all(sock))
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.e2e  # CLI processes
def test_torchlab_serve_refuses_limits_that_cannot_hold_together(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("serve", "runs/none", "--max-pixels", "100000000")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: Received max_pixels=100000000, max_request_pixels=64000000, "
        "max_inflight_pixels=128000000; expected each at most the next (an image must fit a "
        "request, a request the server), so raise the later ones."
    )
