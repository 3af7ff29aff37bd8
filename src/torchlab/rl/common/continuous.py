"""Deterministic actor and Q-critic for continuous actions (DDPG, TD3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from torchlab.rl.common.agent import Agent, FlatObs, Iteration, obs_dim
from torchlab.rl.common.env import next_obs
from torchlab.rl.common.networks import ScaledTanh, mlp


class Actor(nn.Module):
    """``mu(s)``: an MLP squashed into the action bounds."""

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.spaces.Box,
        hidden: Sequence[int],
        activation: str,
    ) -> None:
        super().__init__()
        low = torch.as_tensor(action_space.low, dtype=torch.float32)
        high = torch.as_tensor(action_space.high, dtype=torch.float32)
        self.flat = FlatObs(obs_space)
        self.net = mlp(
            obs_dim(obs_space),
            int(np.prod(action_space.shape)),
            hidden,
            activation,
            ScaledTanh(low, high),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.flat(obs))  # (B, action_dim)


class Critic(nn.Module):
    """``Q(s, a)`` from the concatenated observation and action."""

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.spaces.Box,
        hidden: Sequence[int],
        activation: str,
    ) -> None:
        super().__init__()
        self.flat = FlatObs(obs_space)
        self.net = mlp(obs_dim(obs_space) + int(np.prod(action_space.shape)), 1, hidden, activation)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([self.flat(obs), action], -1)).squeeze(-1)  # (B,)


def explore(
    actions: np.ndarray, space: gym.spaces.Box, noise_std: float, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian exploration noise, ``noise_std`` times half the action range, clipped."""
    scale = (space.high - space.low) / 2
    noisy = actions + rng.normal(0.0, noise_std, actions.shape) * scale
    return np.clip(noisy, space.low, space.high).astype(np.float32)


class OffPolicyContinuous(Agent):
    """What DDPG and TD3 share: a deterministic actor, noisy exploration after uniform
    random warm-up steps, a replay buffer and ``gradient_steps`` updates per step."""

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.actor(torch.as_tensor(obs, device=self.device)).cpu().numpy()

    def learn(self, env: Any, obs: np.ndarray, progress: float) -> Iteration:
        hp, space = self.hp, self.spec.action_space
        if self.steps < hp["learning_starts"]:
            actions = self.rng.uniform(space.low, space.high, (len(obs), *space.shape)).astype(
                np.float32
            )
        else:
            actions = explore(self.act(obs), space, hp["noise_std"], self.rng)
        new_obs, reward, terminated, truncated, info = env.step(actions)
        self.buffer.add(
            obs, actions, reward, next_obs(new_obs, info, terminated | truncated), terminated
        )
        self.steps += len(obs)
        logs: dict[str, Any] = {}
        if self.steps >= hp["learning_starts"]:
            for _ in range(hp["gradient_steps"]):
                logs = self.update()
        return Iteration(new_obs, len(obs), logs)
