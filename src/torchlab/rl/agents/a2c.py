"""Advantage actor-critic, the synchronous variant of A3C (Mnih et al. 2016,
https://arxiv.org/abs/1602.01783): short rollouts of many copies, one update each."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from torchlab.registry import AGENTS
from torchlab.rl.common.agent import EnvSpec, Iteration
from torchlab.rl.common.policies import OnPolicyAgent


@AGENTS.register("a2c")
class A2C(OnPolicyAgent):
    """A2C for Discrete or Box actions.

    Args:
        spec: What the agent is built for.
        lr: RMSprop learning rate.
        n_steps: Steps per copy before each update (the n of the n-step return).
        gamma: Discount factor.
        gae_lambda: 1 gives the plain n-step advantage of the paper.
        ent_coef: Weight of the entropy bonus.
        vf_coef: Weight of the value loss.
        max_grad_norm: Gradient norm clipping.
        hidden: Widths of the separate policy and value MLPs.
        activation: Activation of the hidden layers (a registered activation name).
    """

    def __init__(
        self,
        spec: EnvSpec,
        /,
        *,
        lr: float = 7e-4,
        n_steps: int = 5,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
    ) -> None:
        super().__init__(spec, "a2c", n_steps=n_steps, hidden=hidden, activation=activation)
        self.lr = lr
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.ent_coef = ent_coef
        self.vf_coef = vf_coef
        self.max_grad_norm = max_grad_norm
        # RMSprop with these settings, as in the A3C paper and SB3.
        self.optimizer = torch.optim.RMSprop(self.net.parameters(), lr=lr, alpha=0.99, eps=1e-5)

    def learn(self, env: Any, obs: np.ndarray, progress: float) -> Iteration:
        obs = self.rollout(env, obs, self.gamma, self.gae_lambda)
        (batch,) = self.buffer.minibatches(self.rollout_steps)
        dist = self.net.dist(batch.obs)
        # grad J = E[grad log pi(a|s) * A(s, a)]; the critic regresses the n-step return.
        policy_loss = -(self.net.log_prob(dist, batch.actions) * batch.advantages).mean()
        value_loss = ((self.net.value(batch.obs) - batch.returns) ** 2).mean()
        entropy = self.net.entropy(dist).mean()
        loss = policy_loss + self.vf_coef * value_loss - self.ent_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), self.max_grad_norm)
        self.optimizer.step()
        logs = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy}
        return Iteration(obs, self.rollout_steps, {k: v.detach() for k, v in logs.items()})

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"net": self.optimizer}
