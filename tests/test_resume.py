"""A run killed with SIGKILL and resumed ends bit-identical to an uninterrupted run (CPU)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from conftest import run_cli

CONFIG = {
    "extends": "digits",
    "name": "resume",
    "data": {"batch_size": 64},
    "model": {"channels": [8, 16], "dropout": 0.3},  # dropout: the RNG stream matters
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "schedule": {"name": "cosine", "warmup_epochs": 0.5},
    "trainer": {
        "max_epochs": 3,
        "checkpoint_every_n_steps": 7,
        "log_every_n_steps": 3,
        "progress": "plain",
        "early_stopping": {"patience": 5},
        "callbacks": [
            {"name": "ema", "decay": 0.99},  # averaged weights are swapped in at epoch ends
            {"name": "torchlab.testing:KillAtStep", "step": 31, "marker": "MARKER"},
        ],
    },
}


def same_weights(a: Path, b: Path) -> bool:
    first, second = load_file(a), load_file(b)
    return first.keys() == second.keys() and all(first[k].equal(second[k]) for k in first)


def only_run(root: Path) -> Path:
    (run,) = list((root / "resume").iterdir())
    return run


def write_config(folder: Path, kill_step: int) -> Path:
    marker = folder / "killed-once"
    config = json.loads(json.dumps(CONFIG).replace("MARKER", str(marker)))
    config["trainer"]["callbacks"][-1]["step"] = kill_step
    (folder / "resume.yaml").write_text(yaml.safe_dump(config))
    return marker


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same training, never interrupted."""
    folder = tmp_path_factory.mktemp("reference")
    write_config(folder, kill_step=0).touch()  # the marker exists: never killed
    result = run_cli("train", "resume.yaml", "--output-dir", "ref", cwd=folder)
    assert result.returncode == 0, result.stderr
    return only_run(folder / "ref")


@pytest.mark.slow
# 20 steps an epoch, checkpoints every 7 steps and at epoch ends. Killed at step 21 (before
# that step's checkpoint) it resumes from the epoch-end checkpoint, whose model holds the EMA
# weights; killed at 31, from the mid-epoch checkpoint of step 28.
@pytest.mark.parametrize(
    ("kill_step", "resumed_from"),
    [(21, "step-000000020-e0001b000000"), (31, "step-000000028-e0001b000008")],
)
def test_killed_run_resumes_bit_identical(
    kill_step: int, resumed_from: str, reference: Path, tmp_path: Path
) -> None:
    write_config(tmp_path, kill_step)
    killed = run_cli("train", "resume.yaml", "--output-dir", "killed", cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = only_run(tmp_path / "killed")
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    assert not (run / "summary.json").exists()  # a killed run never looks complete

    resumed = run_cli("train", "--resume", str(run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr

    ref = reference
    assert same_weights(ref / "model.safetensors", run / "model.safetensors"), "best weights differ"
    last = sorted((ref / "checkpoints").iterdir())[-1].name
    final = Path("checkpoints") / last / "model.safetensors"
    assert same_weights(ref / final, run / final), "final weights differ after resume"
    assert (ref / "metrics.jsonl").read_text() == (run / "metrics.jsonl").read_text()
    assert (
        json.loads((ref / "summary.json").read_text())["test"]
        == json.loads((run / "summary.json").read_text())["test"]
    )
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["resumed_from"].endswith(resumed_from)


@pytest.mark.slow  # four CLI processes
def test_resume_refuses_a_changed_config(tmp_path: Path) -> None:
    done = run_cli("train", "iris", "trainer.max_epochs=1", "--output-dir", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run,) = list((tmp_path / "runs" / "iris").iterdir())
    changed = run_cli("train", "--resume", str(run), "optim.lr=0.5", cwd=tmp_path)
    assert changed.returncode == 2
    assert "optim.lr" in changed.stderr and "Traceback" not in changed.stderr
    again = run_cli("train", "--resume", str(run), cwd=tmp_path)
    assert again.returncode == 2 and "already completed" in again.stderr
    longer = run_cli("train", "--resume", str(run), "trainer.max_epochs=2", cwd=tmp_path)
    assert longer.returncode == 0, longer.stderr
    epochs = [
        r
        for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if "train/loss" in r
    ]
    assert [r["epoch"] for r in epochs] == [0, 1]


@pytest.mark.slow  # four CLI processes
def test_a_schedule_laid_out_over_the_epochs_cannot_be_extended(tmp_path: Path) -> None:
    done = run_cli("train", "digits", "trainer.max_epochs=1", "--output-dir", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run,) = list((tmp_path / "runs" / "digits").iterdir())
    longer = run_cli("train", "--resume", str(run), "trainer.max_epochs=2", cwd=tmp_path)
    assert longer.returncode == 2 and "onecycle" in longer.stderr
