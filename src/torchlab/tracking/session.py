"""Tracking while a run trains: a background thread pushes the run folder to MLflow after
every epoch, so a slow or dead server never holds training up.

The buffer is the run folder itself: the thread reads what is new in it at each push, so a
server that is down costs no memory, only a warning. A push that fails is tried again at
the next epoch; the last one, when training ends (or fails), also sends the files, the
model and the run's status. Whatever did not arrive is sent later by ``torchlab track``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torchlab.notices import notice
from torchlab.tracking.settings import Settings, settings_for
from torchlab.tracking.store import Exporter, Store
from torchlab.training.callbacks import Callback

# MLflow retries a failed request up to 7 times with growing pauses (minutes in all); the
# session retries at every epoch instead, so each request gives up sooner. A user's own
# environment settings win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
FINAL_WAIT_S = 600.0  # the longest the end of training waits for the last push
CONNECT_WAIT_S = 15.0  # the longest training waits at its start for the MLflow run
PUSH_INTERVAL_S = 2.0  # while training, pushes come at most this often


@contextmanager
def tracked(
    run_dir: Path, config: Any, main: bool, exporter: Exporter | None = None
) -> Iterator[list[Any]]:
    """Track a training run in MLflow when its config or the environment asks for it:
    yields the callbacks that ask for pushes while it trains (none when untracked, and on
    ranks other than 0), and pushes the rest when training ends, however it ends."""
    settings = settings_for(config) if main else None
    if settings is None:
        yield []
        return
    session = Session(run_dir, settings, exporter)
    session.start()
    try:
        yield [session.callback]
    finally:
        session.finish()


class Session:
    """Pushes one run folder to MLflow from a background thread.

    Args:
        run_dir: The run folder.
        settings: Where it is tracked.
        exporter: Exports the run for its MLflow model.
    """

    def __init__(self, run_dir: Path, settings: Settings, exporter: Exporter | None = None):
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.dir, self.settings = Path(run_dir), settings
        self.store = Store(run_dir, settings, exporter)
        self.wake = threading.Event()
        self.connected = threading.Event()
        self.ending = threading.Event()
        self.final = False
        self.warned = False
        self.complete = False  # the final push arrived whole
        self.thread = threading.Thread(target=self.work, name="torchlab-mlflow", daemon=True)
        self.callback = TrackingCallback(self)

    def start(self) -> None:
        """Start pushing. The MLflow run is found or created before training starts (the
        store's first use is its costliest: a new SQLite store builds its tables), waiting at
        most :data:`CONNECT_WAIT_S`, so epochs pay only for their own metrics."""
        self.thread.start()
        self.connected.wait(CONNECT_WAIT_S)

    def nudge(self) -> None:
        """Push what is new; pushes asked for while one runs merge into one."""
        self.wake.set()

    def finish(self) -> None:
        """Push the rest (files, model, status) and wait for it, warning when it failed."""
        self.final = True
        self.ending.set()
        self.wake.set()
        self.thread.join(FINAL_WAIT_S)
        if not self.complete:
            notice(
                f"Not all of run '{self.dir}' reached MLflow at {self.settings.uri}; the run "
                f"folder has it all: upload the rest with torchlab track {self.dir}"
            )

    def work(self) -> None:
        try:
            self.store.connect(live=True)
        except Exception as exc:  # tried again by the first push
            self.warn(exc)
        finally:
            self.connected.set()
        while True:
            self.wake.wait()
            self.wake.clear()
            final = self.final
            try:
                self.store.push(final=final)
                self.complete = final
            except Exception as exc:  # a tracking failure never stops training
                self.warn(exc)
            if final:
                return
            self.ending.wait(PUSH_INTERVAL_S)

    def warn(self, exc: Exception) -> None:
        if self.warned:
            return
        self.warned = True
        problem = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        notice(
            f"MLflow tracking at {self.settings.uri} failed ({problem}); training goes on, "
            "and the next epochs try again."
        )


class TrackingCallback(Callback):
    """Asks its session for a push when training starts (the MLflow run and its params;
    a resumed run's metrics.jsonl is cut back by then) and after every epoch (its line is
    written by then)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def on_fit_start(self, trainer: Any) -> None:
        self.session.nudge()

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        self.session.nudge()

    def on_iteration_end(self, loop: Any) -> None:  # an RL loop's hook
        self.session.nudge()
