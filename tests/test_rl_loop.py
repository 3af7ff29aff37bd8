"""The environment loop evaluates at exact step counts, inside an agent's iteration."""

from __future__ import annotations

import json
from pathlib import Path

import torchlab

# PPO iterations of 2 copies x 16 steps = 32 environment steps; evaluation every 50 steps
# therefore falls inside the 2nd, 4th, 5th and 7th iterations.
PPO = {
    "env.id": "CartPole-v1",
    "env.num_envs": 2,
    "agent.name": "ppo",
    "agent.n_steps": 16,
    "agent.batch_size": 32,
    "agent.n_epochs": 2,
    "agent.hidden": [16],
    "trainer.total_steps": 200,
    "trainer.eval_every": 50,
    "trainer.eval_episodes": 1,
    "trainer.checkpoint_every": 10_000,
    "trainer.log_every": 32,
    "trainer.record_gif": False,
    "trainer.progress": "none",
}


def history(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_evaluation_happens_at_every_multiple_of_eval_every(tmp_path: Path) -> None:
    run = torchlab.train("cartpole-ppo", PPO, output_dir=tmp_path)
    evals = [r["step"] for r in history(run.dir) if "eval/return" in r]
    # 50, 100, 150, 200 from inside the rollouts; the budget ends at 224 (7 x 32): one more.
    assert evals == [50, 100, 150, 200, 224]
    assert run.summary["steps"] == 224
    logs = [r["step"] for r in history(run.dir) if "train/policy_loss" in r]
    assert logs == [32, 64, 96, 128, 160, 192, 224]  # logging stays at iteration ends


def test_evaluation_inside_an_iteration_leaves_training_unchanged(tmp_path: Path) -> None:
    often = torchlab.train("cartpole-ppo", PPO, output_dir=tmp_path / "often")
    once = torchlab.train(
        "cartpole-ppo", {**PPO, "trainer.eval_every": 10_000}, output_dir=tmp_path / "once"
    )
    assert [r["step"] for r in history(once.dir) if "eval/return" in r] == [224]
    train = lambda run: [r for r in history(run.dir) if "train/policy_loss" in r]  # noqa: E731
    assert train(often) == train(once)  # same losses, returns and episodes at every log line
