"""DDP on CPU with gloo under torchrun: ranks agree, match one process on the combined batch,
a job that loses a rank is restarted by torchrun and resumes from its last checkpoint, and
one that cannot go on names the rank that failed and why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import run_cli


def write_data(folder: Path) -> None:
    """128 rows: 64 train, 32 val, 32 test, so 2 ranks x 8 equal 1 process x 16 exactly."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 6))
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)])
    frame["y"] = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "yes", "no")
    frame.to_csv(folder / "data.csv", index=False)


def write_config(folder: Path, batch_size: int, callbacks: list[dict] | None = None) -> Path:
    config = {
        "name": "ddp",
        "data": {
            "source": {"name": "csv", "path": str(folder / "data.csv"), "target": "y"},
            "batch_size": batch_size,
            "split": {"val": 0.25, "test": 0.25},
        },
        "model": {"name": "mlp", "hidden": [16]},  # no dropout, no batch norm: ranks see alike
        "task": "classification",
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "trainer": {
            "max_epochs": 3,
            "progress": "plain",
            "checkpoint_every_n_steps": 2,
            "callbacks": callbacks or [],
        },
    }
    path = folder / f"ddp-{batch_size}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def torchrun(
    folder: Path, *args: str, restarts: int = 0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "--max-restarts",
        str(restarts),
        "-m",
        "torchlab",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", **(env or {})}
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env, timeout=600)


def final_weights(root: Path) -> dict[str, torch.Tensor]:
    (run,) = [p for p in (root / "ddp").iterdir() if p.is_dir()]
    last = sorted((run / "checkpoints").iterdir())[-1]
    return load_file(last / "model.safetensors")


def epoch_logs(root: Path) -> list[dict[str, float]]:
    (run,) = [p for p in (root / "ddp").iterdir() if p.is_dir()]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "val/loss" in r]


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_on_the_combined_batch(tmp_path: Path) -> None:
    write_data(tmp_path)
    per_rank = [{"name": "torchlab.testing:SaveWeightsPerRank", "folder": str(tmp_path / "ranks")}]
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"  # MLflow hears from rank 0 alone
    ddp = torchrun(
        tmp_path, "train", str(write_config(tmp_path, 8, per_rank)), "--output-dir", "two",
        env={"MLFLOW_TRACKING_URI": tracking},
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    (run,) = [p for p in (tmp_path / "two" / "ddp").iterdir() if p.is_dir()]
    environment = json.loads((run / "environment.json").read_text())
    assert environment["world_size"] == 2 and environment["distributed_backend"] == "gloo"
    single = run_cli("train", str(write_config(tmp_path, 16)), "--output-dir", "one", cwd=tmp_path)
    assert single.returncode == 0, single.stderr

    rank0, rank1 = (load_file(tmp_path / "ranks" / f"rank{r}.safetensors") for r in (0, 1))
    assert all(rank0[k].equal(rank1[k]) for k in rank0), "ranks ended with different weights"
    two, one = final_weights(tmp_path / "two"), final_weights(tmp_path / "one")
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-5, rtol=1e-4)
    epochs_two, epochs_one = epoch_logs(tmp_path / "two"), epoch_logs(tmp_path / "one")
    assert len(epochs_two) == 3  # rank 0 alone logged: one line per epoch
    import mlflow

    (tracked,) = mlflow.MlflowClient(tracking).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(tracking).search_experiments()]
    )
    history = mlflow.MlflowClient(tracking).get_metric_history(tracked.info.run_id, "val/loss")
    assert len(history) == 3 and tracked.info.status == "FINISHED"
    for a, b in zip(epochs_two, epochs_one, strict=True):
        assert a["val/loss"] == pytest.approx(b["val/loss"], rel=1e-4)
        assert a["val/accuracy"] == pytest.approx(b["val/accuracy"])
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-4)


@pytest.mark.slow
def test_a_lost_rank_is_restarted_and_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    write_data(tmp_path)
    reference = torchrun(tmp_path, "train", str(write_config(tmp_path, 8)), "--output-dir", "ref")
    assert reference.returncode == 0, reference.stderr[-3000:]

    kill = [{"name": "torchlab.testing:KillAtStep", "step": 7, "marker": str(tmp_path / "killed")}]
    result = torchrun(
        tmp_path, "train", str(write_config(tmp_path, 8, kill)), "--output-dir", "job", restarts=1
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "killed").exists()  # a rank did die
    runs = [p for p in (tmp_path / "job" / "ddp").iterdir() if p.is_dir()]
    (run,) = runs  # the restart resumed the same folder
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["resumed_from"].split("/")[-1].startswith(
        "step-000000006"
    )
    ref, job = final_weights(tmp_path / "ref"), final_weights(tmp_path / "job")
    assert all(ref[k].equal(job[k]) for k in ref), "the restarted job ended elsewhere"


@pytest.mark.slow
def test_a_failing_rank_is_named_by_the_rank_that_loses_it(tmp_path: Path) -> None:
    write_data(tmp_path)
    fail = [{"name": "torchlab.testing:FailAtStep", "step": 3, "rank": 1}]
    result = torchrun(
        tmp_path, "train", str(write_config(tmp_path, 8, fail)), "--output-dir", "job"
    )
    assert result.returncode != 0
    cause = "DataError: FailAtStep: rank 1 stops at step 3 on purpose."
    assert f"error: Rank 1 of the job failed, so rank 0 stopped: {cause}" in result.stderr
    assert f"traceback : {cause}" in result.stderr  # torchrun's summary of the root cause
    assert "[rank0]: Traceback" not in result.stderr, result.stderr[-3000:]
    (run,) = [p for p in (tmp_path / "job" / "ddp").iterdir() if p.is_dir()]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and cause in info["error"]
