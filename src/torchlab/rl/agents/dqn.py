"""Deep Q-network (Mnih et al. 2015, https://doi.org/10.1038/nature14236) with double
Q-learning (van Hasselt et al. 2016, https://arxiv.org/abs/1509.06461)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchlab.registry import AGENTS
from torchlab.rl.common.agent import Agent, EnvSpec, FlatObs, Iteration, obs_dim, require
from torchlab.rl.common.buffers import ReplayBuffer
from torchlab.rl.common.env import next_obs
from torchlab.rl.common.networks import adam, mlp, soft_update
from torchlab.rl.common.schedules import linear


class QNetwork(nn.Module):
    def __init__(
        self, space: gym.Space, actions: int, hidden: Sequence[int], activation: str
    ) -> None:
        super().__init__()
        self.flat = FlatObs(space)
        self.net = mlp(obs_dim(space), actions, hidden, activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.flat(obs))  # (B, actions)


class Greedy(nn.Module):
    """The deterministic policy: argmax of Q."""

    def __init__(self, q: QNetwork) -> None:
        super().__init__()
        self.q = q

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q(obs).argmax(-1)


@AGENTS.register("dqn")
class DQN(Agent):
    """DQN with a replay buffer, a target network and (by default) double Q-learning, for
    Discrete actions.

    Args:
        spec: What the agent is built for; its action space must be Discrete.
        lr: Adam learning rate.
        buffer_size: Transitions kept in the replay buffer (at most the step budget).
        learning_starts: Environment steps of uniformly random actions before learning.
        batch_size: Transitions per update.
        gamma: Discount factor.
        train_freq: Environment steps between rounds of ``gradient_steps`` updates.
        gradient_steps: Updates per round.
        target_update_interval: Environment steps between target-network syncs (``tau=1``:
            copy; ``tau<1``: Polyak averaging), as in SB3: the target stays fixed during a
            burst of ``gradient_steps`` updates.
        tau: Polyak factor of a target sync (1: copy the online network).
        double: Double DQN targets (online net selects, target net evaluates).
        epsilon_start: Exploration rate, decayed linearly to ``epsilon_end`` over the
            first ``exploration_fraction`` of the step budget.
        epsilon_end: Exploration rate after the decay.
        exploration_fraction: Fraction of the step budget over which epsilon decays.
        max_grad_norm: Gradient norm clipping.
        hidden: Widths of the Q-network's hidden layers.
        activation: Activation of the hidden layers (a registered activation name).
    """

    def __init__(
        self,
        spec: EnvSpec,
        /,
        *,
        lr: float = 1e-4,
        buffer_size: int = 100_000,
        learning_starts: int = 1_000,
        batch_size: int = 32,
        gamma: float = 0.99,
        train_freq: int = 4,
        gradient_steps: int = 1,
        target_update_interval: int = 1_000,
        tau: float = 1.0,
        double: bool = True,
        epsilon_start: float = 1.0,
        epsilon_end: float = 0.05,
        exploration_fraction: float = 0.1,
        max_grad_norm: float = 10.0,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "relu",
    ) -> None:
        super().__init__(spec)
        require(spec.action_space, (gym.spaces.Discrete,), "dqn", "action")
        self.lr = lr
        self.buffer_size = buffer_size
        self.learning_starts = learning_starts
        self.batch_size = batch_size
        self.gamma = gamma
        self.train_freq = train_freq
        self.gradient_steps = gradient_steps
        self.target_update_interval = target_update_interval
        self.tau = tau
        self.double = double
        self.epsilon_start = epsilon_start
        self.epsilon_end = epsilon_end
        self.exploration_fraction = exploration_fraction
        self.max_grad_norm = max_grad_norm
        self.hidden = hidden
        self.activation = activation
        n = int(spec.action_space.n)
        self.q = QNetwork(spec.observation_space, n, hidden, activation).to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer = adam(self.q.parameters(), lr)
        self.buffer = ReplayBuffer(
            min(buffer_size, spec.total_steps),
            spec.observation_space.shape,
            (),
            np.int64,
            self.device,
        )
        self.steps = 0  # environment steps seen, summed over copies
        self.updates = 0

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.q(torch.as_tensor(obs, device=self.device)).argmax(-1).cpu().numpy()

    def learn(self, env: Any, obs: np.ndarray, progress: float) -> Iteration:
        epsilon = linear(self.epsilon_start, self.epsilon_end, self.exploration_fraction, progress)
        n = len(obs)
        if self.steps < self.learning_starts:
            actions = self.rng.integers(0, self.spec.action_space.n, n)
        else:
            explore = self.rng.random(n) < epsilon
            random = self.rng.integers(0, self.spec.action_space.n, n)
            # the greedy action only where some copy needs it (saves a forward pass)
            actions = random if explore.all() else np.where(explore, random, self.act(obs))
        new_obs, reward, terminated, truncated, info = env.step(actions)
        reached = next_obs(new_obs, info, terminated | truncated)
        self.buffer.add(obs, actions, reward, reached, terminated)
        before, self.steps = self.steps, self.steps + n
        logs: dict[str, Any] = {"epsilon": epsilon}
        if self.steps >= self.learning_starts and crossed(before, self.steps, self.train_freq):
            losses = [self.update() for _ in range(self.gradient_steps)]
            logs["loss"] = torch.stack(losses).mean()
        if crossed(before, self.steps, self.target_update_interval):
            soft_update(self.q_target, self.q, self.tau)
        return Iteration(new_obs, n, logs)

    def update(self) -> torch.Tensor:
        batch = self.buffer.sample(self.batch_size, self.rng)
        with torch.no_grad():
            next_q = self.q_target(batch.next_obs)  # (B, actions)
            if self.double:  # the online net picks a', the target net values it
                best = self.q(batch.next_obs).argmax(-1, keepdim=True)
                next_value = next_q.gather(1, best).squeeze(1)
            else:
                next_value = next_q.max(-1).values
            # y = r + gamma * (1 - terminated) * Q'(s', a*)
            target = batch.rewards + self.gamma * (1.0 - batch.terminated) * next_value
        q = self.q(batch.obs).gather(1, batch.actions.long().unsqueeze(1)).squeeze(1)
        loss = F.smooth_l1_loss(q, target)  # Huber loss, as in the Nature DQN
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        return loss.detach()

    def networks(self) -> dict[str, nn.Module]:
        return {"q": self.q, "q_target": self.q_target}

    def policy(self) -> nn.Module:
        return Greedy(self.q)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"q": self.optimizer}

    def extra_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "steps": self.steps, "updates": self.updates}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.steps, self.updates = int(state["steps"]), int(state["updates"])


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in ``(before, after]``."""
    return after // every > before // every
