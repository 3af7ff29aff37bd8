"""A study (``torchlab tune``) or a cross-validation as a parent MLflow run, each trial's
or fold's own run nested under it with its state. Like every push, a failure here costs a
warning and leaves the study alone; the runs themselves stay in their folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchlab.files import write_json
from torchlab.notices import notice
from torchlab.tracking.settings import Settings
from torchlab.tracking.store import STATE_FILE, STATUSES, experiment_id, read_json


class ParentRun:
    """The MLflow run of a folder of runs (a study's, a cross-validation's).

    Args:
        settings: Where it is tracked.
        folder: The study's or cross-validation's folder; its ``tracking.json`` keeps the
            parent run's id, so a resumed study continues it.
        name: The run's name in MLflow.
        tags: Tags of the parent run.
    """

    def __init__(self, settings: Settings, folder: Path, name: str, tags: dict[str, str]):
        self.settings, self.folder, self.run_id = settings, Path(folder), None
        self.failed = False
        self.guarded(self.connect, name, tags)

    def connect(self, name: str, tags: dict[str, str]) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(self.settings.uri)
        state = read_json(self.folder / STATE_FILE)
        self.run_id = state.get(self.settings.uri, {}).get("run_id")
        if self.run_id is None:
            experiment = experiment_id(self.client, self.settings)
            self.run_id = self.client.create_run(experiment, run_name=name, tags=tags).info.run_id
            state[self.settings.uri] = {"run_id": self.run_id}
            write_json(self.folder / STATE_FILE, state)
        else:
            self.client.update_run(self.run_id, status="RUNNING")

    def nest(self, run_dir: Path | None, state: str, tags: dict[str, str] | None = None) -> None:
        """Put a child's run (already pushed by its own training) under this one, with its
        state: ``complete``, ``pruned`` or ``failed``."""
        if run_dir is not None:
            self.guarded(self._nest, Path(run_dir), state, tags or {})

    def _nest(self, run_dir: Path, state: str, tags: dict[str, str]) -> None:
        child = read_json(run_dir / STATE_FILE).get(self.settings.uri, {}).get("run_id")
        if child is None or self.run_id is None:
            return  # the child never reached the server: torchlab track uploads it
        for key, value in {
            "mlflow.parentRunId": self.run_id,
            "torchlab.state": state,
            **tags,
        }.items():
            self.client.set_tag(child, key, value)
        status = {"complete": "completed"}.get(state, state)
        if status in STATUSES:
            self.client.set_terminated(child, STATUSES[status])

    def finish(self, metrics: dict[str, float], tags: dict[str, str]) -> None:
        self.guarded(self._finish, metrics, tags)

    def _finish(self, metrics: dict[str, float], tags: dict[str, str]) -> None:
        if self.run_id is None:
            return
        for key, value in metrics.items():
            self.client.log_metric(self.run_id, key, value)
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)
        self.client.set_terminated(self.run_id, "FINISHED")

    def guarded(self, action: Any, *args: Any) -> None:
        try:
            action(*args)
        except Exception as exc:  # a tracking failure never stops the study
            if not self.failed:
                self.failed = True
                problem = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                notice(
                    f"MLflow tracking at {self.settings.uri} failed ({problem}); the study goes on."
                )
