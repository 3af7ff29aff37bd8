"""report.html and MODEL_CARD.md of real runs, and the report in a real headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

import torchlab
from torchlab.report.html import report

QUICK = {"trainer.max_epochs": 2, "trainer.progress": "none"}


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return torchlab.train("iris", QUICK, output_dir=tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return torchlab.train("diabetes", QUICK, output_dir=tmp_path_factory.mktemp("runs"))


def images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def test_classification_report_is_self_contained_and_complete(iris_run: Any) -> None:
    html = (iris_run.dir / "report.html").read_text()
    for section in ("Test results", "Learning curves", "Analysis of the test predictions",
                    "per-class metrics", "Confusion matrix (test)", "ROC curves",
                    "Class balance per split", "Config", "Timings and size", "Environment"):  # fmt: skip
        assert section in html, section
    sources = images(html)
    assert len(sources) == 4  # learning curves, confusion matrix, ROC, class balance
    for src in sources:  # every image embedded, and a real PNG
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.partition(",")[2])[:4] == b"\x89PNG"
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from a network
    # per-class numbers agree with the run's own test metrics
    summary = iris_run.summary
    assert f"{summary['test']['test/accuracy']:.4f}" in html
    assert f"baseline: {summary['baseline']['name']}" in html
    for name in iris_run.spec.class_names:
        assert f"<td>{name}</td>" in html


def test_regression_report_has_residual_plots(diabetes_run: Any) -> None:
    html = (diabetes_run.dir / "report.html").read_text()
    assert "Residuals of" in html and "per-target errors" in html
    assert 'alt="ROC' not in html and 'alt="Confusion' not in html
    assert all(src.startswith("data:image/png;base64,") for src in images(html))


def test_model_card(iris_run: Any) -> None:
    card = (iris_run.dir / "MODEL_CARD.md").read_text()
    for heading in ("# Model card: iris", "## Intended use", "## Data", "## Training",
                    "## Metrics (test split, best weights)", "## Limitations"):  # fmt: skip
        assert heading in card
    sizes = json.loads((iris_run.dir / "data.json").read_text())["sizes"]
    assert f"| test | {sizes['test']} |" in card
    assert f"| test/accuracy | {iris_run.metrics['test/accuracy']:.4f} |" in card
    assert "Weakest class on the test split" in card


def test_report_can_be_rebuilt_for_an_existing_run(iris_run: Any) -> None:
    path = iris_run.dir / "report.html"
    first = path.read_text()
    path.unlink()
    assert report(iris_run.dir) == path
    rebuilt = path.read_text()
    assert images(rebuilt) and len(images(rebuilt)) == len(images(first))


def test_image_data_gets_a_sample_grid(tmp_path: Path) -> None:
    run = torchlab.train("digits", {**QUICK, "trainer.max_epochs": 1}, output_dir=tmp_path)
    html = (run.dir / "report.html").read_text()
    assert 'alt="Training samples"' in html


# --- the report in a real browser ---------------------------------------------------------


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    """Headless Chromium on 127.0.0.1 driven over the DevTools protocol."""

    def __init__(self, binary: str) -> None:
        import websocket

        self.profile = tempfile.mkdtemp(prefix="torchlab-chromium-")
        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "--window-size=1280,2400", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        port_file = Path(self.profile) / "DevToolsActivePort"
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited: {self.process.stderr.read()[-2000:]}")
            time.sleep(0.1)
        port = port_file.read_text().splitlines()[0]
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=120)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, event: str) -> None:
        while not any(e.get("method") == event for e in self.events):
            self.events.append(json.loads(self.socket.recv()))

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    binary = chromium_binary()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'); .ci/run installs it")
    pytest.importorskip(
        "websocket", reason="websocket-client is not installed (pip install -e '.[dev]')"
    )
    b = Browser(binary)
    try:
        yield b
    finally:
        b.close()


def artifacts_dir() -> Path:
    """Where screenshots go: $TORCHLAB_TEST_ARTIFACTS, else test-artifacts/ in the repository."""
    folder = Path(
        os.environ.get("TORCHLAB_TEST_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts")
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.slow
def test_report_renders_in_headless_chromium(iris_run: Any, browser: Browser) -> None:
    for domain in ("Page", "Runtime", "Log"):
        browser.call(f"{domain}.enable")
    browser.call("Page.navigate", url=(iris_run.dir / "report.html").resolve().as_uri())
    browser.wait_for("Page.loadEventFired")
    state = browser.call(
        "Runtime.evaluate",
        expression="""JSON.stringify({
            title: document.title,
            images: Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth})),
            sections: Array.from(document.querySelectorAll('section h2')).map(h => h.textContent)})""",
        returnByValue=True,
    )["result"]["value"]
    page = json.loads(state)
    shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    artifact = artifacts_dir() / "report-iris.png"
    artifact.write_bytes(base64.b64decode(shot["data"]))

    errors = [
        e for e in browser.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]  # fmt: skip
    assert errors == []
    assert page["title"] == "iris: torchlab run report"
    assert len(page["images"]) == 4
    assert all(i["complete"] and i["width"] > 100 for i in page["images"]), page["images"]
    assert "Test results" in page["sections"] and "Environment" in page["sections"]
    assert artifact.stat().st_size > 10_000
