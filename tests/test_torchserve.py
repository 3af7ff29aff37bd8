"""TorchServe archives under a real TorchServe (Java) on 127.0.0.1 answer what
``torchlab predict`` answers: image files for the digits CNN, texts for a text classifier."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

import torchlab
from torchlab.api import export

TORCHSERVE = Path(sys.executable).parent / "torchserve"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="TorchServe needs Java 11+ on PATH"),
    pytest.mark.skipif(
        not TORCHSERVE.exists(), reason="torchserve is not installed (pip install torchserve)"
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(
    client: httpx.Client,
    process: subprocess.Popen,  # type: ignore[type-arg]
    log: Path,
    name: str,
) -> None:
    for _ in range(240):  # bounded: two minutes
        if process.poll() is not None:
            pytest.fail(f"TorchServe exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if (
                client.get("/ping").status_code == 200
                and client.get(f"/predictions/{name}").status_code != 404
            ):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"TorchServe did not become ready:\n{log.read_text()[-3000:]}")


@contextmanager
def torchserve(archive: Path, name: str, folder: Path, batch: int = 1) -> Iterator[httpx.Client]:
    """TorchServe serving ``archive`` as ``name``, every address (HTTP and gRPC) on loopback at
    a free port, batching up to ``batch`` requests (waiting 100 ms for them); yields a client
    of its inference address and stops TorchServe (Java and workers) on exit."""
    store = folder / "store"
    store.mkdir()
    shutil.copy(archive, store / f"{name}.mar")
    ports = [free_port() for _ in range(5)]  # HTTP inference, management, metrics; gRPC
    version = {
        "defaultVersion": True, "marName": f"{name}.mar", "minWorkers": 1, "maxWorkers": 1,
        "batchSize": batch, "maxBatchDelay": 100,
    }  # fmt: skip
    config = folder / "config.properties"
    config.write_text(
        "\n".join(
            [
                f"inference_address=http://127.0.0.1:{ports[0]}",
                f"management_address=http://127.0.0.1:{ports[1]}",
                f"metrics_address=http://127.0.0.1:{ports[2]}",
                "grpc_inference_address=127.0.0.1",
                f"grpc_inference_port={ports[3]}",
                "grpc_management_address=127.0.0.1",
                f"grpc_management_port={ports[4]}",
                f"model_store={store}",
                f"load_models={name}={name}.mar",
                f"models={json.dumps({name: {'1.0': version}})}",
                "disable_token_authorization=true",
                "",
            ]
        )
    )
    log = folder / "torchserve.log"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        # Its pid file and its workers' sockets: TorchServes of parallel tests stay apart.
        "TMPDIR": str(folder),
        "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={folder}",
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(TORCHSERVE), "--start", "--foreground", "--ncs", "--ts-config", str(config)],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Java and workers stop with it
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=30) as client:
            wait_until_ready(client, process, log, name)
            yield client
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}") as management:
            assert management.get("/models").json()["models"][0]["modelName"] == name
    finally:
        with suppress(ProcessLookupError):  # the group is gone when TorchServe failed to start
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def assert_answers(answer: httpx.Response, expected: list[dict], classes: list[str]) -> None:  # type: ignore[type-arg]
    """One prediction per input: the label and probabilities ``torchlab predict`` wrote."""
    assert answer.status_code == 200, answer.text
    got = answer.json() if isinstance(answer.json(), list) else [answer.json()]
    assert [g["label"] for g in got] == [str(row["label"]) for row in expected]
    for prediction, row in zip(got, expected, strict=True):
        probabilities = [prediction["probabilities"][c] for c in classes]
        np.testing.assert_allclose(probabilities, [row[f"p_{c}"] for c in classes], atol=1e-5)


def test_torchserve_serves_the_archive_like_torchlab_predict(tmp_path: Path) -> None:
    run = torchlab.train(
        "digits",
        {"trainer.max_epochs": 2, "trainer.progress": "none"},
        output_dir=tmp_path / "runs",
    )
    exported = export(run, "mar", output=tmp_path / "mar")
    images = tmp_path / "images"
    images.mkdir()
    for i, image in enumerate(load_digits().images[:8]):
        Image.fromarray((image * 16).clip(0, 255).astype(np.uint8)).save(images / f"{i}.png")
    expected = torchlab.predict(run, [images]).to_dict("records")
    classes = [str(c) for c in range(10)]

    with torchserve(exported / "model.mar", "digits", tmp_path) as client:
        for row in expected:
            answer = client.post("/predictions/digits", content=Path(row["id"]).read_bytes())
            assert_answers(answer, [row], classes)
        images = [base64.b64encode(Path(row["id"]).read_bytes()).decode() for row in expected]
        answer = client.post("/predictions/digits", json={"images": images})  # the server's body
        assert_answers(answer, expected, classes)


NEW_TEXTS = [
    "Shares fell sharply after the bank cut its profit forecast.",
    "The striker scored twice as the club won the cup final.",
    "The new phone has a faster chip and a better camera.",
]


def test_torchserve_serves_a_text_classifier_like_torchlab_predict(tmp_path: Path) -> None:
    smoke = {
        "trainer.max_epochs": 1, "trainer.progress": "none", "baseline": None,
        "data.source.limit": 120, "data.source.max_length": 48, "data.batch_size": 16,
        "data.num_workers": 0,
    }  # fmt: skip
    run = torchlab.train("bbc-lstm", smoke, output_dir=tmp_path / "runs")
    exported = export(run, "mar", output=tmp_path / "mar")
    with zipfile.ZipFile(exported / "model.mar") as archive:  # the featurizer's side files
        assert {"export.json", "tokenizer.json", "tokenizer.meta.json"} <= set(archive.namelist())
    texts = tmp_path / "texts.csv"
    texts.write_text("text\n" + "".join(f'"{text}"\n' for text in NEW_TEXTS))
    expected = torchlab.predict(run.dir, [texts]).to_dict("records")
    classes = list(run.spec.class_names)

    with torchserve(exported / "model.mar", "bbc", tmp_path, batch=4) as client:
        answer = client.post("/predictions/bbc", json={"texts": NEW_TEXTS})
        assert_answers(answer, expected, classes)
        plain = client.post("/predictions/bbc", content=NEW_TEXTS[1].encode())
        assert_answers(plain, expected[1:2], classes)
        wrong = client.post("/predictions/bbc", json={"rows": [{"text": "a"}]})
        assert wrong.status_code == 400 and "Field 'texts'" in wrong.text, wrong.text
        # Concurrent requests (batched together when they arrive within 100 ms): each gets
        # its own answer, and a bad one fails alone with one sentence naming the text.
        bodies = [{"texts": NEW_TEXTS[::-1]}, {"texts": ["fine", "  "]}, {"texts": NEW_TEXTS[2:]}]
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(
                pool.map(lambda body: client.post("/predictions/bbc", json=body), bodies)
            )
        assert_answers(answers[0], expected[::-1], classes)
        assert answers[1].status_code == 400
        message = "Field 'texts.1' is empty; send non-empty texts."
        assert answers[1].json()["message"] == message
        assert_answers(answers[2], expected[2:], classes)
