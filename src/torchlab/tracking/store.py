"""Push a run folder to its MLflow run: create or continue the run, then send what the
server lacks. Each push is idempotent, so a push that fails halfway is simply done again.

``tracking.json`` in the run folder keeps, per tracking URI, the MLflow run's id (a resumed
run continues it) and the logged model. Which metric steps the server holds is asked of
the server itself when a push first connects, so no (metric, step) is logged twice.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from torchlab.errors import TorchlabError
from torchlab.files import write_json
from torchlab.notices import notice
from torchlab.tracking.settings import Settings

STATE_FILE = "tracking.json"
# Run files logged as artifacts when present (plus the plots beside them).
ARTIFACTS = (
    "config.yaml", "summary.json", "report.html", "MODEL_CARD.md", "model.safetensors",
    "metrics.jsonl", "data.json", "environment.json",
)  # fmt: skip
# A run folder's status as an MLflow run status.
STATUSES = {"completed": "FINISHED", "failed": "FAILED", "pruned": "KILLED"}
PARAM_VALUE_LIMIT = 6000  # MLflow's longest param value
BATCH = {"metrics": 1000, "params": 100}  # MLflow's largest log_batch

Exporter = Callable[[Path], Path]  # run folder -> its export folder


class Store:
    """One run folder's MLflow run on one tracking server.

    Args:
        run_dir: The run folder.
        settings: The server, experiment and model settings.
        exporter: Exports the run for its MLflow model (None: no model is logged).
    """

    def __init__(self, run_dir: Path, settings: Settings, exporter: Exporter | None = None):
        from mlflow import MlflowClient

        self.dir, self.settings, self.exporter = Path(run_dir), settings, exporter
        self.client = MlflowClient(tracking_uri=settings.uri, registry_uri=settings.uri)
        self.run_id: str | None = None
        self.logged: dict[str, int] = {}  # metric -> last step the server holds
        self.read = 0  # bytes of metrics.jsonl already pushed

    # --- the whole push --------------------------------------------------------------

    def push(self, final: bool = False) -> None:
        """Send new metrics; ``final``: also the files, the model and the run's status."""
        if self.run_id is None:
            self.connect(live=not final)
        self.push_metrics()
        if final:
            self.push_test_metrics()
            self.push_artifacts()
            if self.status() == "completed" and self.settings.log_model and self.exporter:
                self.push_model()
            self.push_status()

    # --- the run ---------------------------------------------------------------------

    def connect(self, live: bool) -> None:
        """Find or create the MLflow run, log its params and tags, learn what it holds."""
        entry = self.entry()
        run = self.existing_run(entry.get("run_id"))
        if run is None:
            run = self.client.create_run(
                experiment_id(self.client, self.settings),
                run_name=f"{self.config().get('name')}/{self.dir.name}",
            )
            self.save_entry({"run_id": run.info.run_id})
        self.run_id = run.info.run_id
        if live and run.info.status != "RUNNING":  # a resumed run trains again
            self.client.update_run(self.run_id, status="RUNNING")
        params = {k: v for k, v in flat_params(self.config()).items() if k not in run.data.params}
        tags = self.tags()
        for chunk in chunks(list(params.items()), BATCH["params"]):
            self.log_batch(params=[param(k, v) for k, v in chunk])
        self.log_batch(tags=[tag(k, v) for k, v in tags.items()])
        self.logged = {
            key: max(m.step for m in self.client.get_metric_history(self.run_id, key))
            for key in run.data.metrics
        }

    def existing_run(self, run_id: str | None) -> Any:
        if run_id is None:
            return None
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:  # deleted, or another server's: start a new one
            return None
        return run if run.info.lifecycle_stage == "active" else None

    def tags(self) -> dict[str, str]:
        """Recipe, kind, task, seed, versions, the run folder and the code's git commit."""
        from torchlab.kinds import kind_of

        config, environment = self.config(), read_json(self.dir / "environment.json")
        tags = {
            "torchlab.recipe": config.get("name"),
            "torchlab.kind": kind_of(config).name,
            "torchlab.task": (config.get("task") or {}).get("name"),
            "torchlab.seed": config.get("seed"),
            "torchlab.version": environment.get("torchlab"),
            "torch.version": environment.get("torch"),
            "torchlab.run_dir": str(self.dir),
            "torchlab.status": self.status(),
            "mlflow.source.git.commit": git_commit(),
        }
        return {k: str(v) for k, v in tags.items() if v is not None}

    def push_status(self) -> None:
        status = self.status()
        self.log_batch(tags=[tag("torchlab.status", status)])
        if status in STATUSES:
            self.client.set_terminated(self.run_id, STATUSES[status])

    # --- metrics, files, model -------------------------------------------------------

    def push_metrics(self) -> None:
        """Log the lines of ``metrics.jsonl`` written since the last push, each metric at
        each step once: a resumed run rewrites lines the server may already hold."""
        path = self.dir / "metrics.jsonl"
        if not path.exists():
            return
        if path.stat().st_size < self.read:  # cut back by a resume: read it again
            self.read = 0
        with path.open("rb") as f:
            f.seek(self.read)
            data = f.read()
        whole = data[: data.rfind(b"\n") + 1]  # a line being written waits for the next push
        self.log_records([json.loads(line) for line in whole.splitlines()])
        self.read += len(whole)

    def push_test_metrics(self) -> None:
        """The best weights' test metrics of ``summary.json``, at the run's last step."""
        summary = read_json(self.dir / "summary.json")
        if isinstance(summary.get("test"), dict) and summary["test"]:
            self.log_records([{"step": summary.get("steps", 0), **summary["test"]}])

    def log_records(self, records: list[dict[str, Any]]) -> None:
        """Log each numeric value of ``records`` whose metric the server lacks at that step."""
        logged = dict(self.logged)
        now = int(time.time() * 1000)
        metrics = []
        for record in records:
            step = int(record.get("step", 0))
            for key, value in record.items():
                if key == "step" or not is_number(value) or step <= logged.get(key, -1):
                    continue
                metrics.append(metric(key, float(value), now, step))
                logged[key] = step
        for chunk in chunks(metrics, BATCH["metrics"]):
            self.log_batch(metrics=chunk)
            for m in chunk:
                self.logged[m.key] = m.step

    def push_artifacts(self) -> None:
        """The run's files that the server lacks or holds at another size."""
        held = {f.path: f.file_size for f in self.client.list_artifacts(self.run_id)}
        for path in run_files(self.dir):
            if held.get(path.name) != path.stat().st_size:
                self.client.log_artifact(self.run_id, str(path))

    def push_model(self) -> None:
        """The trained model as an MLflow model (registered when asked), once."""
        from torchlab.tracking.model import log_model

        entry = self.entry()
        if "model" in entry:
            return
        try:
            export_dir = self.exporter(self.dir)  # type: ignore[misc]
        except TorchlabError as exc:  # a model no format holds: the run is tracked without it
            notice(f"The MLflow run of '{self.dir}' has no model: {exc}")
            return
        entry["model"] = log_model(self.settings, self.run_id, export_dir)  # type: ignore[arg-type]
        self.save_entry(entry)

    # --- the run folder's side -------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return yaml.safe_load((self.dir / "config.yaml").read_text())

    def status(self) -> str:
        return str(read_json(self.dir / "run.json").get("status", "running"))

    def entry(self) -> dict[str, Any]:
        """This server's record in ``tracking.json``."""
        return dict(read_json(self.dir / STATE_FILE).get(self.settings.uri, {}))

    def save_entry(self, entry: dict[str, Any]) -> None:
        state = read_json(self.dir / STATE_FILE)
        state[self.settings.uri] = {**state.get(self.settings.uri, {}), **entry}
        write_json(self.dir / STATE_FILE, state)

    def log_batch(self, **items: Any) -> None:
        self.client.log_batch(self.run_id, **items)  # type: ignore[arg-type]


def sync(run_dir: Path, settings: Settings, exporter: Exporter | None = None) -> str:
    """Push a run folder whole to its MLflow run (``torchlab track``); returns the run id."""
    store = Store(run_dir, settings, exporter)
    store.push(final=True)
    return str(store.run_id)


def experiment_id(client: Any, settings: Settings) -> str:
    """The id of the settings' experiment, created when it is new."""
    found = client.get_experiment_by_name(settings.experiment)
    if found is not None:
        return str(found.experiment_id)
    location = local_artifacts(settings.uri)
    return str(client.create_experiment(settings.experiment, artifact_location=location))


def run_files(folder: Path) -> Iterator[Path]:
    for name in ARTIFACTS:
        if (folder / name).is_file():
            yield folder / name
    yield from sorted(folder.glob("*.png"))  # learning curves and the report's plots


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": "0.1"}``; lists as JSON."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flat_params(value, f"{prefix}{key}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            flat[f"{prefix}{key}"] = text[:PARAM_VALUE_LIMIT]
    return flat


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def local_artifacts(uri: str) -> str | None:
    """Artifacts of a local SQLite store go beside it (``mlruns/``), as MLflow's own do."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlruns").as_uri()
    return None  # a server decides


def git_commit() -> str | None:
    """The commit of the code in the working directory, if it is a git checkout."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def metric(key: str, value: float, timestamp: int, step: int) -> Any:
    from mlflow.entities import Metric

    return Metric(key, value, timestamp, step)


def param(key: str, value: str) -> Any:
    from mlflow.entities import Param

    return Param(key, value)


def tag(key: str, value: str) -> Any:
    from mlflow.entities import RunTag

    return RunTag(key, value)
