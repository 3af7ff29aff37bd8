"""MLflow tracking against a real ``mlflow server`` (SQLite backend, local artifact store)
started by the tests on 127.0.0.1: what a training run logs, its model, a study's nested
trials, a killed and resumed run, and a server that dies while a run trains."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import run_cli

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.e2e  # each test trains through the CLI and talks to a server

CONFIG = {
    "extends": "iris",
    "name": "tracked",
    "trainer": {"max_epochs": 3, "log_every_n_steps": 1, "progress": "plain"},
}


class Server:
    """``mlflow server`` on a free port of 127.0.0.1, its store in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        mlflow_cli = Path(sys.executable).parent / "mlflow"
        log = (self.folder / "server.log").open("ab")
        self.process = subprocess.Popen(
            [str(mlflow_cli), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--artifacts-destination", str(self.folder / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        for _ in range(600):  # until /health answers, or the server has died
            if self.process.poll() is not None:
                pytest.fail((self.folder / "server.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        pytest.fail("mlflow server did not answer /health")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # its workers too
            self.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("mlflow"))
    running.start()
    yield running
    running.stop()


def write_config(folder: Path, **trainer: Any) -> Path:
    config = json.loads(json.dumps(CONFIG))
    config["trainer"].update(trainer)
    path = folder / "tracked.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def only_run(root: Path) -> Path:
    (run,) = (root / "runs" / "tracked").iterdir()
    return run


def mlflow_run(run_dir: Path, uri: str) -> Any:
    state = json.loads((run_dir / "tracking.json").read_text())
    return mlflow.MlflowClient(uri).get_run(state[uri]["run_id"])


def tracked_model(run_dir: Path, uri: str) -> str:
    """The model URI of a run's MLflow model, as its ``tracking.json`` keeps it."""
    return json.loads((run_dir / "tracking.json").read_text())[uri]["model"]["uri"]


def history(client: Any, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def jsonl_steps(run_dir: Path, key: str) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return sorted({r["step"] for r in map(json.loads, lines) if key in r})  # lr: steps, epochs


@pytest.fixture(scope="module")
def tracked_run(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run tracked on the server with its model registered as ``iris-mlp``."""
    folder = tmp_path_factory.mktemp("tracked")
    mlflow_settings = {"uri": server.uri, "experiment": "tests", "register": "iris-mlp"}
    write_config(folder, tracking={"mlflow": mlflow_settings})
    result = run_cli("train", "tracked.yaml", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "warning: MLflow" not in result.stderr
    return only_run(folder)


def test_a_local_store_gets_params_metrics_and_tags(tmp_path: Path) -> None:
    """The quick check of every test run: a local SQLite store, no server, no model."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    write_config(tmp_path, max_epochs=2, tracking={"mlflow": {"uri": uri, "log_model": False}})
    result = run_cli("train", "tracked.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = only_run(tmp_path)
    tracked = mlflow_run(run_dir, uri)
    assert tracked.info.status == "FINISHED"
    assert tracked.data.params["trainer.max_epochs"] == "2"
    assert tracked.data.tags["torchlab.recipe"] == "tracked"
    client = mlflow.MlflowClient(uri)
    assert history(client, tracked.info.run_id, "val/loss") == jsonl_steps(run_dir, "val/loss")
    assert "test/accuracy" in tracked.data.metrics


@pytest.mark.slow  # a server, a training, its export and model
def test_params_metrics_tags_and_files_arrive(tracked_run: Path, server: Server) -> None:
    run = mlflow_run(tracked_run, server.uri)
    client = mlflow.MlflowClient(server.uri)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "tests"
    assert run.data.params["optim.lr"] == str(yaml.safe_load((tracked_run / "config.yaml").read_text())["optim"]["lr"])  # fmt: skip
    assert run.data.params["trainer.max_epochs"] == "3"
    tags = run.data.tags
    assert tags["torchlab.recipe"] == "tracked"
    assert (tags["torchlab.kind"], tags["torchlab.task"]) == ("supervised", "classification")
    assert tags["torchlab.run_dir"] == str(tracked_run)
    assert tags["torchlab.seed"] == "0"
    assert {"torchlab.version", "torch.version"} <= set(tags)
    for key in ("train/loss_step", "val/loss", "epoch", "lr"):  # every step, each once
        assert history(client, run.info.run_id, key) == jsonl_steps(tracked_run, key)
    summary = json.loads((tracked_run / "summary.json").read_text())
    assert run.data.metrics["test/accuracy"] == pytest.approx(summary["test"]["test/accuracy"])
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    expected = {"config.yaml", "summary.json", "report.html", "MODEL_CARD.md"}
    assert expected | {"learning_curves.png", "model.safetensors"} <= files


@pytest.mark.slow  # a server, a training, its export and model
def test_the_registered_model_predicts_as_torchlab_predict(
    tracked_run: Path, server: Server, tmp_path: Path
) -> None:
    import pandas as pd
    from sklearn.datasets import load_iris

    rows = load_iris(as_frame=True).frame.drop(columns="target").sample(7, random_state=0)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    mlflow.set_tracking_uri(server.uri)
    model = mlflow.pyfunc.load_model("models:/iris-mlp/1")
    assert list(model.metadata.get_input_schema().input_names()) == list(rows.columns)
    served = model.predict(rows.reset_index(drop=True))
    cli = run_cli("predict", str(tracked_run / "exports" / "onnx"), "rows.csv", "--output", "p.csv", cwd=tmp_path)  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    expected = pd.read_csv(tmp_path / "p.csv")
    assert served["label"].tolist() == expected["label"].tolist()
    probabilities = [c for c in expected.columns if c.startswith("p_")]
    assert served[probabilities].to_numpy() == pytest.approx(expected[probabilities].to_numpy())


@pytest.mark.slow  # two trainings (or a study) beyond the module's run
def test_a_killed_and_resumed_run_logs_each_step_once(server: Server, tmp_path: Path) -> None:
    kill = {"name": "torchlab.testing:KillAtStep", "step": 9, "marker": str(tmp_path / "killed")}
    write_config(
        tmp_path,
        checkpoint_every_n_steps=4,
        callbacks=[kill],
        tracking={"mlflow": {"uri": server.uri, "log_model": False}},
    )
    killed = run_cli("train", "tracked.yaml", cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_dir = only_run(tmp_path)
    first = mlflow_run(run_dir, server.uri)
    resumed = run_cli("train", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    run = mlflow_run(run_dir, server.uri)
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    client = mlflow.MlflowClient(server.uri)
    for key in ("train/loss_step", "val/loss"):
        logged = history(client, run.info.run_id, key)
        assert logged == sorted(set(logged)) == jsonl_steps(run_dir, key)


STOPPER = '''
import os, signal

from torchlab.training.callbacks import Callback


class StopServer(Callback):
    """SIGKILL the tracking server's process group after epoch ``epoch``."""

    def __init__(self, *, pid: int, epoch: int) -> None:
        self.pid, self.epoch = pid, epoch

    def on_epoch_end(self, trainer, logs):
        if logs["epoch"] == self.epoch:
            os.killpg(self.pid, signal.SIGKILL)
'''


@pytest.mark.slow  # two trainings (or a study) beyond the module's run
def test_a_dead_server_costs_a_warning_and_track_uploads_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast: the server is gone
    server = Server(tmp_path)
    server.start()
    try:
        (tmp_path / "stopper.py").write_text(STOPPER)
        assert server.process is not None
        stop = {"name": "stopper:StopServer", "pid": server.process.pid, "epoch": 1}
        settings = {"uri": server.uri, "log_model": False}
        write_config(tmp_path, callbacks=[stop], tracking={"mlflow": settings})
        result = run_cli("train", "tracked.yaml", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "warning: MLflow tracking at" in result.stderr
        assert "torchlab track" in result.stderr
        run_dir = only_run(tmp_path)
        assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
        server.process.wait()
        server.start()  # the same store, back up
        synced = run_cli("track", str(run_dir), "--uri", server.uri, cwd=tmp_path)
        assert synced.returncode == 0, synced.stderr
        run = mlflow_run(run_dir, server.uri)
        assert run.info.status == "FINISHED"
        client = mlflow.MlflowClient(server.uri)
        for key in ("train/loss_step", "val/loss", "epoch"):
            assert history(client, run.info.run_id, key) == jsonl_steps(run_dir, key)
        assert "summary.json" in {f.path for f in client.list_artifacts(run.info.run_id)}
    finally:
        server.stop()


@pytest.mark.slow  # two trainings (or a study) beyond the module's run
def test_a_study_is_a_parent_run_with_its_trials_nested(server: Server, tmp_path: Path) -> None:
    # Trial 0 learns; trial 1 cannot (lr 1e-7), so the median pruner stops it after epoch 1.
    trial = {"optim.name": "adamw", "model.dropout": 0.0}
    study = {
        "extends": "iris",
        "name": "study",
        "trainer": {"max_epochs": 2, "progress": "none", "tracking": {"mlflow": {"uri": server.uri}}},
        "tune": {
            "metric": "val/accuracy",
            "pruner": {"name": "median", "startup_trials": 1, "warmup_epochs": 0},
            "enqueue": [{**trial, "optim.lr": 0.05}, {**trial, "optim.lr": 1e-7}],
            "space": {"optim.lr": {"type": "float", "low": 1e-7, "high": 1e-1, "log": True}},
        },
    }  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    result = run_cli("tune", "study.yaml", "--trials", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    client = mlflow.MlflowClient(server.uri)
    state = json.loads((tmp_path / "studies" / "study" / "tracking.json").read_text())
    parent = client.get_run(state[server.uri]["run_id"])
    assert parent.info.status == "FINISHED" and "best/val/accuracy" in parent.data.metrics
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    trials = sorted((r.data.tags["optuna.trial"], r.data.tags["torchlab.state"], r.info.status) for r in children)  # fmt: skip
    assert trials == [("0", "complete", "FINISHED"), ("1", "pruned", "KILLED")]
    assert not any(r.outputs and r.outputs.model_outputs for r in children)  # no model each


@pytest.mark.slow  # two trainings beyond the module's run
def test_a_cv_is_a_parent_run_with_its_folds_nested(server: Server, tmp_path: Path) -> None:
    write_config(tmp_path, max_epochs=1, tracking={"mlflow": {"uri": server.uri}})
    result = run_cli("cv", "tracked.yaml", "--folds", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (folder,) = (tmp_path / "runs" / "tracked").glob("cv-*")
    client = mlflow.MlflowClient(server.uri)
    state = json.loads((folder / "tracking.json").read_text())
    parent = client.get_run(state[server.uri]["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["torchlab.kind"] == "cv"
    summary = json.loads((folder / "summary.json").read_text())
    accuracy = summary["metrics"]["test/accuracy"]
    assert parent.data.metrics["test/accuracy/mean"] == pytest.approx(accuracy["torchlab"]["mean"])
    assert parent.data.tags["verdict.test/accuracy"] == accuracy["verdict"]
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(r.data.tags["torchlab.fold"] for r in children) == ["fold-0-0", "fold-0-1"]


@pytest.mark.slow  # two trainings, exports and models
def test_text_and_image_models_predict_as_torchlab_predict(tmp_path: Path) -> None:
    """Texts in a ``text`` column, images as paths or bytes in an ``image`` column, through
    a local store (no server): the loaded MLflow model answers as ``torchlab predict``."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    import torchlab

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    quick = {"trainer.max_epochs": 1, "trainer.progress": "none", "baseline": None}

    texts = ["good phone, love it", "bad phone, broke"] * 12
    pd.DataFrame({"text": texts, "label": ["good", "bad"] * 12}).to_csv(tmp_path / "t.csv")
    source = {"name": "text-csv", "path": str(tmp_path / "t.csv"), "max_length": 16,
              "tokenizer": {"kind": "word", "vocab_size": 50, "min_frequency": 1}}  # fmt: skip
    reviews = torchlab.train(
        "bbc-lstm", {**quick, "data.source": source, "data.split": {"val": 0.25, "test": 0.25}},
        output_dir=tmp_path / "runs",
    )  # fmt: skip
    torchlab.track(reviews.dir, uri=uri, experiment="own")
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(tracked_model(reviews.dir, uri))
    new = ["I love this phone", "it broke"]
    pd.testing.assert_frame_equal(
        model.predict(pd.DataFrame({"text": new})), torchlab.predict(reviews, new)
    )

    rng = np.random.default_rng(0)
    for name, shade in (("dark", 40), ("light", 210)):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(rng.normal(shade, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / name / f"{i}.png")
    photos = torchlab.train(
        "digits",
        {**quick, "data.source": {"name": "image-folder", "root": str(tmp_path / "photos"),
                                  "size": 16},
         "model": {"name": "cnn", "channels": [4]}, "data.split": {"val": 0.25, "test": 0.25}},
        output_dir=tmp_path / "runs",
    )  # fmt: skip
    torchlab.track(photos.dir, uri=uri, experiment="own")
    model = mlflow.pyfunc.load_model(tracked_model(photos.dir, uri))
    paths = [
        str(tmp_path / "photos" / "dark" / "0.png"),
        str(tmp_path / "photos" / "light" / "1.png"),
    ]
    expected = torchlab.predict(photos, paths)
    by_path = model.predict(pd.DataFrame({"image": paths}))
    pd.testing.assert_frame_equal(by_path, expected, atol=1e-5)
    by_bytes = model.predict(pd.DataFrame({"image": [Path(p).read_bytes() for p in paths]}))
    columns = [c for c in expected.columns if c != "id"]
    pd.testing.assert_frame_equal(by_bytes[columns], expected[columns], atol=1e-5)


@pytest.mark.slow  # an RL training
def test_an_rl_run_logs_its_evaluation_returns(tmp_path: Path) -> None:
    import torchlab

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ppo = {
        "env.num_envs": 2, "agent.n_steps": 16, "agent.batch_size": 32, "agent.n_epochs": 1,
        "agent.hidden": [16], "trainer.total_steps": 96, "trainer.eval_every": 32,
        "trainer.eval_episodes": 1, "trainer.record_gif": False, "trainer.progress": "none",
        "trainer.tracking": {"mlflow": {"uri": uri, "experiment": "rl"}},
    }  # fmt: skip
    run = torchlab.train("cartpole-ppo", ppo, output_dir=tmp_path / "runs")
    tracked = mlflow_run(run.dir, uri)
    client = mlflow.MlflowClient(uri)
    assert history(client, tracked.info.run_id, "eval/return") == jsonl_steps(
        run.dir, "eval/return"
    )
    assert tracked.data.tags["torchlab.kind"] == "rl"
    assert tracked.info.status == "FINISHED"


@pytest.mark.slow  # a training and a model upload
def test_a_forecaster_model_forecasts_from_a_history_as_torchlab_predict(tmp_path: Path) -> None:
    import pandas as pd

    import torchlab

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = {"trainer.max_epochs": 2, "trainer.progress": "none", "baseline": None,
                 "task.intervals": {"coverage": 0.8}}  # fmt: skip
    run = torchlab.train("co2", overrides, output_dir=tmp_path / "runs")
    torchlab.track(run.dir, uri=uri, experiment="series")
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(tracked_model(run.dir, uri))
    tail = run.featurizer.tails[0]  # the end of the run's own data
    history = pd.DataFrame(
        {"timestamp": pd.DatetimeIndex(tail.index), "co2": [r[0] for r in tail.target]}
    )
    expected = torchlab.predict(run, [], horizon=run.featurizer.horizon)
    pd.testing.assert_frame_equal(model.predict(history), expected, check_dtype=False, rtol=1e-5)
    assert model.metadata.get_input_schema().input_names() == ["timestamp", "co2"]
