"""REINFORCE with a learned baseline (Williams 1992, https://doi.org/10.1007/BF00992696;
Sutton & Barto 2018, section 13.4)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from torchlab.registry import AGENTS
from torchlab.rl.common.agent import EnvSpec, Iteration
from torchlab.rl.common.policies import OnPolicyAgent


@AGENTS.register("reinforce")
class Reinforce(OnPolicyAgent):
    """REINFORCE: one policy-gradient step per batch of ``n_steps * num_envs`` steps.

    Args:
        spec: What the agent is built for.
        lr: Adam learning rate of the policy.
        baseline_lr: Adam learning rate of the value baseline.
        baseline_steps: Regression steps of the baseline per batch.
        n_steps: Steps per copy in each batch (make it at least an episode long).
        gamma: Discount factor.
        normalize_advantage: Standardise ``G_t - b(s_t)`` within the batch.
        ent_coef: Weight of the entropy bonus.
        hidden: Widths of the separate policy and baseline MLPs.
        activation: Activation of the hidden layers (a registered activation name).
    """

    def __init__(
        self,
        spec: EnvSpec,
        /,
        *,
        lr: float = 1e-3,
        baseline_lr: float = 1e-3,
        baseline_steps: int = 5,
        n_steps: int = 500,
        gamma: float = 0.99,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
    ) -> None:
        super().__init__(spec, "reinforce", n_steps=n_steps, hidden=hidden, activation=activation)
        self.lr = lr
        self.baseline_lr = baseline_lr
        self.baseline_steps = baseline_steps
        self.gamma = gamma
        self.normalize_advantage = normalize_advantage
        self.ent_coef = ent_coef
        self.policy_optimizer = torch.optim.Adam(self.net.actor.parameters(), lr=lr)
        self.baseline_optimizer = torch.optim.Adam(self.net.critic.parameters(), lr=baseline_lr)
        if self.net.log_std.numel():
            self.policy_optimizer.add_param_group({"params": [self.net.log_std]})

    def learn(self, env: Any, obs: np.ndarray, progress: float) -> Iteration:
        # Monte-Carlo returns G_t (GAE with lambda = 1). An episode still running when the
        # batch ends, or cut by a time limit, is completed by the baseline's estimate.
        obs = self.rollout(env, obs, self.gamma, 1.0)
        (batch,) = self.buffer.minibatches(self.rollout_steps)
        advantages = batch.returns - batch.old_values  # G_t - b(s_t)
        if self.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        dist = self.net.dist(batch.obs)
        # grad J = E[sum_t grad log pi(a_t|s_t) * (G_t - b(s_t))]
        policy_loss = -(self.net.log_prob(dist, batch.actions) * advantages).mean()
        policy_loss = policy_loss - self.ent_coef * self.net.entropy(dist).mean()
        self.policy_optimizer.zero_grad(set_to_none=True)
        policy_loss.backward()
        self.policy_optimizer.step()
        for _ in range(self.baseline_steps):  # fit b(s) to the returns
            baseline_loss = ((self.net.value(batch.obs) - batch.returns) ** 2).mean()
            self.baseline_optimizer.zero_grad(set_to_none=True)
            baseline_loss.backward()
            self.baseline_optimizer.step()
        logs = {"policy_loss": policy_loss.detach(), "baseline_loss": baseline_loss.detach()}
        return Iteration(obs, self.rollout_steps, logs)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"policy": self.policy_optimizer, "baseline": self.baseline_optimizer}
