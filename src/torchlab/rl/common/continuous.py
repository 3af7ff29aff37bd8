"""Deterministic actor and Q-critic for continuous actions, and how an agent with them
gathers experience (TD3, and DDPG through it)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from torchlab.rl.common.agent import Agent, EnvSpec, FlatObs, Iteration, obs_dim, require
from torchlab.rl.common.buffers import ReplayBuffer
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
    """How an agent with a deterministic actor gathers experience: uniformly random actions
    for ``learning_starts`` steps, then the actor's action plus Gaussian noise; every
    transition goes to a replay buffer, and each vector-env step after the warm-up runs
    ``gradient_steps`` updates. Subclasses hold ``actor`` and write :meth:`update`.

    Args:
        spec: What the agent is built for; its action space must be a Box.
        name: The agent's registered name, for the message when the space does not fit.
        buffer_size: Transitions kept in the replay buffer (at most the step budget).
        learning_starts: Environment steps of uniformly random actions before learning.
        noise_std: Std of the exploration noise, as a fraction of half the action range.
        gradient_steps: Updates per vector-env step.
    """

    actor: nn.Module

    def __init__(
        self,
        spec: EnvSpec,
        name: str,
        *,
        buffer_size: int,
        learning_starts: int,
        noise_std: float,
        gradient_steps: int,
    ) -> None:
        super().__init__(spec)
        require(spec.action_space, (gym.spaces.Box,), name, "action")
        self.buffer_size = buffer_size
        self.learning_starts = learning_starts
        self.noise_std = noise_std
        self.gradient_steps = gradient_steps
        self.buffer = ReplayBuffer(
            min(buffer_size, spec.total_steps),
            spec.observation_space.shape,
            spec.action_space.shape,
            np.float32,
            self.device,
        )
        self.steps = 0  # environment steps seen, summed over copies

    @abstractmethod
    def update(self) -> dict[str, Any]:
        """One gradient step on a replay batch; returns its losses."""

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.actor(torch.as_tensor(obs, device=self.device)).cpu().numpy()

    def learn(self, env: Any, obs: np.ndarray, progress: float) -> Iteration:
        space = self.spec.action_space
        if self.steps < self.learning_starts:
            actions = self.rng.uniform(space.low, space.high, (len(obs), *space.shape)).astype(
                np.float32
            )
        else:
            actions = explore(self.act(obs), space, self.noise_std, self.rng)
        new_obs, reward, terminated, truncated, info = env.step(actions)
        self.buffer.add(
            obs, actions, reward, next_obs(new_obs, info, terminated | truncated), terminated
        )
        self.steps += len(obs)
        logs: dict[str, Any] = {}
        if self.steps >= self.learning_starts:
            for _ in range(self.gradient_steps):
                logs = self.update()
        return Iteration(new_obs, len(obs), logs)

    def extra_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "steps": self.steps}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.steps = int(state["steps"])
