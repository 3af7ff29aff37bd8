"""Actor-critic networks, on-policy rollout collection and the base of the on-policy
agents (REINFORCE, A2C, PPO).

A categorical head serves Discrete actions, a diagonal Gaussian with a learned,
state-independent log-std serves Box actions (clipped to the bounds when stepping).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

from torchlab.rl.common.agent import Agent, EnvSpec, FlatObs, obs_dim, require
from torchlab.rl.common.buffers import RolloutBuffer
from torchlab.rl.common.env import next_obs
from torchlab.rl.common.networks import mlp, orthogonal_init


class ActorCritic(nn.Module):
    """Separate policy and value MLPs over the same (flattened) observation."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden: Sequence[int],
        activation: str,
        agent: str,
    ) -> None:
        super().__init__()
        require(action_space, (gym.spaces.Discrete, gym.spaces.Box), agent, "action")
        self.flat = FlatObs(observation_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        n_in = obs_dim(observation_space)
        n_out = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.actor = mlp(n_in, n_out, hidden, activation)
        self.critic = mlp(n_in, 1, hidden, activation)
        orthogonal_init(self.actor)
        orthogonal_init(self.critic)
        nn.init.orthogonal_(self.actor[-1].weight, 0.01)  # near-uniform initial policy
        nn.init.orthogonal_(self.critic[-1].weight, 1.0)
        self.log_std = nn.Parameter(torch.zeros(0 if self.discrete else n_out))

    def dist(self, obs: torch.Tensor) -> Distribution:
        out = self.actor(self.flat(obs))
        if self.discrete:
            return Categorical(logits=out, validate_args=False)
        return Normal(out, self.log_std.exp().expand_as(out), validate_args=False)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.flat(obs)).squeeze(-1)  # (B,)

    def log_prob(self, dist: Distribution, actions: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return dist.log_prob(actions.long().reshape(-1))
        return dist.log_prob(actions).sum(-1)

    def entropy(self, dist: Distribution) -> torch.Tensor:
        ent = dist.entropy()
        return ent if self.discrete else ent.sum(-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action: the most likely class, or the Gaussian mean."""
        out = self.actor(self.flat(obs))
        return out.argmax(-1) if self.discrete else out


def to_env_actions(actions: np.ndarray, space: gym.Space) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return actions.reshape(-1).astype(np.int64)
    return np.clip(actions, space.low, space.high)


@torch.no_grad()
def collect_rollout(
    env: Any, obs: np.ndarray, net: ActorCritic, buffer: RolloutBuffer, device: torch.device
) -> np.ndarray:
    """Fill ``buffer`` with ``n_steps`` steps of every copy; returns the next observation.

    Actions are sampled with torch's global generator (part of every checkpoint). V of the
    state reached is computed once per step and reused as the next step's V(s), except
    where an episode ended (there V of the final observation is computed on its own).
    """
    space = env.single_action_space
    values = net.value(torch.as_tensor(obs, device=device))
    for t in range(buffer.n_steps):
        dist = net.dist(torch.as_tensor(obs, device=device))
        actions = dist.sample()
        buffer.obs[t] = obs.reshape(buffer.obs.shape[1:])
        buffer.actions[t] = actions.reshape(buffer.actions.shape[1:]).cpu().numpy()
        buffer.log_probs[t] = net.log_prob(dist, actions).cpu().numpy()
        buffer.values[t] = values.cpu().numpy()
        obs, reward, terminated, truncated, info = env.step(
            to_env_actions(actions.cpu().numpy(), space)
        )
        done = terminated | truncated
        values = net.value(torch.as_tensor(obs, device=device))
        next_values = values.cpu().numpy().copy()
        if done.any():
            ended = np.flatnonzero(done)
            reached = next_obs(obs, info, done)[ended]
            next_values[ended] = net.value(torch.as_tensor(reached, device=device)).cpu().numpy()
        buffer.rewards[t] = reward
        buffer.terminated[t] = terminated
        buffer.done[t] = done
        buffer.next_values[t] = next_values
    return obs


class OnPolicyAgent(Agent):
    """An :class:`ActorCritic` ``net`` learning from rollouts of ``n_steps`` per copy.

    Subclasses create their optimizer(s) and write :meth:`learn` around :meth:`rollout`.
    """

    def __init__(
        self, spec: EnvSpec, name: str, *, n_steps: int, hidden: Any, activation: str
    ) -> None:
        super().__init__(spec)
        self.n_steps, self.hidden, self.activation = n_steps, hidden, activation
        self.net = ActorCritic(
            spec.observation_space, spec.action_space, hidden, activation, name
        ).to(self.device)
        self.buffer = RolloutBuffer(
            n_steps,
            spec.num_envs,
            spec.observation_space.shape,
            spec.action_space.shape,
            self.device,
        )

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.net(torch.as_tensor(obs, device=self.device)).cpu().numpy()

    def rollout(self, env: Any, obs: np.ndarray, gamma: float, lam: float) -> np.ndarray:
        """Fill the buffer and its GAE(gamma, lam) advantages; returns the next observation."""
        obs = collect_rollout(env, obs, self.net, self.buffer, self.device)
        self.buffer.compute(gamma, lam)
        return obs

    @property
    def rollout_steps(self) -> int:
        """Environment steps per rollout, summed over copies."""
        return self.n_steps * self.spec.num_envs

    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def policy(self) -> nn.Module:
        return self.net
