"""Buffers, GAE, returns, target updates and normalisation against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from torchlab.errors import ConfigError
from torchlab.rl.common.buffers import ReplayBuffer, discounted_returns, gae
from torchlab.rl.common.env import RunningMeanStd
from torchlab.rl.common.networks import soft_update
from torchlab.rl.common.schedules import linear


def test_gae_matches_hand_computed_values() -> None:
    # One copy, three steps, the episode terminates at the last step; gamma 0.9, lambda 0.8.
    rewards = np.array([[1.0], [1.0], [1.0]], np.float32)
    values = np.array([[0.5], [0.4], [0.3]], np.float32)
    next_values = np.array([[0.4], [0.3], [0.2]], np.float32)
    terminated = np.array([[0.0], [0.0], [1.0]], np.float32)
    adv, returns = gae(rewards, values, next_values, terminated, terminated, 0.9, 0.8)
    # delta_2 = 1 - 0.3 = 0.7 (terminal: no bootstrap);  A_2 = 0.7
    # delta_1 = 1 + 0.9 * 0.3 - 0.4 = 0.87;               A_1 = 0.87 + 0.72 * 0.7 = 1.374
    # delta_0 = 1 + 0.9 * 0.4 - 0.5 = 0.86;               A_0 = 0.86 + 0.72 * 1.374 = 1.84928
    np.testing.assert_allclose(adv[:, 0], [1.84928, 1.374, 0.7], rtol=1e-6)
    np.testing.assert_allclose(returns[:, 0], [2.34928, 1.774, 1.0], rtol=1e-6)


def test_gae_bootstraps_a_truncated_episode_but_stops_at_its_boundary() -> None:
    # Step 0 ends an episode by a time limit (done, not terminated): it bootstraps from
    # V(final obs) = 2.0, and step 1's advantage (a new episode) does not flow back.
    rewards = np.array([[1.0], [10.0]], np.float32)
    values = np.array([[0.5], [0.0]], np.float32)
    next_values = np.array([[2.0], [0.0]], np.float32)
    terminated = np.zeros((2, 1), np.float32)
    done = np.array([[1.0], [0.0]], np.float32)
    adv, _ = gae(rewards, values, next_values, terminated, done, 0.9, 0.95)
    np.testing.assert_allclose(adv[:, 0], [1.0 + 0.9 * 2.0 - 0.5, 10.0], rtol=1e-6)


def test_gae_with_lambda_one_is_the_monte_carlo_advantage() -> None:
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(6, 2)).astype(np.float32)
    values = rng.normal(size=(6, 2)).astype(np.float32)
    done = np.zeros((6, 2), np.float32)
    done[2, 0] = done[5] = 1.0
    next_values = np.roll(values, -1, axis=0)  # V(s_{t+1}) inside an episode
    adv, returns = gae(rewards, values, next_values, done, done, 0.9, 1.0)
    np.testing.assert_allclose(returns, discounted_returns(rewards, done, 0.9), rtol=1e-5)
    np.testing.assert_allclose(adv, returns - values, rtol=1e-5)


def test_discounted_returns_restart_after_an_episode_ends() -> None:
    rewards = np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)
    done = np.array([[0.0], [1.0], [0.0], [1.0]], np.float32)
    out = discounted_returns(rewards, done, 0.5)
    np.testing.assert_allclose(out[:, 0], [1 + 0.5 * 2, 2, 3 + 0.5 * 4, 4])


def test_replay_buffer_is_a_ring_and_round_trips_its_state() -> None:
    buffer = ReplayBuffer(3, (2,), (), np.int64)
    for i in range(5):  # five transitions into room for three: 0 and 1 are overwritten
        obs = np.full((1, 2), i, np.float32)
        buffer.add(obs, np.array([i]), np.array([float(i)]), obs + 1, np.array([i == 4]))
    assert len(buffer) == 3 and buffer.pos == 2
    assert buffer.rewards.tolist() == [3.0, 4.0, 2.0]  # slots 0, 1 rewritten by 3 and 4
    assert buffer.terminated.tolist() == [0.0, 1.0, 0.0]
    batch = buffer.sample(64, np.random.default_rng(0))
    assert batch.obs.shape == (64, 2) and batch.actions.dtype == torch.int64
    torch.testing.assert_close(batch.next_obs, batch.obs + 1)
    torch.testing.assert_close(batch.rewards, batch.obs[:, 0])  # each row stays one transition
    assert set(batch.rewards.tolist()) == {2.0, 3.0, 4.0}

    restored = ReplayBuffer(3, (2,), (), np.int64)
    restored.load_state_dict(buffer.state_dict())
    again = restored.sample(64, np.random.default_rng(0))
    for a, b in zip(batch, again, strict=True):
        torch.testing.assert_close(a, b)


def test_soft_update_is_polyak_averaging_and_tau_one_copies() -> None:
    target, source = nn.Linear(2, 1), nn.Linear(2, 1)
    nn.init.zeros_(target.weight), nn.init.zeros_(target.bias)
    nn.init.ones_(source.weight), nn.init.ones_(source.bias)
    soft_update(target, source, 0.25)
    torch.testing.assert_close(target.weight, torch.full((1, 2), 0.25))
    soft_update(target, source, 0.25)  # 0.25 + 0.25 * (1 - 0.25)
    torch.testing.assert_close(target.bias, torch.tensor([0.4375]))
    soft_update(target, source, 1.0)
    torch.testing.assert_close(target.weight, source.weight)


def test_linear_schedule() -> None:
    assert linear(1.0, 0.1, 0.5, 0.0) == 1.0
    assert linear(1.0, 0.1, 0.5, 0.25) == pytest.approx(0.55)
    assert linear(1.0, 0.1, 0.5, 0.9) == pytest.approx(0.1)


def test_running_mean_std_matches_numpy_over_all_batches() -> None:
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 3)) for n in (5, 17, 1, 40)]
    rms = RunningMeanStd((3,))
    for batch in batches:
        rms.update(batch)
    data = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-4)


def dqn_with_fixed_q(double: bool) -> object:
    """A DQN on Identity(n=2) whose online and target Q are single linear layers set by hand."""
    import gymnasium as gym

    from torchlab.registry import AGENTS
    from torchlab.rl.common.agent import EnvSpec

    spec = EnvSpec(gym.spaces.Discrete(2), gym.spaces.Discrete(2), 1, 100, 0, torch.device("cpu"))
    agent = AGENTS.get("dqn").build(
        {"hidden": (), "gamma": 0.9, "batch_size": 4, "double": double}, "agent", spec
    )
    with torch.no_grad():  # Q(s) = W[:, s] (one-hot input, zero bias)
        agent.q.net[0].weight.copy_(torch.tensor([[0.0, 3.0], [2.0, 1.0]]))  # Q(0)=[0,2] Q(1)=[3,1]
        agent.q_target.net[0].weight.copy_(torch.tensor([[0.0, 5.0], [0.0, 7.0]]))  # Q'(1)=[5,7]
        agent.q.net[0].bias.zero_(), agent.q_target.net[0].bias.zero_()
    return agent


@pytest.mark.parametrize(
    ("double", "terminated", "loss"),
    [
        (True, False, 3.0),  # a* = argmax Q(1) = 0; y = 1 + 0.9 * Q'(1, 0) = 5.5; |5.5 - 2| = 3.5
        (False, False, 4.8),  # y = 1 + 0.9 * max Q'(1) = 7.3; |7.3 - 2| = 5.3
        (True, True, 0.5),  # terminal: y = 1; |1 - 2| = 1 -> Huber 0.5
    ],
)
def test_dqn_targets_and_huber_loss_match_hand_computed(
    double: bool, terminated: bool, loss: float
) -> None:
    agent = dqn_with_fixed_q(double)
    # s = 0, a = 1, r = 1, s' = 1 (Huber: |d| - 0.5 for |d| > 1, d^2 / 2 otherwise)
    agent.buffer.add(
        np.array([0.0]), np.array([1]), np.array([1.0]), np.array([1.0]), np.array([terminated])
    )
    assert agent.update().item() == pytest.approx(loss)


def test_dqn_syncs_its_target_every_target_update_interval_env_steps() -> None:
    agent = dqn_with_fixed_q(True)
    agent.target_update_interval = 3
    agent.learning_starts = 10**6  # no gradient steps: only the sync changes the target

    class Env:  # one copy that always returns obs 0, reward 0
        def step(self, actions):  # type: ignore[no-untyped-def]
            return np.zeros(1), np.zeros(1), np.zeros(1, bool), np.zeros(1, bool), {}

    before = agent.q_target.net[0].weight.clone()
    for _ in range(2):
        agent.learn(Env(), np.zeros(1), 0.0)
    torch.testing.assert_close(agent.q_target.net[0].weight, before)
    agent.learn(Env(), np.zeros(1), 0.0)  # the third step: copy (tau = 1)
    torch.testing.assert_close(agent.q_target.net[0].weight, agent.q.net[0].weight)


def test_an_agent_rejects_an_action_space_it_cannot_handle(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torchlab

    with pytest.raises(ConfigError, match="needs a Box action space"):
        torchlab.train("pendulum-ddpg", {"env.id": "CartPole-v1"}, output_dir=tmp_path)
    assert not (tmp_path / "pendulum-ddpg").exists()


def test_vector_env_normalises_observations_and_final_observations_alike() -> None:
    from torchlab.rl.common.env import EpisodeStats, NormalizeObservation, find, make_vec_env
    from torchlab.rl.config import EnvConfig

    env = make_vec_env(EnvConfig(id="CartPole-v1", num_envs=3, normalize_obs=True))
    norm = find(env, NormalizeObservation)
    obs, _ = env.reset(seed=0)
    raw_env = find(env, EpisodeStats)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(200):
        obs, _, terminated, truncated, info = env.step(rng.integers(0, 2, 3))
        assert np.abs(obs).max() <= norm.clip and obs.dtype == np.float32
        if (terminated | truncated).any():
            i = int(np.flatnonzero(terminated | truncated)[0])
            assert np.abs(info["final_obs"][i]).max() <= norm.clip  # normalised too
            ended += 1
    assert ended > 0
    assert norm.rms.count == pytest.approx(3 * 201, abs=1e-3)  # reset batch + 200 steps
    finished = raw_env.drain()
    assert len(finished) >= ended and all(length >= 8 for _, length in finished)
    assert all(ret == length for ret, length in finished)  # raw CartPole reward: 1 per step
    env.close()


def test_ddpg_is_td3_with_one_critic_and_updates_by_the_ddpg_target() -> None:
    """DDPG reuses TD3's update; its critic loss is the paper's, its checkpoints keep their names."""
    import gymnasium as gym
    import torch.nn.functional as F

    from torchlab.registry import AGENTS
    from torchlab.rl.agents.td3 import TD3
    from torchlab.rl.common.agent import EnvSpec

    box = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    spec = EnvSpec(box, box, 1, 100, 0, torch.device("cpu"))
    agent = AGENTS.get("ddpg").build({"hidden": (8,), "batch_size": 4, "gamma": 0.9}, "agent", spec)
    assert isinstance(agent, TD3) and len(agent.critics) == 1
    rng = np.random.default_rng(0)
    for _ in range(4):
        obs, action, next_obs = rng.uniform(-2, 2, (3, 1, 1)).astype(np.float32)
        agent.buffer.add(obs, action, np.array([1.0]), next_obs, np.array([False]))
    agent.rng = np.random.default_rng(1)
    batch = agent.buffer.sample(4, np.random.default_rng(1))  # the batch update() will draw
    critic, actor = agent.critics[0], agent.actor_target
    with torch.no_grad():  # y = r + gamma * Q'(s', mu'(s'))
        target = batch.rewards + 0.9 * agent.critics_target[0](
            batch.next_obs, actor(batch.next_obs)
        )
        expected = F.mse_loss(critic(batch.obs, batch.actions), target)
    logs = agent.update()
    torch.testing.assert_close(logs["critic_loss"], expected)
    assert "actor_loss" in logs  # the actor learns at every update

    names = {key.split(".")[0] for key in agent.weights()}
    assert names == {"actor", "critic", "actor_target", "critic_target"}
    saved = {k: v for k, v in agent.extra_state().items() if k != "updates"}
    agent.load_extra_state(saved)  # DDPG's checkpoints hold no update count
