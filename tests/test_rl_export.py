"""Export of RL policies: the artefact maps real observations to the actions the trained
agent takes, and the sidecar says what goes in and comes out."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import torchlab
from torchlab.errors import ExportError
from torchlab.rl.api import load_policy

TINY_PPO = {
    "trainer.total_steps": 256,
    "trainer.eval_every": 256,
    "trainer.eval_episodes": 1,
    "trainer.progress": "none",
    "trainer.record_gif": False,
}


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> torchlab.Run:
    return torchlab.train("cartpole-ppo", TINY_PPO, output_dir=tmp_path_factory.mktemp("runs"))


def cartpole_observations(n: int) -> np.ndarray:
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=3)
    seen = []
    for _ in range(n):
        seen.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.stack(seen).astype(np.float32)


def test_onnx_policy_takes_the_agents_actions(ppo_run: torchlab.Run) -> None:
    import onnxruntime

    target = torchlab.export(ppo_run, "onnx")
    sidecar = json.loads((target / "export.json").read_text())
    assert sidecar["input"] == {"kind": "observation", "shape": ["batch", 4], "dtype": "float32"}
    assert sidecar["output"]["shape"] == ["batch"]
    assert sidecar["env"]["id"] == "CartPole-v1"
    assert sidecar["verification"]["max_abs_error"] == 0.0  # action indices agree exactly

    obs = cartpole_observations(50)
    session = onnxruntime.InferenceSession(str(target / sidecar["file"]))
    name = session.get_inputs()[0].name
    (actions,) = session.run(None, {name: obs})
    expected = load_policy(ppo_run).module(torch.from_numpy(obs))
    assert actions.tolist() == expected.tolist()


def test_frozenlake_table_exports_over_discrete_states(tmp_path: Path) -> None:
    run = torchlab.train(
        "frozenlake-q",
        {"trainer.total_steps": 2000, "trainer.eval_episodes": 5, "trainer.progress": "none"},
        output_dir=tmp_path,
    )
    target = torchlab.export(run, "torchscript")
    module = torch.jit.load(str(target / "model.pt"))
    states = torch.arange(16)
    assert torch.equal(module(states), load_policy(run).module(states))
    assert gym.make("FrozenLake-v1").action_space.contains(int(module(states[:1])[0]))


def test_policy_exports_say_what_they_cannot_do(ppo_run: torchlab.Run, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="TorchServe archive serves supervised models"):
        torchlab.export(ppo_run, "mar")
    target = torchlab.export(ppo_run, "torchscript", output=tmp_path / "policy")
    with pytest.raises(ExportError, match="holds an RL policy"):
        torchlab.predict(target, [tmp_path / "obs.csv"])
