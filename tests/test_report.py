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

import numpy as np
import pytest

import torchlab
from torchlab.api import report

QUICK = {"trainer.max_epochs": 2, "trainer.progress": "none"}


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return torchlab.train("iris", QUICK, output_dir=tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return torchlab.train("diabetes", QUICK, output_dir=tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A few PPO iterations on CartPole: evaluations every 128 steps, a log line per iteration."""
    tiny = {"trainer.total_steps": 768, "trainer.eval_every": 128, "trainer.eval_episodes": 2,
            "trainer.log_every": 64, "trainer.checkpoint_every": 10_000, "trainer.progress": "none"}  # fmt: skip
    return torchlab.train("cartpole-ppo", tiny, output_dir=tmp_path_factory.mktemp("runs"))


def images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def test_classification_report_is_self_contained_and_complete(iris_run: Any) -> None:
    html = (iris_run.dir / "report.html").read_text()
    for section in ("Test results", "Learning curves", "Analysis of the test predictions",
                    "per-class metrics", "Confusion matrix (test)", "ROC curves",
                    "Class balance per split", "Calibration", "Reliability diagram (test, 10 bins)",
                    "Config", "Timings and size", "Environment",
                    "Error analysis", "Worst test predictions", "Explanations",
                    "Global importance: mean |integrated gradients| per column"):  # fmt: skip
        assert section in html, section
    if iris_run.summary["test"]["test/accuracy"] < 1:
        assert "Most-confused class pairs" in html
    sources = images(html)
    # learning curves, confusion matrix, ROC, reliability diagram, importance, class balance
    assert len(sources) == 6
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
    assert "The test rows with the largest absolute error." in html
    assert "Most-confused" not in html
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


@pytest.mark.slow  # reports are tested in-process
def test_report_can_be_rebuilt_for_an_existing_run(iris_run: Any, cli: Any) -> None:
    path = iris_run.dir / "report.html"
    first = path.read_text()
    path.unlink()
    assert report(iris_run.dir) == path
    rebuilt = path.read_text()
    assert images(rebuilt) and len(images(rebuilt)) == len(images(first))
    path.unlink()
    done = cli("report", str(iris_run.dir))  # the same from the command line
    assert done.returncode == 0 and str(path) in done.stdout
    assert len(images(path.read_text())) == len(images(first))
    missing = cli("report", str(iris_run.dir / "nothing"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_image_data_gets_a_sample_grid(tmp_path: Path) -> None:
    small = {"data.source.per_class": 10, "model.channels": [4], "baseline": None}
    run = torchlab.train("digits", {**QUICK, **small, "trainer.max_epochs": 1}, output_dir=tmp_path)
    html = (run.dir / "report.html").read_text()
    assert 'alt="Training samples"' in html
    assert 'alt="Worst test predictions"' in html  # a gallery of the images themselves
    assert 'alt="Integrated gradients of the first test images"' in html


TEXT_SMOKE = ["trainer.max_epochs=1", "trainer.progress=none", "data.source.limit=120",
              "data.source.max_length=48", "data.batch_size=16", "data.num_workers=0"]  # fmt: skip


@pytest.mark.slow
def test_text_report_has_a_token_length_histogram(tmp_path: Path) -> None:
    from torchlab.engine.experiment import build_experiment
    from torchlab.report.analysis import token_lengths

    run = torchlab.train("bbc-lstm", TEXT_SMOKE, output_dir=tmp_path)
    html = (run.dir / "report.html").read_text()
    assert 'alt="Tokens per text and split"' in html
    bundle = build_experiment(run.config).bundle
    lengths = token_lengths(bundle)
    sizes = json.loads((run.dir / "data.json").read_text())["sizes"]
    assert {k: len(v) for k, v in lengths.items()} == sizes
    # counted before truncation: the texts at or over max_length are the ones the data
    # summary reports as truncated, and BBC articles run far past 48 tokens
    truncated = bundle.summary["train_tokens"]["truncated"]
    assert sum(n >= 48 for n in lengths["train"]) == truncated > 0
    assert max(lengths["train"]) > 48


def test_forecasting_report_shows_the_split_series(tmp_path: Path) -> None:
    overrides = {**QUICK, "trainer.max_epochs": 1, "baseline.methods": ["naive"]}
    run = torchlab.train("co2", overrides, output_dir=tmp_path)
    html = (run.dir / "report.html").read_text()
    alt = "The series with its train, validation and test parts"
    (src,) = re.findall(rf'<img src="([^"]+)" alt="{alt}"', html)
    assert base64.b64decode(src.partition(",")[2])[:4] == b"\x89PNG"
    assert "forecast, interval and actuals" in html  # the forecast plots stay beside it
    assert 'alt="Tokens per text' not in html


@pytest.mark.slow
def test_rl_report_shows_returns_the_episode_and_the_random_policy(rl_run: Any) -> None:
    html = (rl_run.dir / "report.html").read_text()
    summary = rl_run.summary
    for section in ("Evaluation results", "Return curves", "Periodic evaluations",
                    "One evaluation episode", "Environment and agent", "Config",
                    "Timings and size", "Environment", "baseline: random policy"):  # fmt: skip
        assert section in html, section
    curve, losses, gif = images(html)
    assert 'alt="Return against environment steps"' in html
    for src in (curve, losses):
        assert base64.b64decode(src.partition(",")[2])[:4] == b"\x89PNG"
    assert gif.startswith("data:image/gif;base64,")
    assert base64.b64decode(gif.partition(",")[2]) == (rl_run.dir / "evaluation.gif").read_bytes()
    assert not re.search(r'(src|href)="(https?:)?//', html)
    # the table holds the run's own numbers: final evaluation beside the random policy
    assert f"{summary['eval']['return_mean']:.4f}" in html
    assert f"{summary['baseline']['return_mean']:.4f}" in html
    evaluations = [r for r in rl_run.history if "eval/return" in r]
    assert len(evaluations) >= 5  # every 128 of 768 steps
    assert html.count('<td class="num">') >= 3 * len(evaluations)
    for record in evaluations:
        assert f'<td class="num">{record["step"]}</td>' in html
    assert "CartPole-v1" in html and "Discrete(2)" in html  # env facts from gymnasium


@pytest.mark.slow
def test_rl_model_card_and_rebuild(rl_run: Any) -> None:
    card = (rl_run.dir / "MODEL_CARD.md").read_text()
    summary = rl_run.summary
    for heading in ("# Model card: cartpole-ppo", "## Intended use", "## Data", "## Training",
                    "## Limitations", "`ppo` agent", "`CartPole-v1`"):  # fmt: skip
        assert heading in card, heading
    row = (f"| mean return | {summary['eval']['return_mean']:.4f} | "
           f"{summary['baseline']['return_mean']:.4f} |")  # fmt: skip
    assert row in card
    path = rl_run.dir / "report.html"
    first = path.read_text()
    path.unlink()
    assert report(rl_run.dir) == path  # rebuilt from the run directory's files alone
    assert path.read_text() == first


def test_images_read_from_files_get_a_sample_grid(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("dark", "light")):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(8):
            pixels = np.full((12, 12, 3), 40 + 160 * c) + rng.integers(-20, 20, (12, 12, 3))
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "images" / name / f"{i}.png")
    overrides = {
        "data.source": {"name": "image-folder", "root": str(tmp_path / "images"), "size": 16},
        "data.batch_size": 4, "data.split": {"val": 0.25, "test": 0.25}, "data.num_workers": 0,
        "model": {"name": "cnn", "channels": [4]}, "baseline": None,
        "trainer.max_epochs": 1, "trainer.progress": "none",
    }  # fmt: skip
    run = torchlab.train("digits", overrides, output_dir=tmp_path / "runs")
    html = (run.dir / "report.html").read_text()
    assert html.count('alt="Training samples"') == 1
    assert 'alt="Tokens per text' not in html and 'alt="The series' not in html
    assert html.count('alt="Worst test predictions"') == 1 and "failed" not in html
    assert 'alt="Integrated gradients of the first test images"' in html


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


def open_page(browser: Browser, path: Path, artifact: str) -> tuple[dict[str, Any], list[Any]]:
    """Load a report, save a full-page screenshot; returns what the page shows and its errors."""
    browser.events.clear()
    browser.call("Page.navigate", url=path.resolve().as_uri())
    browser.wait_for("Page.loadEventFired")
    state = browser.call(
        "Runtime.evaluate",
        expression="""JSON.stringify({
            title: document.title,
            images: Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth})),
            sections: Array.from(document.querySelectorAll('section h2')).map(h => h.textContent)})""",
        returnByValue=True,
    )["result"]["value"]
    shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    (artifacts_dir() / artifact).write_bytes(base64.b64decode(shot["data"]))
    errors = [
        e for e in browser.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]  # fmt: skip
    return json.loads(state), errors


@pytest.mark.slow
def test_report_renders_in_headless_chromium(iris_run: Any, rl_run: Any, browser: Browser) -> None:
    for domain in ("Page", "Runtime", "Log"):
        browser.call(f"{domain}.enable")
    page, errors = open_page(browser, iris_run.dir / "report.html", "report-iris.png")
    assert errors == []
    assert page["title"] == "iris: torchlab run report"
    assert len(page["images"]) == 6  # with the reliability diagram and the columns' importance
    assert all(i["complete"] and i["width"] > 100 for i in page["images"]), page["images"]
    assert "Test results" in page["sections"] and "Environment" in page["sections"]
    assert "Error analysis" in page["sections"] and "Explanations" in page["sections"]
    assert "Calibration" in page["sections"]
    assert (artifacts_dir() / "report-iris.png").stat().st_size > 10_000

    page, errors = open_page(browser, rl_run.dir / "report.html", "report-cartpole-ppo.png")
    assert errors == []
    assert page["title"] == "cartpole-ppo: torchlab run report"
    assert len(page["images"]) == 3  # return curves, training losses, the evaluation GIF
    assert all(i["complete"] and i["width"] > 100 for i in page["images"]), page["images"]
    assert "Return curves" in page["sections"] and "Evaluation results" in page["sections"]
    assert (artifacts_dir() / "report-cartpole-ppo.png").stat().st_size > 10_000
