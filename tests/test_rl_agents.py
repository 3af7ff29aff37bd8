"""Every agent learns a tiny deterministic environment to a known return in a few hundred steps."""

from __future__ import annotations

from pathlib import Path

import pytest

import torchlab
from torchlab.registry import AGENTS

FAST = {"trainer.progress": "none", "trainer.record_gif": False, "trainer.eval_episodes": 5}

# (agent, env, agent settings, steps, the return it must reach)
# Identity-v0: 8 steps, reward 1 for naming the symbol (best 8, random ~2).
# IdentityContinuous-v0: 8 steps, reward -(a - x)^2 (best 0, random about -5.3).
CASES = {
    "q_learning": (
        "torchlab/Identity-v0",
        {"lr": 0.5, "lr_end": 0.1, "gamma": 0.5, "exploration_fraction": 0.5},
        400,
        8.0,
    ),
    "dqn": (
        "torchlab/Identity-v0",
        {
            "lr": 0.005,
            "learning_starts": 64,
            "batch_size": 32,
            "train_freq": 1,
            "target_update_interval": 16,
            "exploration_fraction": 0.3,
            "hidden": [32],
        },
        400,
        8.0,
    ),
    "reinforce": (
        "torchlab/IdentityBox-v0",
        {"lr": 0.02, "baseline_lr": 0.01, "n_steps": 16, "hidden": [32]},
        600,
        8.0,
    ),
    "a2c": ("torchlab/IdentityBox-v0", {"lr": 0.01, "n_steps": 4, "hidden": [32]}, 600, 8.0),
    "ppo": (
        "torchlab/IdentityBox-v0",
        {"lr": 0.01, "n_steps": 16, "batch_size": 32, "n_epochs": 4, "hidden": [32]},
        400,
        8.0,
    ),
    "ddpg": (
        "torchlab/IdentityContinuous-v0",
        {"learning_starts": 64, "batch_size": 32, "lr": 0.003, "hidden": [32], "tau": 0.05},
        400,
        -0.2,
    ),
    "td3": (
        "torchlab/IdentityContinuous-v0",
        {"learning_starts": 64, "batch_size": 32, "lr": 0.003, "hidden": [32], "tau": 0.05},
        400,
        -0.2,
    ),
}


def config(agent: str) -> dict:
    env, params, steps, _ = CASES[agent]
    num_envs = 2 if agent in ("reinforce", "a2c", "ppo") else 1
    return {
        "name": f"tiny-{agent}",
        "env": {"id": env, "num_envs": num_envs},
        "agent": {"name": agent, **params},
        "trainer": {
            **{k.split(".")[1]: v for k, v in FAST.items()},
            "total_steps": steps,
            "eval_every": 100,
            "checkpoint_every": 10_000,
        },
    }


def test_every_registered_agent_has_a_tiny_case() -> None:
    assert set(AGENTS.names()) == set(CASES)


@pytest.mark.parametrize("agent", sorted(CASES))
def test_every_setting_is_typed_defaulted_and_documented(agent: str) -> None:
    """An agent is a class whose keyword-only ``__init__`` arguments are its settings,
    each typed, defaulted, documented and kept as an attribute of the same name."""
    import inspect

    import gymnasium as gym
    import torch

    import torchlab.rl.testing  # noqa: F401  (registers the tiny environments)
    from torchlab.rl.common.agent import EnvSpec

    builder = AGENTS.get(agent).builder
    assert inspect.isclass(builder)
    env = gym.make(CASES[agent][0])
    built = builder(
        EnvSpec(env.observation_space, env.action_space, 1, 100, 0, torch.device("cpu"))
    )
    settings = inspect.signature(builder).parameters.values()
    for setting in (s for s in settings if s.kind is s.KEYWORD_ONLY):
        assert setting.annotation is not setting.empty, setting
        assert setting.default is not setting.empty, setting
        assert f"\n        {setting.name}: " in (builder.__doc__ or ""), setting
        assert getattr(built, setting.name) == setting.default, setting


@pytest.mark.parametrize("agent", sorted(CASES))
def test_agent_learns_its_tiny_env(agent: str, tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config(agent)))
    run = torchlab.train(path, output_dir=tmp_path / "runs")
    summary = run.summary
    target = CASES[agent][3]
    assert summary["eval"]["return_mean"] >= target, summary
    assert summary["eval"]["return_mean"] > summary["baseline"]["return_mean"]


@pytest.mark.slow
def test_frozenlake_q_learning_reaches_a_success_rate_of_0_7(tmp_path: Path) -> None:
    """Issue 6's target for slippery FrozenLake, with the recipe as shipped (about 30 s)."""
    run = torchlab.train("frozenlake-q", {"trainer.progress": "none"}, output_dir=tmp_path)
    assert run.summary["eval"]["episodes"] == 1000
    assert run.summary["eval"]["return_mean"] >= 0.7  # success rate on fresh seeds


def test_the_policy_loads_for_export_and_matches_the_agent(tmp_path: Path) -> None:
    import torch

    from torchlab.rl.api import load_policy
    from torchlab.run import Run

    run = torchlab.train(
        "cartpole-ppo",
        {
            "trainer.total_steps": 256,
            "trainer.eval_every": 256,
            "trainer.eval_episodes": 1,
            "trainer.progress": "none",
            "trainer.record_gif": False,
        },
        output_dir=tmp_path,
    )
    loaded = load_policy(Run(run.dir))
    policy, example = loaded.module, loaded.example
    assert example.shape == (1, 4)
    exported = torch.export.export(policy, (example,)).module()
    batch = torch.randn(1, 4)
    torch.testing.assert_close(exported(batch), policy(batch))
    many = torch.randn(16, 4)
    actions = policy(many)
    assert actions.shape == (16,) and set(actions.tolist()) <= {0, 1}
    expected = run_agent_actions(run, many)
    torch.testing.assert_close(actions, expected)


def run_agent_actions(run, obs):  # type: ignore[no-untyped-def]
    """The actions the trained agent itself takes, via the public evaluate path's builder."""
    import torch

    from torchlab.rl.api import build
    from torchlab.training.checkpoint import load_weights

    env, agent = build(run.config)
    env.close()
    agent.load_weights(load_weights(run.dir / "model.safetensors"))
    return torch.as_tensor(agent.act(obs.numpy()))
