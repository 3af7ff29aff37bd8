"""The HTTP server over real HTTP on 127.0.0.1: correct answers, the right 4xx for bad input
(and the server keeps serving), metrics, batching under concurrency, and a schemathesis fuzz."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits, load_iris

import torchlab
from serving import LiveServer, b64, fuzz, metric
from serving import png as png_of
from torchlab.api import export
from torchlab.engine.predict import load_predictor
from torchlab.errors import ConfigError
from torchlab.serve import ServeSettings, create_app
from torchlab.serve.batcher import DynamicBatcher, ModelFailed, QueueFull

FAST = {"trainer.max_epochs": 2, "trainer.progress": "none"}


def png(image: np.ndarray) -> bytes:
    return png_of((image * 16).clip(0, 255))


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
    raw = digits_server.post(
        "/predict/image", content=digits["images"][7], headers={"Content-Type": "image/png"}
    )
    assert raw.status_code == 200, raw.text
    check_answers(raw.json()["predictions"], digits["expected"], slice(7, 8))


def test_a_raw_image_body_that_is_wrong_is_one_line(digits, digits_server) -> None:  # type: ignore[no-untyped-def]
    png = {"Content-Type": "image/png"}
    for content, headers, status, words in [
        (b'{"images": []}', {"Content-Type": "application/json"}, 415, "send JSON to /predict"),
        (b"", png, 400, "body is empty"),
        (b"just some notes", png, 422, "Body: "),
        (digits["images"][0][:40], png, 422, "Body: "),  # a truncated PNG
    ]:
        answer = digits_server.post("/predict/image", content=content, headers=headers)
        assert answer.status_code == status, answer.text
        assert words in answer.json()["error"] and "\n" not in answer.json()["error"]


def test_a_failure_on_the_raw_image_path_is_a_500(digits, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """/predict/image is answered in front of FastAPI; an unexpected error there gets the
    documented 500 body and is counted, as on FastAPI's routes."""
    predictor = load_predictor(digits["run"].dir)
    with LiveServer(create_app(predictor)) as client:
        monkeypatch.setattr(predictor, "records", lambda outputs: 1 / 0)
        image = {"content": digits["images"][0], "headers": {"Content-Type": "image/png"}}
        answer = client.post("/predict/image", **image)
        assert answer.status_code == 500 and answer.headers["connection"] == "close"
        assert "ZeroDivisionError" in answer.json()["error"]
        assert metric(client, "torchlab_errors_total", kind="internal") == 1
        monkeypatch.undo()
        assert client.post("/predict/image", **image).status_code == 200


def test_writes_in_one_turn_of_the_loop_leave_together() -> None:
    """An answer's head and body (two writes) reach the client in one send."""
    import socket

    from torchlab.serve.server import Coalescing

    async def check() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        coalescing = Coalescing(transport, loop)
        coalescing.write(b"HTTP/1.1 200 OK\r\n\r\n")
        coalescing.write(b"{}")
        with pytest.raises(BlockingIOError):  # nothing sent yet, within this turn
            theirs.recv(100)
        await asyncio.sleep(0)
        assert theirs.recv(100) == b"HTTP/1.1 200 OK\r\n\r\n{}"
        coalescing.write(b"bye")
        coalescing.close()  # sends what is pending first
        await asyncio.sleep(0)
        assert theirs.recv(100) == b"bye"
        theirs.close()

    asyncio.run(check())


def test_rows_get_the_predictions_of_torchlab_predict(iris, iris_server) -> None:  # type: ignore[no-untyped-def]
    answer = iris_server.post("/predict", json={"rows": iris["rows"]})
    assert answer.status_code == 200, answer.text
    check_answers(answer.json()["predictions"], iris["expected"], slice(None))


def test_json_bodies_get_the_same_answers_in_front_of_fastapi_and_through_it(
    iris, iris_server
) -> None:  # type: ignore[no-untyped-def]
    """``application/json`` bodies are answered in front of FastAPI; ``+json`` ones take its
    route: every body, good or bad, gets the same answer either way."""
    row = iris["rows"][0]
    bodies = [
        json.dumps({"rows": iris["rows"][:3]}).encode(),
        b'{"rows": [',
        b'{"rows": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"rows": ["\xff\xfe"]}',
        b'{"rows": [' + b"7" * 5000 + b"]}",
        json.dumps({"rows": [{**row, "sepal length (cm)": True}]}).encode(),
        json.dumps({"rows": [row], "extra": 1}).encode(),
        json.dumps({"rows": []}).encode(),
        b"[]",
        b'"rows"',
    ]
    for body in bodies:
        direct, routed = (
            iris_server.post("/predict", content=body, headers={"Content-Type": media})
            for media in ("application/json", "application/vnd.api+json")
        )
        assert (direct.status_code, direct.json()) == (routed.status_code, routed.json()), body


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
            b'{"rows": [{"sepal length (cm)": 1, "sepal width (cm)": 1, "petal length (cm)": 1, "petal width": 1}]}',
            422,
            "Field 'rows.0.petal width' is not part of this model's request",
        ),
        (
            b'{"rows": [{"sepal length (cm)": true, "sepal width (cm)": 1, "petal length (cm)": 1, "petal width (cm)": 1}]}',
            422,
            "Field 'rows.0.sepal length (cm)': Input should be a finite number",
        ),
        (
            b'{"rows": [{"sepal length (cm)": 1, "sepal width (cm)": "5.1", "petal length (cm)": 1, "petal width (cm)": 1}]}',
            422,
            "Field 'rows.0.sepal width (cm)': Input should be a finite number",
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
    assert 'torchlab_requests_total{path="/predict",status="413"} 2.0' in metrics
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
    assert {
        "/predict",
        "/predict/upload",
        "/predict/image",
        "/health",
        "/ready",
        "/metadata",
        "/metrics",
    } <= set(paths)


def answer_schema(client: httpx.Client) -> dict:  # type: ignore[type-arg]
    """The schema of one answer of ``POST /predict``, as /openapi.json documents it."""
    api = client.get("/openapi.json").json()
    ok = api["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]
    response = api["components"]["schemas"][ok["schema"]["$ref"].rpartition("/")[2]]
    answer = response["properties"]["predictions"]["items"]["$ref"].rpartition("/")[2]
    return api["components"]["schemas"][answer]


def test_the_documented_answer_is_the_tasks_own(digits_server, co2_server) -> None:  # type: ignore[no-untyped-def]
    """Each task's deployment record names its answer: the schema holds its fields only."""
    classes, forecast = answer_schema(digits_server), answer_schema(co2_server)
    assert set(classes["required"]) == {"label", "probabilities"}
    assert "forecast" not in classes["properties"] and "detections" not in classes["properties"]
    assert set(forecast["required"]) == {"timestamps", "forecast"}
    assert "probabilities" not in forecast["properties"]


def test_100_concurrent_requests_each_get_their_own_answer(digits, digits_server) -> None:  # type: ignore[no-untyped-def]
    before = batch_count(digits_server)
    # A client of its own, a connection per thread: the module's client holds connections
    # left idle by earlier tests, which the server closes after 5 s; reused by 100 threads
    # at once, one read failed on the client's side with EBADF.
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    client = httpx.Client(base_url=digits_server.base_url, timeout=60, limits=limits)

    def ask(i: int) -> tuple[int, dict]:  # type: ignore[type-arg]
        answer = client.post("/predict", json={"images": [b64(digits["images"][i])]})
        assert answer.status_code == 200, answer.text
        return i, answer.json()["predictions"][0]

    with client, ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(ask, range(100)))
    for i, prediction in answers:
        check_answers([prediction], digits["expected"], slice(i, i + 1))
    calls = batch_count(digits_server) - before
    assert calls < 100, "no request was batched with another"


def batch_count(client: httpx.Client) -> float:
    return metric(client, "torchlab_batch_rows_count")


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
@pytest.mark.parametrize("served", ["iris", "co2", "digits", "bbc"])
def test_fuzzing_the_openapi_schema_finds_no_server_error(served, request) -> None:  # type: ignore[no-untyped-def]
    server = request.getfixturevalue(f"{served}_server")
    statuses = fuzz(server, **{"X-API-Key": "s3cret"} if served == "iris" else {})
    assert 200 in statuses and statuses & {400, 422}, statuses  # reached the model and checks
    data = request.getfixturevalue(served)
    body = {
        "iris": lambda: {"rows": data["rows"][:1]},
        "co2": lambda: {"series": [history(data["timestamps"], data["values"])]},
        "digits": lambda: {"images": [b64(data["images"][0])]},
        "bbc": lambda: {"texts": ["Shares fell after the bank cut its forecast."]},
    }[served]()
    assert server.post("/predict", json=body).status_code == 200


@pytest.fixture(scope="module")
def bbc(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    small = {"data.source.limit": 60, "data.source.max_length": 32, "data.num_workers": 0}
    tokens = {"data.source.tokenizer.vocab_size": 300, "model.embedding_dim": 8, "model.hidden": 8}
    overrides = {**FAST, **small, **tokens, "trainer.max_epochs": 1, "baseline": None}
    root = tmp_path_factory.mktemp("bbc")
    return {"run": torchlab.train("bbc-lstm", overrides, output_dir=root / "runs")}


@pytest.fixture(scope="module")
def bbc_server(bbc) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with LiveServer(create_app(load_predictor(bbc["run"].dir), ServeSettings())) as client:
        yield client


@pytest.fixture(scope="module")
def co2(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    overrides = {**FAST, "baseline": None}
    run = torchlab.train("co2", overrides, output_dir=tmp_path_factory.mktemp("co2") / "runs")
    tail = run.featurizer.tails[0]  # the end of the run's data, where --horizon starts
    return {
        "run": run,
        "timestamps": list(tail.index),
        "values": [row[0] for row in tail.target],
        "expected": torchlab.predict(run, [], horizon=run.featurizer.horizon),
    }


@pytest.fixture(scope="module")
def co2_server(co2) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with LiveServer(create_app(load_predictor(co2["run"].dir), ServeSettings())) as client:
        yield client


def history(timestamps: list[str], values: list[float], **extra: object) -> dict:  # type: ignore[type-arg]
    return {"timestamps": timestamps, "history": {"co2": values}, **extra}


def test_series_get_the_forecast_of_torchlab_predict_horizon(co2, co2_server) -> None:  # type: ignore[no-untyped-def]
    expected, stamps, values = co2["expected"], co2["timestamps"], co2["values"]
    # A longer history than the model reads gives the same forecast: only the last steps count.
    earlier = [str(t) for t in pd.date_range(end=stamps[0], periods=13, freq="MS")[:-1]]
    shifted = [v + 5.0 for v in values]
    body = {
        "series": [
            history(stamps, values),
            history(earlier + stamps, [300.0] * 12 + values),
            history(stamps, shifted),
        ]
    }
    answer = co2_server.post("/predict", json=body)
    assert answer.status_code == 200, answer.text
    same, longer, moved = answer.json()["predictions"]
    assert same["timestamps"] == [t.isoformat() for t in expected["timestamp"]]
    for kind in ("forecast", "lower", "upper"):
        np.testing.assert_allclose(same[kind]["co2"], expected[f"{kind}_co2"], rtol=1e-6)
        np.testing.assert_allclose(longer[kind]["co2"], expected[f"{kind}_co2"], rtol=1e-6)
    assert all(low <= mid <= up for low, mid, up in zip(same["lower"]["co2"], same["forecast"]["co2"], same["upper"]["co2"], strict=True))  # fmt: skip
    assert not np.allclose(moved["forecast"]["co2"], same["forecast"]["co2"])

    # Through the batcher from concurrent callers, each gets the forecast of its own history.
    def ask(values: list[float]) -> list[float]:
        answer = co2_server.post("/predict", json={"series": [history(stamps, values)]})
        assert answer.status_code == 200, answer.text
        return answer.json()["predictions"][0]["forecast"]["co2"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, [values, shifted] * 4))
    for i, got in enumerate(answers):
        np.testing.assert_allclose(
            got, (same if i % 2 == 0 else moved)["forecast"]["co2"], rtol=1e-6
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s, v: history(s[:30], v[:30]), "Field 'series.0.timestamps' holds 30 steps"),
        (lambda s, v: {"timestamps": s, "history": {"co3": v}}, "series.0.history.co2"),
        (lambda s, v: history(s[::-1], v), "'series.0.timestamps' is not in increasing order"),
        (lambda s, v: history([*s[:-1], s[-2]], v), "is not in increasing order at position 59"),
        (lambda s, v: history([*s[:-1], "2031-01-01"], v), "skips a step at position 59"),
        (lambda s, v: history(s, v[:-1]), "'series.0.history.co2' has 59 values for 60"),
        (lambda s, v: history(s, v, id="elsewhere"), "'series.0.id' names the series"),
        (lambda s, v: history(s, v, future={"co2": v}), "series.0.future"),
        (lambda s, v: history(s, [1e308] * len(v)), "too large to represent"),
        (lambda s, v: history(["not a date"] * len(s), v), "series.0.timestamps.0"),
    ],
)
def test_bad_series_get_a_422_naming_the_field(co2, co2_server, change, message) -> None:  # type: ignore[no-untyped-def]
    answer = co2_server.post(
        "/predict", json={"series": [change(co2["timestamps"], co2["values"])]}
    )
    assert answer.status_code == 422, answer.text
    assert message in answer.json()["error"]


def test_nan_in_a_series_gets_a_422(co2, co2_server) -> None:  # type: ignore[no-untyped-def]
    values = ", ".join(map(str, co2["values"][:-1]))
    stamps = ", ".join(f'"{t}"' for t in co2["timestamps"])
    body = f'{{"series": [{{"timestamps": [{stamps}], "history": {{"co2": [{values}, NaN]}}}}]}}'
    answer = co2_server.post(
        "/predict", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert "series.0.history.co2.59" in answer.json()["error"]
    assert co2_server.get("/ready").status_code == 200


@pytest.mark.slow
def test_seq2seq_texts_get_the_generated_text_of_torchlab_predict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    small = {"data.source.n": 300, "model.hidden_size": 16, "model.embedding_dim": 8}
    run = torchlab.train("dates", {**FAST, **small, "model.beam_width": 2}, output_dir=tmp_path)
    texts = ["the 3rd of March 1998", "12/25/04", "1 jan 2020", "Tuesday, 5 May 1987", "7.8.65"]
    (tmp_path / "dates.csv").write_text("source\n" + "\n".join(f'"{t}"' for t in texts) + "\n")
    expected = torchlab.predict(run.dir, [tmp_path / "dates.csv"])["output"].tolist()
    with LiveServer(create_app(load_predictor(run.dir), ServeSettings(max_wait_ms=20))) as client:
        answer = client.post("/predict", json={"texts": texts})
        assert answer.status_code == 200, answer.text
        assert [p["output"] for p in answer.json()["predictions"]] == expected

        def ask(i: int) -> str:  # one text per request: batched with others of other lengths
            answer = client.post("/predict", json={"texts": [texts[i]]})
            assert answer.status_code == 200, answer.text
            return answer.json()["predictions"][0]["output"]

        with ThreadPoolExecutor(max_workers=5) as pool:
            assert list(pool.map(ask, range(5))) == expected
        empty = client.post("/predict", json={"texts": ["  "]})
        assert empty.status_code == 422 and "Field 'texts.0' is empty" in empty.json()["error"]
        long = client.post("/predict", json={"texts": ["12/25/04", "1" * 2000]})
        assert long.status_code == 422 and "Field 'texts.1'" in long.json()["error"]
        assert "over the limit of 1024" in long.json()["error"]


@pytest.mark.slow
def test_language_model_prompts_get_the_continuation_of_torchlab_predict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    words = [
        "the",
        "market",
        "rose",
        "as",
        "shares",
        "in",
        "banks",
        "fell",
        "after",
        "the",
        "report",
        "on",
        "growth",
        "and",
        "jobs",
    ]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        (corpus / f"doc{i}.txt").write_text(" ".join(rng.choice(words, 60)))
    overrides = {
        **FAST,
        **{"data.source.path": str(corpus), "data.source.tokenization": "word"},
        **{"data.source.block_size": 16, "data.batch_size": 8, "baseline": None},
        **{"model.layers": 1, "model.heads": 2, "model.dim": 16, "model.max_new_tokens": 5},
        "model.temperature": 0.0,  # greedy: the same continuation every time
    }
    run = torchlab.train("bbc-gpt", overrides, output_dir=tmp_path / "runs")
    prompts = ["the market", "shares in banks fell after", "growth"]
    (tmp_path / "prompts.csv").write_text("prompt\n" + "\n".join(prompts) + "\n")
    expected = torchlab.predict(run.dir, [tmp_path / "prompts.csv"])["output"].tolist()
    with LiveServer(create_app(load_predictor(run.dir), ServeSettings(max_wait_ms=20))) as client:
        answer = client.post("/predict", json={"texts": prompts})
        assert answer.status_code == 200, answer.text
        assert [p["output"] for p in answer.json()["predictions"]] == expected
        with ThreadPoolExecutor(max_workers=3) as pool:
            answers = pool.map(lambda p: client.post("/predict", json={"texts": [p]}), prompts)
            assert [a.json()["predictions"][0]["output"] for a in answers] == expected
        refused = client.post("/predict", json={"texts": prompts, "max_new_tokens": 3})
        assert refused.status_code == 422
        assert "Field 'max_new_tokens' is not part of this model's request" in refused.text
