"""A TorchServe archive under a real TorchServe (Java) on 127.0.0.1 answers what
``torchlab predict`` answers for the same image files."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

import torchlab
from torchlab.exporters import export

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


def wait_until_ready(client: httpx.Client, process: subprocess.Popen, log: Path) -> None:  # type: ignore[type-arg]
    for _ in range(240):  # bounded: two minutes
        if process.poll() is not None:
            pytest.fail(f"TorchServe exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if (
                client.get("/ping").status_code == 200
                and client.get("/predictions/digits").status_code != 404
            ):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"TorchServe did not become ready:\n{log.read_text()[-3000:]}")


def test_torchserve_serves_the_archive_like_torchlab_predict(tmp_path: Path) -> None:
    run = torchlab.train(
        "digits",
        {"trainer.max_epochs": 2, "trainer.progress": "none"},
        output_dir=tmp_path / "runs",
    )
    exported = export(run, "mar", output=tmp_path / "mar")
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(exported / "model.mar", store / "digits.mar")
    images = tmp_path / "images"
    images.mkdir()
    for i, image in enumerate(load_digits().images[:8]):
        Image.fromarray((image * 16).clip(0, 255).astype(np.uint8)).save(images / f"{i}.png")
    expected = torchlab.predict(run, [images])

    ports = [free_port() for _ in range(3)]
    config = tmp_path / "config.properties"
    config.write_text(
        "\n".join(
            [
                f"inference_address=http://127.0.0.1:{ports[0]}",
                f"management_address=http://127.0.0.1:{ports[1]}",
                f"metrics_address=http://127.0.0.1:{ports[2]}",
                f"model_store={store}",
                "load_models=digits=digits.mar",
                "disable_token_authorization=true",
                "default_workers_per_model=1",
                "",
            ]
        )
    )
    log = tmp_path / "torchserve.log"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(TORCHSERVE), "--start", "--foreground", "--ncs", "--ts-config", str(config)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Java and workers stop with it
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=30) as client:
            wait_until_ready(client, process, log)
            for i, row in expected.iterrows():
                answer = client.post("/predictions/digits", content=Path(row["id"]).read_bytes())
                assert answer.status_code == 200, answer.text
                (got,) = answer.json() if isinstance(answer.json(), list) else [answer.json()]
                assert got["label"] == str(row["label"]), i
                probs = [got["probabilities"][str(c)] for c in range(10)]
                np.testing.assert_allclose(probs, [row[f"p_{c}"] for c in range(10)], atol=1e-5)
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}") as management:
            assert management.get("/models").json()["models"][0]["modelName"] == "digits"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
