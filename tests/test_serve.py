"""The HTTP server over real HTTP on 127.0.0.1: correct answers, the right 4xx for bad input
(and the server keeps serving), metrics, batching under concurrency, and a schemathesis fuzz."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from PIL import Image
from sklearn.datasets import load_digits, load_iris

import torchlab
from torchlab.errors import ConfigError
from torchlab.exporters import export
from torchlab.exporters.runtime import load_predictor
from torchlab.serve import ServeSettings, create_app
from torchlab.serve.batcher import DynamicBatcher, ModelFailed, QueueFull

FAST = {"trainer.max_epochs": 2, "trainer.progress": "none"}


class LiveServer:
    """uvicorn on an ephemeral 127.0.0.1 port in a background thread."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
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
        self.client = httpx.Client(base_url=self.url, timeout=30)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((image * 16).clip(0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("digits")
    run = torchlab.train("digits", FAST, output_dir=root / "runs")
    images = [png(image) for image in load_digits().images[:100]]
    folder = root / "images"
    folder.mkdir()
    for i, data in enumerate(images):
        (folder / f"{i:03d}.png").write_bytes(data)
    expected = torchlab.predict(run, [folder])
    return {"run": run, "images": images, "expected": expected, "folder": folder}


@pytest.fixture(scope="module")
def digits_server(digits, tmp_path_factory) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    path = export(digits["run"], "onnx", output=tmp_path_factory.mktemp("export") / "onnx")
    settings = ServeSettings(max_batch=32, max_wait_ms=5, max_body_bytes=64 * 1024, max_pixels=4096)
    with LiveServer(create_app(load_predictor(path), settings)) as client:
        yield client


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("iris")
    run = torchlab.train("iris", FAST, output_dir=root / "runs")
    frame = load_iris(as_frame=True).frame.drop(columns="target").iloc[::7]
    frame.to_csv(root / "rows.csv", index=False)
    return {
        "run": run,
        "rows": frame.to_dict("records"),
        "expected": torchlab.predict(run, [root / "rows.csv"]),
    }


@pytest.fixture(scope="module")
def iris_server(iris) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    settings = ServeSettings(api_key="s3cret", max_rows=64)
    with LiveServer(create_app(load_predictor(iris["run"].dir), settings)) as client:
        client.headers["X-API-Key"] = "s3cret"
        yield client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def check_answers(predictions: list[dict], expected, rows) -> None:  # type: ignore[no-untyped-def,type-arg]
    for prediction, (_, want) in zip(predictions, expected.iloc[rows].iterrows(), strict=True):
        assert prediction["label"] == str(want["label"])
        probs = [prediction["probabilities"][c[2:]] for c in expected.columns if c.startswith("p_")]
        np.testing.assert_allclose(
            probs, [want[c] for c in expected.columns if c.startswith("p_")], atol=1e-5
        )


def test_images_get_the_predictions_of_torchlab_predict(digits, digits_server) -> None:  # type: ignore[no-untyped-def]
    answer = digits_server.post("/predict", json={"images": [b64(i) for i in digits["images"][:5]]})
    assert answer.status_code == 200, answer.text
    check_answers(answer.json()["predictions"], digits["expected"], slice(0, 5))
    upload = digits_server.post(
        "/predict/upload",
        files=[("files", (f"{i}.png", digits["images"][i], "image/png")) for i in (5, 6)],
    )
    assert upload.status_code == 200, upload.text
    check_answers(upload.json()["predictions"], digits["expected"], slice(5, 7))


def test_rows_get_the_predictions_of_torchlab_predict(iris, iris_server) -> None:  # type: ignore[no-untyped-def]
    answer = iris_server.post("/predict", json={"rows": iris["rows"]})
    assert answer.status_code == 200, answer.text
    check_answers(answer.json()["predictions"], iris["expected"], slice(None))


def test_api_key_is_required_except_for_probes(iris, iris_server) -> None:  # type: ignore[no-untyped-def]
    for headers in ({"X-API-Key": ""}, {"X-API-Key": "wrong"}):
        answer = iris_server.post("/predict", json={"rows": iris["rows"][:1]}, headers=headers)
        assert answer.status_code == 401 and "X-API-Key" in answer.json()["error"]
    assert iris_server.get("/metadata", headers={"X-API-Key": "no"}).status_code == 401
    assert iris_server.get("/health", headers={"X-API-Key": ""}).status_code == 200
    assert iris_server.get("/ready", headers={"X-API-Key": ""}).json() == {"status": "ready"}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"rows": [', 400, "not valid JSON"),
        (
            b'{"rows": [{"sepal length (cm)": NaN, "sepal width (cm)": 1, "petal length (cm)": 1, "petal width (cm)": 1}]}',
            422,
            "rows.0.sepal length (cm)",
        ),
        (
            b'{"rows": [{"sepal length (cm)": 1, "sepal width (cm)": 1, "petal length (cm)": 1}]}',
            422,
            "rows.0.petal width (cm)",
        ),
        (
            b'{"rows": [{"sepal length (cm)": [1], "sepal width (cm)": 1, "petal length (cm)": 1, "petal width (cm)": 1}]}',
            422,
            "rows.0.sepal length (cm)",
        ),
        (
            b'{"rows": [{"sepal length (cm)": "wide", "sepal width (cm)": 1, "petal length (cm)": 1, "petal width (cm)": 1}]}',
            422,
            "rows.0.sepal length (cm)",
        ),
        (b'{"rows": []}', 422, "Field 'rows'"),
        (b'{"images": ["aGk="]}', 422, "Field 'rows'"),
        (b"[1, 2]", 422, "Field 'body'"),
    ],
)
def test_bad_rows_get_a_4xx_naming_the_field(iris_server, body, status, message) -> None:  # type: ignore[no-untyped-def]
    answer = iris_server.post(
        "/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_bad_images_get_a_4xx_and_the_server_keeps_serving(digits, digits_server) -> None:  # type: ignore[no-untyped-def]
    big = io.BytesIO()
    Image.new("L", (100, 100)).save(big, "PNG")
    cases = [
        ({"images": ["not base64!"]}, 400, "Field 'images.0' is not valid base64"),
        ({"images": [b64(b"GIF89a but not really")]}, 422, "cannot be decoded"),
        ({"images": [b64(big.getvalue())]}, 422, "100x100 pixels, over the limit of 4096"),
        ({"images": []}, 422, "Field 'images'"),
        ({"images": [b64(digits["images"][0])] * 600}, 413, "over 65536 bytes"),
        ({"images": "abc"}, 422, "Field 'images'"),
    ]
    for body, status, message in cases:
        answer = digits_server.post("/predict", json=body)
        assert answer.status_code == status, answer.text
        assert message in answer.json()["error"]
    # A body streamed without Content-Length is cut off at the limit as well.
    chunks = (b"x" * 8192 for _ in range(100))
    answer = digits_server.post(
        "/predict", content=chunks, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert digits_server.get("/health").json() == {"status": "ok"}
    answer = digits_server.post("/predict", json={"images": [b64(digits["images"][0])]})
    assert answer.status_code == 200
    metrics = digits_server.get("/metrics").text
    assert 'torchlab_requests_total{path="/predict",status="413"} 2' in metrics
    assert 'torchlab_errors_total{kind="bad_request"}' in metrics


def test_metadata_metrics_and_openapi(digits_server) -> None:  # type: ignore[no-untyped-def]
    meta = digits_server.get("/metadata").json()
    assert meta["format"] == "onnx" and meta["class_names"] == [str(i) for i in range(10)]
    assert meta["input"]["shape"] == ["batch", 1, 8, 8]
    assert meta["verification"]["max_abs_error"] < 1e-3
    assert "api_key" not in meta["settings"]
    text = digits_server.get("/metrics").text
    for name in (
        "torchlab_requests_total",
        "torchlab_request_seconds_bucket",
        "torchlab_batch_rows_bucket",
    ):
        assert name in text
    paths = digits_server.get("/openapi.json").json()["paths"]
    assert {"/predict", "/predict/upload", "/health", "/ready", "/metadata", "/metrics"} <= set(
        paths
    )


def test_100_concurrent_requests_each_get_their_own_answer(digits, digits_server) -> None:  # type: ignore[no-untyped-def]
    before = batch_count(digits_server)

    def ask(i: int) -> tuple[int, dict]:  # type: ignore[type-arg]
        answer = digits_server.post("/predict", json={"images": [b64(digits["images"][i])]})
        assert answer.status_code == 200, answer.text
        return i, answer.json()["predictions"][0]

    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(ask, range(100)))
    for i, prediction in answers:
        check_answers([prediction], digits["expected"], slice(i, i + 1))
    calls = batch_count(digits_server) - before
    assert calls < 100, "no request was batched with another"


def batch_count(client: httpx.Client) -> int:
    line = next(
        row
        for row in client.get("/metrics").text.splitlines()
        if row.startswith("torchlab_batch_rows_count")
    )
    return int(line.split()[-1])


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="max_batch=0"):
        ServeSettings(max_batch=0)


def first_column_doubled(inputs: torch.Tensor) -> torch.Tensor:
    """A real model stand-in: fails on a batch holding a negative first value."""
    if (inputs[:, 0] < 0).any():
        raise ValueError("negative input")
    time.sleep(0.01)
    return inputs * 2


def test_batcher_isolates_errors_and_timeouts() -> None:
    async def scenario() -> None:
        batcher = DynamicBatcher(first_column_doubled, max_batch=4, max_wait=0.02, queue_size=8)
        await batcher.start()
        good = [batcher.submit(torch.tensor([[float(i)]])) for i in range(3)]
        bad = batcher.submit(torch.tensor([[-1.0]]))
        results = await asyncio.gather(*good, bad, return_exceptions=True)
        assert all(isinstance(r, ModelFailed) and "negative input" in str(r) for r in results)
        # The next batch is served normally, each caller getting its own rows.
        later = await asyncio.gather(
            *(batcher.submit(torch.tensor([[float(i)]])) for i in range(6))
        )
        assert [r.item() for r in later] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        # A request that times out does not affect the ones beside it.
        slow = batcher.submit(torch.tensor([[1.0]]), timeout=1e-6)
        fine = batcher.submit(torch.tensor([[3.0]]), timeout=5)
        results = await asyncio.gather(slow, fine, return_exceptions=True)
        assert isinstance(results[0], TimeoutError) and results[1].item() == 6.0
        await batcher.stop()

    asyncio.run(scenario())


def test_batcher_refuses_when_the_queue_is_full() -> None:
    async def scenario() -> None:
        batcher = DynamicBatcher(first_column_doubled, max_batch=1, queue_size=2)  # not started
        waiting = [asyncio.ensure_future(batcher.submit(torch.ones(1, 1))) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit(torch.ones(1, 1))
        await batcher.start()
        assert [(await w).item() for w in waiting] == [2.0, 2.0]
        await batcher.stop()

    asyncio.run(scenario())


@pytest.mark.slow
def test_fuzzing_the_openapi_schema_finds_no_server_error(iris, iris_server) -> None:  # type: ignore[no-untyped-def]
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(
        f"{iris_server.base_url}/openapi.json", headers={"X-API-Key": "s3cret"}
    )
    failures, statuses = [], set()
    for operation in schema.get_all_operations():
        operation = operation.ok()

        @settings(
            max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(case=operation.as_strategy())
        def fuzz(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers={"X-API-Key": "s3cret"})
            statuses.add(response.status_code)
            if response.status_code >= 500:
                failures.append((case.method, case.path, response.status_code, response.text[:200]))

        fuzz()
    assert not failures
    assert 200 in statuses and statuses & {400, 422}, (
        statuses
    )  # it reached the model and the checks
    assert iris_server.post("/predict", json={"rows": iris["rows"][:1]}).status_code == 200
