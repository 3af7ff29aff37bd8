"""Replay and rollout buffers, returning named records; GAE and discounted returns.

Buffers live in NumPy on the CPU and hand out float32 tensors on the agent's device.
The replay buffer's contents are part of a checkpoint, so a resumed run samples exactly
the transitions an uninterrupted run would.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch


class ReplaySamples(NamedTuple):
    """A batch of transitions ``(s, a, r, s', terminated)``; shapes ``(B, ...)``."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class ReplayBuffer:
    """A ring buffer of transitions (Mnih et al. 2015, https://doi.org/10.1038/nature14236).

    Only ``terminated`` stops bootstrapping; an episode cut by a time limit (truncated)
    still bootstraps from its final observation (Pardo et al. 2018,
    https://arxiv.org/abs/1712.00378).
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        action_dtype: Any = np.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity, *obs_shape), np.float32)
        self.next_obs = np.zeros((capacity, *obs_shape), np.float32)
        self.actions = np.zeros((capacity, *action_shape), action_dtype)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.pos, self.size = 0, 0
        self.device = torch.device(device)

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
    ) -> None:
        """Add a batch of transitions, one per environment copy (leading axis)."""
        for i in range(len(obs)):
            p = self.pos
            self.obs[p], self.actions[p], self.rewards[p] = obs[i], actions[i], rewards[i]
            self.next_obs[p], self.terminated[p] = next_obs[i], terminated[i]
            self.pos = (p + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplaySamples:
        idx = rng.integers(0, self.size, size=batch_size)
        t = lambda a: torch.as_tensor(a[idx], device=self.device)  # noqa: E731
        return ReplaySamples(
            t(self.obs), t(self.actions), t(self.rewards), t(self.next_obs), t(self.terminated)
        )

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        return {
            "pos": self.pos,
            "size": n,
            **{
                key: torch.from_numpy(getattr(self, key)[:n].copy())
                for key in ("obs", "next_obs", "actions", "rewards", "terminated")
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pos, self.size = int(state["pos"]), int(state["size"])
        for key in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, key)[: self.size] = state[key].numpy()


class RolloutSamples(NamedTuple):
    """A minibatch of on-policy experience; shapes ``(B, ...)``."""

    obs: torch.Tensor
    actions: torch.Tensor
    old_log_probs: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    done: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438).

    All arrays are ``(T, N)``: step ``t`` of copy ``n``. ``next_values[t]`` is V of the state
    reached after step ``t`` (the final observation where an episode ended), so a
    truncated episode still bootstraps; ``terminated`` zeroes it. ``done`` (terminated or
    truncated) stops the advantage from flowing across an episode boundary.

        delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}

    Returns:
        ``(advantages, returns)`` with ``returns = advantages + values`` (the value targets).
    """
    advantages = np.zeros_like(rewards, dtype=np.float32)
    last = np.zeros(rewards.shape[1], np.float32)
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * (1.0 - terminated[t]) * next_values[t] - values[t]
        last = delta + gamma * lam * (1.0 - done[t]) * last
        advantages[t] = last
    return advantages, advantages + values


def discounted_returns(rewards: np.ndarray, done: np.ndarray, gamma: float) -> np.ndarray:
    """Monte-Carlo returns-to-go ``G_t = r_t + gamma * G_{t+1}``, restarting after ``done``.

    ``(T, N)`` arrays; the last step of a rollout is taken as the end of an episode.
    """
    out = np.zeros_like(rewards, dtype=np.float32)
    running = np.zeros(rewards.shape[1], np.float32)
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * (1.0 - done[t]) * running
        out[t] = running
    return out


class RolloutBuffer:
    """``n_steps`` steps of ``num_envs`` copies, then advantages and minibatches."""

    def __init__(
        self,
        n_steps: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (n_steps, num_envs)
        self.obs = np.zeros((*shape, *obs_shape), np.float32)
        self.actions = np.zeros((*shape, *action_shape), np.float32)
        self.log_probs = np.zeros(shape, np.float32)
        self.values = np.zeros(shape, np.float32)
        self.next_values = np.zeros(shape, np.float32)
        self.rewards = np.zeros(shape, np.float32)
        self.terminated = np.zeros(shape, np.float32)
        self.done = np.zeros(shape, np.float32)
        self.advantages = np.zeros(shape, np.float32)
        self.returns = np.zeros(shape, np.float32)
        self.n_steps, self.num_envs = n_steps, num_envs
        self.device = torch.device(device)

    def compute(self, gamma: float, lam: float) -> None:
        self.advantages, self.returns = gae(
            self.rewards, self.values, self.next_values, self.terminated, self.done, gamma, lam
        )

    def minibatches(self, batch_size: int, generator: torch.Generator | None = None) -> Any:
        """Shuffled minibatches over all ``n_steps * num_envs`` samples (torch RNG)."""
        total = self.n_steps * self.num_envs
        flat = lambda a: torch.as_tensor(a.reshape(total, *a.shape[2:]), device=self.device)  # noqa: E731
        data = [
            flat(a)
            for a in (
                self.obs,
                self.actions,
                self.log_probs,
                self.values,
                self.advantages,
                self.returns,
            )
        ]
        order = torch.randperm(total, generator=generator).to(self.device)
        for start in range(0, total, batch_size):
            idx = order[start : start + batch_size]
            yield RolloutSamples(*(d[idx] for d in data))
