"""Twin delayed DDPG (Fujimoto et al. 2018, https://arxiv.org/abs/1802.09477): clipped
double-Q targets, target policy smoothing and delayed actor updates."""

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


class TD3(OffPolicyContinuous):
    def __init__(self, spec: EnvSpec, **hp: Any) -> None:
        super().__init__(spec)
        require(spec.action_space, (gym.spaces.Box,), "td3", "action")
        self.hp = hp
        args = (spec.observation_space, spec.action_space, hp["hidden"], hp["activation"])
        self.actor = Actor(*args).to(self.device)
        self.critics = nn.ModuleList([Critic(*args), Critic(*args)]).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=hp["lr"])
        self.critic_optimizer = torch.optim.Adam(self.critics.parameters(), lr=hp["lr"])
        self.buffer = ReplayBuffer(
            min(hp["buffer_size"], spec.total_steps),
            spec.observation_space.shape,
            spec.action_space.shape,
            np.float32,
            self.device,
        )
        space = spec.action_space
        self.half_range = torch.as_tensor(
            (space.high - space.low) / 2, dtype=torch.float32, device=self.device
        )
        self.low = torch.as_tensor(space.low, device=self.device)
        self.high = torch.as_tensor(space.high, device=self.device)
        self.steps, self.updates = 0, 0

    def update(self) -> dict[str, Any]:
        hp = self.hp
        batch = self.buffer.sample(hp["batch_size"], self.rng)
        with torch.no_grad():
            # Target policy smoothing: a' = clip(mu'(s') + clip(eps, -c, c), low, high)
            noise = torch.randn_like(batch.actions) * hp["target_noise"]
            noise = noise.clamp(-hp["target_noise_clip"], hp["target_noise_clip"]) * self.half_range
            next_actions = torch.max(
                torch.min(self.actor_target(batch.next_obs) + noise, self.high), self.low
            )
            # Clipped double Q: y = r + gamma * (1 - terminated) * min_i Q'_i(s', a')
            next_q = torch.min(*(q(batch.next_obs, next_actions) for q in self.critics_target))
            target = batch.rewards + hp["gamma"] * (1.0 - batch.terminated) * next_q
        critic_loss = sum(F.mse_loss(q(batch.obs, batch.actions), target) for q in self.critics)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        self.updates += 1
        logs = {"critic_loss": critic_loss.detach()}
        if self.updates % hp["policy_delay"] == 0:  # delayed actor and target updates
            actor_loss = -self.critics[0](batch.obs, self.actor(batch.obs)).mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            soft_update(self.critics_target, self.critics, hp["tau"])
            soft_update(self.actor_target, self.actor, hp["tau"])
            logs["actor_loss"] = actor_loss.detach()
        return logs

    def networks(self) -> dict[str, nn.Module]:
        return {
            "actor": self.actor,
            "critics": self.critics,
            "actor_target": self.actor_target,
            "critics_target": self.critics_target,
        }

    def policy(self) -> nn.Module:
        return self.actor

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    def extra_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "steps": self.steps, "updates": self.updates}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.steps, self.updates = int(state["steps"]), int(state["updates"])


@AGENTS.register("td3")
def td3(
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
    target_noise: float = 0.2,
    target_noise_clip: float = 0.5,
    policy_delay: int = 2,
    gradient_steps: int = 1,
    hidden: tuple[int, ...] = (400, 300),
    activation: str = "relu",
) -> Agent:
    """TD3 for Box actions.

    Args:
        lr: Adam learning rate of actor and critics.
        learning_starts: Environment steps of uniformly random actions before learning.
        tau: Polyak factor of the target networks.
        noise_std: Std of the exploration noise, as a fraction of half the action range.
        target_noise: Std of the target policy smoothing noise (same units), clipped to
            ``target_noise_clip``.
        policy_delay: Critic updates per actor (and target) update.
        gradient_steps: Updates per vector-env step.
    """
    return TD3(spec, **{k: v for k, v in locals().items() if k != "spec"})
