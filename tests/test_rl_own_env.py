"""A user's own gymnasium environment, from the user's own folder: a class or a registered
id, one that cannot render, trained, evaluated from elsewhere and exported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli

CORRIDOR = '''
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Corridor(gym.Env):
    """Walk right to the end of a corridor: reward 1 there, -0.01 per step. No render()."""

    def __init__(self, length: int = 4):
        self.length = length
        self.observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.position = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.position = max(0, self.position + (1 if int(action) == 1 else -1))
        done = self.position >= self.length
        obs = np.array([self.position / self.length], np.float32)
        return obs, 1.0 if done else -0.01, done, False, {}


gym.register(id="Corridor-v0", entry_point=Corridor, max_episode_steps=30)
'''

CONFIG = """
name: corridor
env: {id: "corridor:Corridor", kwargs: {length: 3}}
agent: {name: reinforce, lr: 0.01, hidden: [16]}
trainer: {total_steps: 600, eval_every: 300, eval_episodes: 2, checkpoint_every: 300,
          log_every: 300, progress: none}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rl-project")
    (folder / "corridor.py").write_text(CORRIDOR)
    (folder / "corridor.yaml").write_text(CONFIG)
    return folder


@pytest.mark.e2e  # trains and evaluates through the CLI
def test_an_environment_class_that_cannot_render_trains(project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("train", str(project / "corridor.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "No evaluation.gif: environment 'corridor:Corridor' cannot render" in result.stderr
    (run,) = (tmp_path / "runs" / "corridor").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["gif"] is None and summary["steps"] >= 600  # whole episodes: may run past
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    # From another folder, without PYTHONPATH: the run recorded where its environment is.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    evaluated = run_cli("evaluate", str(run), "--episodes", "2", cwd=elsewhere)
    assert evaluated.returncode == 0, evaluated.stderr
    exported = run_cli("export", str(run), "-f", "onnx", "-o", "policy", cwd=elsewhere)
    assert exported.returncode == 0, exported.stderr


@pytest.mark.slow  # the class case trains in make test
def test_a_registered_id_from_the_users_module(project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(
        "train", str(project / "corridor.yaml"), "env.id=corridor:Corridor-v0",
        "trainer.total_steps=300", "trainer.record_gif=false", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "evaluation.gif" not in result.stderr


@pytest.mark.e2e  # one CLI process per case
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["env.id=corridor:Nowhere"], "Cannot make environment 'corridor:Nowhere'"),
        (["env.id=no_such_env:Corridor"], "Cannot import module 'no_such_env'"),
        (["env.kwargs.width=3"], "rejects its keyword arguments (at 'env.kwargs': length, width)"),
    ],
)
def test_environment_mistakes_are_one_line(project, tmp_path, overrides, message) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("train", str(project / "corridor.yaml"), *overrides, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert message in result.stderr
