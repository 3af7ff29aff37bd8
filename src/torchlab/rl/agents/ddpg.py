"""Deep deterministic policy gradient (Lillicrap et al. 2016, https://arxiv.org/abs/1509.02971)."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchlab.registry import AGENTS
from torchlab.rl.common.agent import Agent, EnvSpec, require
from torchlab.rl.common.buffers import ReplayBuffer
from torchlab.rl.common.continuous import Actor, Critic, OffPolicyContinuous
from torchlab.rl.common.networks import soft_update


class DDPG(OffPolicyContinuous):
    def __init__(self, spec: EnvSpec, **hp: Any) -> None:
        super().__init__(spec)
        require(spec.action_space, (gym.spaces.Box,), "ddpg", "action")
        self.hp = hp
        args = (spec.observation_space, spec.action_space, hp["hidden"], hp["activation"])
        self.actor = Actor(*args).to(self.device)
        self.critic = Critic(*args).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=hp["lr"])
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=hp["lr"])
        self.buffer = ReplayBuffer(
            min(hp["buffer_size"], spec.total_steps),
            spec.observation_space.shape,
            spec.action_space.shape,
            np.float32,
            self.device,
        )
        self.steps = 0

    def update(self) -> dict[str, Any]:
        hp = self.hp
        batch = self.buffer.sample(hp["batch_size"], self.rng)
        with torch.no_grad():
            # y = r + gamma * (1 - terminated) * Q'(s', mu'(s'))
            next_q = self.critic_target(batch.next_obs, self.actor_target(batch.next_obs))
            target = batch.rewards + hp["gamma"] * (1.0 - batch.terminated) * next_q
        critic_loss = F.mse_loss(self.critic(batch.obs, batch.actions), target)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        # Deterministic policy gradient: maximise Q(s, mu(s)).
        actor_loss = -self.critic(batch.obs, self.actor(batch.obs)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        soft_update(self.critic_target, self.critic, hp["tau"])
        soft_update(self.actor_target, self.actor, hp["tau"])
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach()}

    def networks(self) -> dict[str, nn.Module]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "actor_target": self.actor_target,
            "critic_target": self.critic_target,
        }

    def policy(self) -> nn.Module:
        return self.actor

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    def extra_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "steps": self.steps}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.steps = int(state["steps"])


@AGENTS.register("ddpg")
def ddpg(
    spec: EnvSpec,
    /,
    *,
    lr: float = 1e-3,
    buffer_size: int = 1_000_000,
    learning_starts: int = 100,
    batch_size: int = 256,
    gamma: float = 0.99,
    tau: float = 0.005,
    noise_std: float = 0.1,
    gradient_steps: int = 1,
    hidden: tuple[int, ...] = (400, 300),
    activation: str = "relu",
) -> Agent:
    """DDPG with target networks and Gaussian exploration noise, for Box actions.

    Args:
        lr: Adam learning rate of actor and critic.
        learning_starts: Environment steps of uniformly random actions before learning.
        tau: Polyak factor of the target networks.
        noise_std: Std of the exploration noise, as a fraction of half the action range.
        gradient_steps: Updates per vector-env step.
    """
    return DDPG(spec, **{k: v for k, v in locals().items() if k != "spec"})
