"""Optuna studies over real small runs (iris): pruning, failures, resume, storages, workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from torch import nn

from torchlab.config import load_config
from torchlab.errors import ConfigError
from torchlab.tune import tune
from torchlab.tune.storage import open_storage

TESTS = Path(__file__).parent


# --- models the failing-trial tests name as test_tune:<builder> ----------------------------


def exploding(
    spec: Any, num_outputs: int, /, *, hidden: list[int] = (), dropout: float = 0.0
) -> nn.Module:
    """A model whose forward raises, as a broken user model would."""

    class Exploding(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("exploding model: forward failed on purpose")

    return Exploding(spec.input_shape[0], num_outputs)


def nan_in_eval(
    spec: Any, num_outputs: int, /, *, hidden: list[int] = (), dropout: float = 0.0
) -> nn.Module:
    """Trains normally but predicts NaN in eval mode, so every validation loss is NaN."""

    class NanInEval(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = super().forward(x)
            return out if self.training else out * float("nan")

    return NanInEval(spec.input_shape[0], num_outputs)


def write_config(folder: Path, tune_section: dict[str, Any], **top: Any) -> Path:
    config = {
        "extends": "iris",
        "trainer": {"max_epochs": 3, "progress": "none"},
        "tune": tune_section,
        **top,
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


SPACE = {
    "optim.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.3},
    "optim.name": {
        "type": "categorical",
        "choices": ["adamw", "sgd"],
        "when": {"sgd": {"optim.momentum": {"type": "float", "low": 0.5, "high": 0.95}}},
    },
}


def trials_of(folder: Path, name: str, storage: Any = None) -> list[optuna.trial.FrozenTrial]:
    storage = storage or f"sqlite:///{folder / 'study.db'}"
    return optuna.load_study(study_name=name, storage=storage).get_trials()


@pytest.mark.slow
def test_study_with_pruning_writes_best_recipe_and_resumes(tmp_path: Path) -> None:
    # Trial 0 learns, trial 1 cannot (lr 1e-7): the median pruner must stop trial 1 after
    # its first epoch, since it is far below trial 0 there.
    config = write_config(
        tmp_path,
        {
            "metric": "val/accuracy",
            "pruner": {"name": "median", "startup_trials": 1, "warmup_epochs": 0},
            "enqueue": [
                {"optim.name": "adamw", "optim.lr": 0.05, "model.dropout": 0.0},
                {
                    "optim.name": "sgd",
                    "optim.lr": 1e-7,
                    "model.dropout": 0.0,
                    "optim.momentum": 0.5,
                },
            ],
            "space": {
                **SPACE,
                "optim.lr": {"type": "float", "low": 1e-7, "high": 1e-1, "log": True},
            },
        },
    )
    folder = tmp_path / "study"
    result = tune(config, trials=3, study_dir=folder)

    trials = trials_of(folder, "study")
    assert [t.state for t in trials[:2]] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert len(trials) == 3
    assert result.direction == "maximize" and result.metric == "val/accuracy"
    assert result.best_value == max(t.value for t in trials if t.state == TrialState.COMPLETE)
    # the pruned trial's run directory says so
    pruned_dir = Path(trials[1].user_attrs["run_dir"])
    assert '"status": "pruned"' in (pruned_dir / "run.json").read_text()

    best = load_config(result.best_config)  # a ready-to-run recipe
    assert best.tune is None
    for key, value in result.best_params.items():
        section, _, name = key.partition(".")
        assert getattr(getattr(best, section), name) == value
    assert {p.name for p in result.plots} >= {"optimization_history.png", "slice.png"}
    assert all(p.stat().st_size > 1000 for p in result.plots)
    assert (folder / "trials.csv").read_text().count("\n") == 4
    hparams = sorted(p.name for p in (folder / "tensorboard").glob("trial-*"))
    assert hparams == ["trial-0000", "trial-0001", "trial-0002"]  # complete and pruned alike
    assert all(any((folder / "tensorboard" / h).rglob("events.out.tfevents.*")) for h in hparams)

    # Running the same command again resumes: only the missing trial runs.
    tune(config, trials=4, study_dir=folder)
    trials = trials_of(folder, "study")
    assert len(trials) == 4 and [t.number for t in trials] == [0, 1, 2, 3]


@pytest.mark.e2e  # a whole study
def test_failing_and_nan_trials_are_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "metric": "val/loss",
            "pruner": "none",
            "enqueue": [
                {"model.name": "test_tune:exploding"},
                {"model.name": "test_tune:nan_in_eval"},
            ],
            "space": {
                "model.name": {
                    "type": "categorical",
                    "choices": ["test_tune:exploding", "test_tune:nan_in_eval", "mlp"],
                }
            },
        },
        trainer={"max_epochs": 2, "progress": "none", "monitor": "train/loss"},
    )
    folder = tmp_path / "study"
    result = tune(config, trials=2, study_dir=folder)

    raised, nan = trials_of(folder, "study")
    assert raised.state == TrialState.FAIL and nan.state == TrialState.FAIL
    assert "exploding model: forward failed on purpose" in raised.user_attrs["error"]
    assert nan.user_attrs["error"] == "val/loss was nan in every epoch"
    assert result.best_config is None and result.counts == {"fail": 2}
    assert "forward failed on purpose" in (folder / "trials.csv").read_text()


def test_config_errors_come_before_any_trial(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, {"space": {"optim.lrr": {"type": "float", "low": 0.1, "high": 0.2}}}
    )
    with pytest.raises(ConfigError, match=r"optim\.lrr.*Did you mean 'optim\.lr'"):
        tune(config, study_dir=tmp_path / "study")
    assert not (tmp_path / "study" / "trials").exists()
    with pytest.raises(ConfigError, match="has no tune: section"):
        tune("iris", study_dir=tmp_path / "other")
    with pytest.raises(ConfigError, match=r"tune\.space\.x.*'low' <= 'high'"):
        load_config("iris", {"tune": {"space": {"x": {"type": "int", "low": 3, "high": 1}}}})
    with pytest.raises(ConfigError, match=r"'when' names \['sgdd'\]"):
        load_config(
            "iris",
            {
                "tune": {
                    "space": {
                        "optim.name": {
                            "type": "categorical",
                            "choices": ["sgd"],
                            "when": {"sgdd": {}},
                        }
                    }
                }
            },
        )


def test_sqlite_refuses_a_second_worker_and_names_the_alternatives(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"space": SPACE})
    folder = tmp_path / "study"
    held = open_storage(None, folder)  # as a first worker holds it (an flock on the lock file)
    try:
        with pytest.raises(ConfigError, match=r"SQLite allows one worker.*journal.*postgresql://"):
            tune(config, trials=1, study_dir=folder)
    finally:
        held.close()
    with pytest.raises(ConfigError, match="is not a storage"):
        tune(config, trials=1, study_dir=folder, storage="redis-please")


# --- several worker processes -----------------------------------------------------------


def start_worker(
    config: Path, folder: Path, storage: str, trials: int, *extra: str
) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "torchlab", "tune", str(config), *extra,
         "--trials", str(trials), "--storage", storage, "--study-dir", str(folder)],
        cwd=folder.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def check_workers_shared_the_study(
    trials: list[Any], n: int, workers: int, worker_pids: set[int]
) -> None:
    """N trials done between the workers, each recorded once, with its own run directory."""
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials)))
    # Each worker checks the count before it starts a trial, so at most workers - 1 extra
    # trials can start in the instant between one worker's check and another's start.
    assert n <= len(trials) <= n + workers - 1
    assert all(t.state == TrialState.COMPLETE for t in trials)
    run_dirs = [t.user_attrs["run_dir"] for t in trials]
    assert len(set(run_dirs)) == len(run_dirs)
    assert {t.user_attrs["pid"] for t in trials} <= worker_pids


@pytest.mark.slow
def test_two_workers_on_journal_storage_share_the_trials(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, {"pruner": "none", "space": SPACE}, trainer={"max_epochs": 2, "progress": "none"}
    )
    folder = tmp_path / "study"
    folder.mkdir()
    workers = [start_worker(config, folder, "journal", 4) for _ in range(2)]
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / "journal.log"))
    )
    check_workers_shared_the_study(
        trials_of(folder, "study", storage), 4, 2, {w.pid for w in workers}
    )
    assert (folder / "best.yaml").is_file()


@pytest.mark.slow
def test_a_killed_worker_leaves_a_trial_that_is_failed_and_retried(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {"pruner": "none", "space": SPACE, "grace_seconds": 2, "heartbeat_seconds": 0.5},
        trainer={"max_epochs": 400, "progress": "none"},
    )
    folder = tmp_path / "study"
    folder.mkdir()
    worker = start_worker(config, folder, "journal", 1)
    journal = folder / "journal.log"
    storage = None
    trial_runs = folder / "trials" / "0000"
    # Wait until its trial runs, has a heartbeat and a run folder, then kill it.
    while worker.poll() is None:
        if journal.exists() and list(trial_runs.glob("*/*/run.json")):
            storage = storage or optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(journal))
            )
            running = [
                t for t in trials_of(folder, "study", storage)
                if t.state == TrialState.RUNNING and "heartbeat" in t.user_attrs
            ]  # fmt: skip
            if running:
                break
        time.sleep(0.2)
    assert worker.poll() is None, worker.communicate()[0]
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    stale = trials_of(folder, "study", storage)[0]
    assert stale.state == TrialState.RUNNING

    # A new worker, after the grace period, fails the stale trial and retries its parameters.
    time.sleep(2.5)
    retry = start_worker(config, folder, "journal", 2, "trainer.max_epochs=2")
    output = retry.communicate(timeout=600)[0]
    assert retry.returncode == 0, output
    first, second, third = trials_of(folder, "study", storage)
    assert first.state == TrialState.FAIL
    assert "its worker stopped" in first.user_attrs["error"]
    assert second.state == TrialState.COMPLETE and second.user_attrs["retry_of"] == 0
    assert second.params == first.params
    assert third.state == TrialState.COMPLETE  # the retry took the killed trial's place
    (run_json,) = trial_runs.glob("*/*/run.json")
    assert json.loads(run_json.read_text())["status"] == "failed"


# --- PostgreSQL, when a server can be started here ----------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A PostgreSQL server on 127.0.0.1 in a temporary folder, stopped afterwards."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        found = [
            p for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        ] if Path("/usr/lib/postgresql").is_dir() else []  # fmt: skip
        if not found:
            pytest.skip(
                "PostgreSQL is not installed (no initdb/pg_ctl; Debian package 'postgresql')"
            )
        initdb, pg_ctl = str(found[-1]), str(found[-1].with_name("pg_ctl"))
    pytest.importorskip(
        "psycopg2", reason="psycopg2 is not installed (pip install psycopg2-binary)"
    )
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="torchlab-pg-"))  # outside pytest's 0700 folders
    data = base / "pgdata"
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser, so PostgreSQL cannot be started")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to start the server as")
        prefix = ["runuser", "-u", "postgres", "--"]
        base.chmod(0o777)
    port = free_port()
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-h 127.0.0.1 -p {port} -k {base}"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "pg.log"), "-w", "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_on_postgresql_share_the_trials(tmp_path: Path, postgres: str) -> None:
    config = write_config(
        tmp_path, {"pruner": "none", "space": SPACE}, trainer={"max_epochs": 2, "progress": "none"}
    )
    folder = tmp_path / "study"
    folder.mkdir()
    workers = [start_worker(config, folder, postgres, 4) for _ in range(2)]
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert "fail" not in outputs[0] + outputs[1], (folder / "trials.csv").read_text()
    check_workers_shared_the_study(
        trials_of(folder, "study", open_storage(postgres, folder).storage),
        4,
        2,
        {w.pid for w in workers},
    )
