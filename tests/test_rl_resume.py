"""A killed RL run resumes from its last checkpoint and ends bit-identical to one never stopped.

Covers the replay buffer (DQN), rollouts with observation and reward normalisation (PPO),
and every RNG; the process is killed with SIGKILL between checkpoints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from torchlab.cli import main

CASES = {
    "dqn": {
        "env": {"id": "CartPole-v1"},
        "agent": {
            "name": "dqn",
            "learning_starts": 300,
            "train_freq": 4,
            "target_update_interval": 100,
            "hidden": [32],
        },
        "trainer": {
            "total_steps": 1500,
            "checkpoint_every": 500,
            "eval_every": 500,
            "log_every": 50,
            "eval_episodes": 2,
        },
    },
    "ppo": {
        "env": {
            "id": "CartPole-v1",
            "num_envs": 2,
            "normalize_obs": True,
            "normalize_reward": True,
        },
        "agent": {
            "name": "ppo",
            "n_steps": 32,
            "batch_size": 32,
            "n_epochs": 2,
            "hidden": [32],
            "anneal": True,
        },
        "trainer": {
            "total_steps": 1024,
            "checkpoint_every": 256,
            "eval_every": 256,
            "log_every": 64,
            "eval_episodes": 2,
        },
    },
}

SCRIPT = """
import sys, torchlab
from torchlab.rl.testing import KillAtStep
callbacks = [KillAtStep(step=int(sys.argv[2]), marker=sys.argv[3])] if len(sys.argv) > 2 else []
torchlab.train(sys.argv[1], output_dir="runs", callbacks=callbacks)
"""


def train_in(folder: Path, config: Path, *kill: str) -> subprocess.CompletedProcess[str]:
    folder.mkdir()
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config), *kill],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # three short trainings in subprocesses per agent
@pytest.mark.parametrize("agent", sorted(CASES))
def test_killed_run_resumes_bit_identical(agent: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / f"{agent}.yaml"
    raw = {"name": agent, **CASES[agent]}
    raw["trainer"] = {**raw["trainer"], "progress": "none", "record_gif": False}
    config.write_text(yaml.safe_dump(raw))

    straight = train_in(tmp_path / "straight", config)
    assert straight.returncode == 0, straight.stderr
    killed = train_in(tmp_path / "killed", config, "700", str(tmp_path / "marker"))
    assert killed.returncode == -9, killed.stderr  # SIGKILL, after the checkpoint at 512/500
    (run,) = (tmp_path / "killed" / "runs" / agent).iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    assert not (run / "summary.json").exists()

    monkeypatch.chdir(tmp_path / "killed")
    main(["train", "--resume", str(run)])  # returns normally on success

    (done,) = (tmp_path / "straight" / "runs" / agent).iterdir()
    assert (run / "metrics.jsonl").read_text() == (done / "metrics.jsonl").read_text()
    assert (run / "model.safetensors").read_bytes() == (done / "model.safetensors").read_bytes()
    ours, theirs = (json.loads((r / "summary.json").read_text()) for r in (run, done))
    assert ours["eval"] == theirs["eval"] and ours["steps"] == theirs["steps"]
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["step"] > 700 and ("train/loss" in r or "train/policy_loss" in r) for r in history)
    assert json.loads((run / "run.json").read_text())["status"] == "completed"


@pytest.mark.e2e  # trains, then resumes
def test_resume_refuses_a_changed_agent(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import torchlab

    run = torchlab.train(
        "cartpole-dqn",
        {
            "trainer.total_steps": 200,
            "trainer.eval_every": 200,
            "trainer.eval_episodes": 1,
            "trainer.progress": "none",
            "trainer.record_gif": False,
            "agent.learning_starts": 100,
        },
        output_dir=tmp_path,
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(run.dir), "agent.lr=0.1"])
    assert exit_info.value.code == 2
    assert "agent.lr" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(run.dir)])
    assert exit_info.value.code != 0
    assert "raise trainer.total_steps" in capsys.readouterr().err
