"""Twin delayed DDPG (Fujimoto et al. 2018, https://arxiv.org/abs/1802.09477): clipped
double-Q targets, target policy smoothing and delayed actor updates."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchlab.registry import AGENTS
from torchlab.rl.common.agent import EnvSpec
from torchlab.rl.common.continuous import Actor, Critic, OffPolicyContinuous
from torchlab.rl.common.networks import soft_update


@AGENTS.register("td3")
class TD3(OffPolicyContinuous):
    """TD3 for Box actions.

    DDPG (:class:`~torchlab.rl.agents.ddpg.DDPG`) is this agent with one critic, no target
    policy smoothing and an actor update at every critic update.

    Args:
        spec: What the agent is built for; its action space must be a Box.
        lr: Adam learning rate of actor and critics.
        buffer_size: Transitions kept in the replay buffer (at most the step budget).
        learning_starts: Environment steps of uniformly random actions before learning.
        batch_size: Transitions per update.
        gamma: Discount factor.
        tau: Polyak factor of the target networks.
        noise_std: Std of the exploration noise, as a fraction of half the action range.
        target_noise: Std of the target policy smoothing noise (same units), clipped to
            ``target_noise_clip``; 0 turns smoothing off.
        target_noise_clip: Bound of the smoothing noise (same units).
        policy_delay: Critic updates per actor (and target) update.
        gradient_steps: Updates per vector-env step.
        hidden: Widths of the hidden layers of the actor and of each critic.
        activation: Activation of the hidden layers (a registered activation name).
    """

    name = "td3"
    n_critics = 2  # clipped double Q: the target takes the smaller of the critics' estimates

    def __init__(
        self,
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
    ) -> None:
        super().__init__(
            spec,
            self.name,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            noise_std=noise_std,
            gradient_steps=gradient_steps,
        )
        self.lr = lr
        self.batch_size = batch_size
        self.gamma = gamma
        self.tau = tau
        self.target_noise = target_noise
        self.target_noise_clip = target_noise_clip
        self.policy_delay = policy_delay
        self.hidden = hidden
        self.activation = activation
        args = (spec.observation_space, spec.action_space, hidden, activation)
        self.actor = Actor(*args).to(self.device)
        self.critics = nn.ModuleList([Critic(*args) for _ in range(self.n_critics)]).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_optimizer = torch.optim.Adam(self.critics.parameters(), lr=lr)
        space = spec.action_space
        self.half_range = torch.as_tensor(
            (space.high - space.low) / 2, dtype=torch.float32, device=self.device
        )
        self.low = torch.as_tensor(space.low, device=self.device)
        self.high = torch.as_tensor(space.high, device=self.device)
        self.updates = 0

    def update(self) -> dict[str, Any]:
        batch = self.buffer.sample(self.batch_size, self.rng)
        with torch.no_grad():
            next_actions = self.actor_target(batch.next_obs)
            if self.target_noise > 0:
                # Target policy smoothing: a' = clip(mu'(s') + clip(eps, -c, c), low, high)
                noise = torch.randn_like(batch.actions) * self.target_noise
                clip = self.target_noise_clip
                noise = noise.clamp(-clip, clip) * self.half_range
                next_actions = torch.max(torch.min(next_actions + noise, self.high), self.low)
            # Clipped double Q: y = r + gamma * (1 - terminated) * min_i Q'_i(s', a')
            next_q = torch.stack([q(batch.next_obs, next_actions) for q in self.critics_target])
            target = batch.rewards + self.gamma * (1.0 - batch.terminated) * next_q.amin(0)
        critic_loss = sum(F.mse_loss(q(batch.obs, batch.actions), target) for q in self.critics)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        self.updates += 1
        logs = {"critic_loss": critic_loss.detach()}
        if self.updates % self.policy_delay == 0:  # delayed actor and target updates
            # Deterministic policy gradient: maximise Q_1(s, mu(s)).
            actor_loss = -self.critics[0](batch.obs, self.actor(batch.obs)).mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            soft_update(self.critics_target, self.critics, self.tau)
            soft_update(self.actor_target, self.actor, self.tau)
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
        return {**super().extra_state(), "updates": self.updates}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        # DDPG's checkpoints from before it shared this code hold no count; it needs none.
        self.updates = int(state.get("updates", 0))
