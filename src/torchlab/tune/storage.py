"""Where a study lives: SQLite for one process, a journal file or a database for many.

SQLite is a single file that several writers corrupt or deadlock under load, so a second
process on the same SQLite study is refused (an exclusive lock file is held while a worker
runs). Workers on the journal file (one machine or a shared filesystem) or on a database
server (several machines) are each started with the same command.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchlab.errors import ConfigError

ALTERNATIVES = (
    "use --storage journal (a journal file in the study folder: several workers on one machine "
    "or a shared filesystem) or --storage postgresql://USER@HOST/DB (workers on many machines)"
)


@dataclass
class Storage:
    """An Optuna storage and what a worker must hold while it uses it."""

    storage: Any
    description: str
    single_process: bool  # SQLite: no other worker can be running
    lock: Any = None  # the open lock file of a SQLite study

    def close(self) -> None:
        if self.lock is not None:
            self.lock.close()  # closing the file releases its flock
            self.lock = None


def open_storage(url: str | None, study_dir: Path) -> Storage:
    """``None`` (SQLite in the study folder), ``journal``, ``journal:PATH`` or a database URL."""
    import optuna

    study_dir.mkdir(parents=True, exist_ok=True)
    if url is None or url.startswith("sqlite:"):
        path = study_dir / "study.db" if url is None else Path(url.removeprefix("sqlite:///"))
        lock = _exclusive_lock(path)
        storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
        return Storage(storage, f"SQLite file {path}", single_process=True, lock=lock)
    if url == "journal" or url.startswith("journal:"):
        path = Path(url.partition(":")[2] or study_dir / "journal.log")
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return Storage(
            optuna.storages.JournalStorage(backend), f"journal file {path}", single_process=False
        )
    if "://" not in url:
        raise ConfigError(
            f"--storage '{url}' is not a storage; {ALTERNATIVES}, or leave it out for SQLite."
        )
    try:
        storage = _rdb(_driver(url))
    except (ImportError, ModuleNotFoundError) as exc:
        raise ConfigError(
            f"The database driver for '{_hide_password(url)}' is not installed ({exc}); for "
            "PostgreSQL run: pip install 'torchlab[tune]' (psycopg2-binary)."
        ) from None
    except Exception as exc:  # sqlalchemy's OperationalError: server down, bad credentials
        raise ConfigError(
            f"Cannot open the study database '{_hide_password(url)}': "
            f"{str(exc).splitlines()[0]}; check that the server runs and the URL is right."
        ) from None
    return Storage(storage, f"database {_hide_password(url)}", single_process=False)


def _rdb(url: str, attempts: int = 5) -> Any:
    """Open a database storage; workers starting together race to create its tables."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except sqlalchemy.exc.IntegrityError:  # another worker created a table first
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _driver(url: str) -> str:
    """``postgresql://`` with the driver that is installed (SQLAlchemy 2.1 assumes psycopg 3)."""
    import importlib.util

    if (
        url.startswith("postgresql://")
        and importlib.util.find_spec("psycopg") is None
        and importlib.util.find_spec("psycopg2") is not None
    ):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def _exclusive_lock(path: Path) -> Any:
    import fcntl

    lock = (path.parent / f".{path.name}.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ConfigError(
            f"Another process is already tuning the SQLite study '{path}'; SQLite allows one "
            f"worker only, so {ALTERNATIVES} for several workers."
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _hide_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    auth, at, host = rest.rpartition("@")
    if not at or ":" not in auth:
        return url
    return f"{scheme}{sep}{auth.partition(':')[0]}:***@{host}"


def fail_stale_trials(study: Any, grace_seconds: float, max_retries: int) -> list[int]:
    """Fail running trials whose worker went silent for ``grace_seconds``, and retry them.

    Workers write a ``heartbeat`` user attribute while a trial runs (see :class:`Heartbeat`).
    Optuna's own heartbeat exists only for database storages, so this one serves all of them.
    A failed trial that is retried is marked ``retried``: it does not count among the
    study's trials, its retry does. Returns the numbers of the trials failed here.
    """
    from optuna.trial import TrialState

    failed = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.user_attrs.get("heartbeat")
        if beat is None and trial.datetime_start is not None:
            beat = trial.datetime_start.timestamp()
        if beat is not None and now - beat < grace_seconds:
            continue
        retries = int(trial.user_attrs.get("retries", 0))
        retry = retries < max_retries and bool(trial.params)
        try:  # another worker may fail the same trial at the same moment: the first one wins
            study._storage.set_trial_user_attr(
                trial._trial_id,
                "error",
                f"its worker stopped (no heartbeat for over {grace_seconds:g} s)",
            )
            if retry:  # its retry takes its place among the study's --trials
                study._storage.set_trial_user_attr(trial._trial_id, "retried", True)
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except Exception:
            continue
        failed.append(trial.number)
        if retry:
            study.enqueue_trial(
                trial.params, user_attrs={"retry_of": trial.number, "retries": retries + 1}
            )
    return failed


class Heartbeat:
    """A daemon thread that stamps a trial's ``heartbeat`` user attribute every few seconds."""

    def __init__(self, trial: Any, interval: float) -> None:
        import threading

        self.trial, self.interval = trial, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="tune-heartbeat")

    def __enter__(self) -> Heartbeat:
        self.trial.set_user_attr("heartbeat", time.time())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            # A storage hiccup must not kill training; the next beat retries.
            with contextlib.suppress(Exception):
                self.trial.set_user_attr("heartbeat", time.time())
