"""Tabular Q-learning (Watkins 1989; Sutton & Barto 2018, section 6.5,
http://incompleteideas.net/book/RLbook2020.pdf) for Discrete observations and actions."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from torchlab.registry import AGENTS
from torchlab.rl.common.agent import Agent, EnvSpec, Iteration, require
from torchlab.rl.common.schedules import linear


class QTable(nn.Module):
    """The table as a module, so it is saved, loaded and exported like any network."""

    def __init__(self, states: int, actions: int) -> None:
        super().__init__()
        self.register_buffer("q", torch.zeros(states, actions, dtype=torch.float64))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q[obs.long().reshape(-1)].argmax(-1)  # greedy action per state


@AGENTS.register("q_learning")
class QLearning(Agent):
    """Tabular Q-learning with an epsilon-greedy behaviour policy.

    Args:
        spec: What the agent is built for; both of its spaces must be Discrete.
        lr: Step size at the start; decays linearly to ``lr_end`` over training.
        lr_end: Step size at the end of the step budget.
        gamma: Discount factor.
        epsilon_start: Exploration rate at the start, decayed linearly to ``epsilon_end``
            over the first ``exploration_fraction`` of the step budget.
        epsilon_end: Exploration rate after the decay.
        exploration_fraction: Fraction of the step budget over which epsilon decays.
    """

    def __init__(
        self,
        spec: EnvSpec,
        /,
        *,
        lr: float = 0.1,
        lr_end: float = 0.1,
        gamma: float = 0.99,
        epsilon_start: float = 1.0,
        epsilon_end: float = 0.05,
        exploration_fraction: float = 0.5,
    ) -> None:
        super().__init__(spec)
        require(spec.observation_space, (gym.spaces.Discrete,), "q_learning", "observation")
        require(spec.action_space, (gym.spaces.Discrete,), "q_learning", "action")
        self.lr = lr
        self.lr_end = lr_end
        self.gamma = gamma
        self.epsilon_start = epsilon_start
        self.epsilon_end = epsilon_end
        self.exploration_fraction = exploration_fraction
        self.table = QTable(int(spec.observation_space.n), int(spec.action_space.n))
        self.q = self.table.q.numpy()  # shares memory: updates below change the module

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.q[obs.astype(np.int64)].argmax(-1)

    def learn(self, env: Any, obs: np.ndarray, progress: float) -> Iteration:
        epsilon = linear(self.epsilon_start, self.epsilon_end, self.exploration_fraction, progress)
        lr = self.lr + (self.lr_end - self.lr) * progress
        greedy = self._greedy(obs)
        explore = self.rng.random(len(obs)) < epsilon
        actions = np.where(explore, self.rng.integers(0, self.q.shape[1], len(obs)), greedy)
        new_obs, reward, terminated, truncated, info = env.step(actions)
        reached = np.asarray(
            [
                info["final_obs"][i] if d else new_obs[i]
                for i, d in enumerate(terminated | truncated)
            ]
        ).astype(np.int64)
        # Q(s,a) <- Q(s,a) + lr * (r + gamma * max_a' Q(s',a') - Q(s,a)); no bootstrap at a terminal s'.
        target = reward + self.gamma * (1.0 - terminated) * self.q[reached].max(-1)
        s = obs.astype(np.int64)
        self.q[s, actions] += lr * (target - self.q[s, actions])
        return Iteration(new_obs, len(obs), {"epsilon": epsilon, "lr": lr})

    def _greedy(self, obs: np.ndarray) -> np.ndarray:
        """Argmax with ties broken at random, so an all-zero table still explores evenly."""
        rows = self.q[obs.astype(np.int64)]
        best = rows == rows.max(-1, keepdims=True)
        noise = self.rng.random(rows.shape) * best
        return noise.argmax(-1)

    def networks(self) -> dict[str, nn.Module]:
        return {"table": self.table}

    def policy(self) -> nn.Module:
        return self.table
