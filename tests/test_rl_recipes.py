"""Every RL recipe trains a smoke configuration through the CLI, and evaluates with --episodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchlab.config import read_recipe, recipe_names

RL_RECIPES = [name for name in recipe_names() if "agent" in read_recipe(name)]

# A budget of a few iterations per recipe (on-policy iterations are num_envs * n_steps long).
SMOKE = {
    "frozenlake-q": ["trainer.total_steps=2000"],
    "cartpole-dqn": ["trainer.total_steps=600", "agent.learning_starts=200"],
    "cartpole-ppo": ["trainer.total_steps=512"],
    "cartpole-reinforce": ["trainer.total_steps=1200", "agent.n_steps=100"],
    "acrobot-a2c": ["trainer.total_steps=400"],
    "pendulum-ddpg": ["trainer.total_steps=400", "agent.learning_starts=200"],
    "pendulum-td3": ["trainer.total_steps=400", "agent.learning_starts=200"],
}
COMMON = [
    "trainer.eval_every=200",
    "trainer.eval_episodes=1",
    "trainer.checkpoint_every=200",
    "trainer.progress=plain",
    "--output-dir",
    "runs",
]


def test_the_seven_rl_recipes_exist() -> None:
    assert sorted(RL_RECIPES) == sorted(SMOKE)


@pytest.mark.slow  # every recipe through the CLI; test_rl_own_env.py trains one in CI
@pytest.mark.parametrize("recipe", RL_RECIPES)
def test_rl_recipe_trains_through_the_cli(recipe: str, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("train", recipe, *SMOKE[recipe], *COMMON)
    assert result.returncode == 0, result.stderr
    (run,) = list((tmp_path / "runs" / recipe).iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["kind"] == "rl" and summary["agent"] == read_recipe(recipe)["agent"]["name"]
    assert summary["steps"] >= int(SMOKE[recipe][0].split("=")[1])
    assert summary["baseline"]["name"] == "random policy"
    assert summary["eval"]["episodes"] == 1
    for name in (
        "config.yaml",
        "environment.json",
        "metrics.jsonl",
        "model.safetensors",
        "learning_curve.png",
        "evaluation.gif",
    ):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert list((run / "checkpoints").glob("step-*/manifest.json"))
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/return" in r for r in history)
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert "random policy" in result.stdout and f"Run directory: runs/{recipe}/" in result.stdout


@pytest.mark.slow  # test_rl_own_env.py evaluates a run through the CLI in CI
def test_evaluate_an_rl_run_over_n_episodes(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("train", "cartpole-ppo", *SMOKE["cartpole-ppo"], *COMMON).returncode == 0
    (run,) = list((tmp_path / "runs" / "cartpole-ppo").iterdir())
    first = cli("evaluate", str(run), "--episodes", "3")
    assert first.returncode == 0, first.stderr
    assert "eval/return_mean" in first.stdout and "eval/return_std" in first.stdout
    assert cli("evaluate", str(run), "--episodes", "3").stdout == first.stdout  # deterministic


@pytest.mark.e2e  # one CLI process per case
def test_rl_config_errors_are_one_clear_line(cli) -> None:  # type: ignore[no-untyped-def]
    for args, needle in [
        (["cartpole-dqn", "agent.lrr=0.1"], "Did you mean 'agent.lr'?"),
        (["cartpole-dqn", "agent.name=dqm"], "Did you mean 'dqn'?"),
        (["cartpole-dqn", "env.id=CartPole-v9"], "CartPole-v9"),
        (["cartpole-dqn", "trainer.total_steps=0"], "trainer.total_steps"),
        (
            ["frozenlake-q", "env.id=CartPole-v1", "env.kwargs={}"],
            "needs a Discrete observation space",
        ),
        (["cartpole-dqn", "env.kwargs={is_slippery: true}"], "env.kwargs"),
    ]:
        result = cli("train", *args, "--output-dir", "runs")
        assert result.returncode == 2, (args, result.stderr)
        assert needle in result.stderr and result.stderr.count("\n") == 1, result.stderr
