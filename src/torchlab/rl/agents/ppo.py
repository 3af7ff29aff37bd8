"""Proximal policy optimisation (Schulman et al. 2017, https://arxiv.org/abs/1707.06347)
with GAE, a clipped value loss and an entropy bonus."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from torchlab.registry import AGENTS
from torchlab.rl.common.agent import EnvSpec, Iteration
from torchlab.rl.common.networks import adam
from torchlab.rl.common.policies import OnPolicyAgent


@AGENTS.register("ppo")
class PPO(OnPolicyAgent):
    """PPO-clip for Discrete or Box actions.

    Args:
        spec: What the agent is built for.
        lr: Adam learning rate.
        n_steps: Steps per copy in each rollout (a rollout is ``n_steps * num_envs`` samples).
        batch_size: Minibatch size; ``n_epochs`` passes over each rollout.
        n_epochs: Passes over each rollout.
        gamma: Discount factor.
        gae_lambda: GAE's lambda (1: Monte-Carlo advantages, 0: one-step TD).
        clip_range: The policy ratio is clipped to ``[1 - clip_range, 1 + clip_range]``.
        clip_range_vf: Clip the value update to this distance from the rollout's estimate
            (None: no value clipping).
        normalize_advantage: Standardise the advantages within each minibatch.
        ent_coef: Weight of the entropy bonus.
        vf_coef: Weight of the value loss.
        max_grad_norm: Gradient norm clipping.
        anneal: Decay ``lr`` and ``clip_range`` linearly to 0 over the step budget.
        hidden: Widths of the separate policy and value MLPs.
        activation: Activation of the hidden layers (a registered activation name).
    """

    def __init__(
        self,
        spec: EnvSpec,
        /,
        *,
        lr: float = 3e-4,
        n_steps: int = 128,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float = 0.2,
        clip_range_vf: float | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        anneal: bool = False,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
    ) -> None:
        super().__init__(spec, "ppo", n_steps=n_steps, hidden=hidden, activation=activation)
        self.lr = lr
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.clip_range = clip_range
        self.clip_range_vf = clip_range_vf
        self.normalize_advantage = normalize_advantage
        self.ent_coef = ent_coef
        self.vf_coef = vf_coef
        self.max_grad_norm = max_grad_norm
        self.anneal = anneal
        self.optimizer = adam(self.net.parameters(), lr, eps=1e-5)

    def learn(self, env: Any, obs: np.ndarray, progress: float) -> Iteration:
        steps = self.rollout_steps
        obs = self.rollout(env, obs, self.gamma, self.gae_lambda)
        # Linear decay on the progress remaining *after* this rollout, as the RL Zoo's
        # schedules in SB3 (which update the progress before training on a rollout).
        done = progress + steps / self.spec.total_steps
        remaining = max(0.0, 1.0 - done) if self.anneal else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * remaining
        clip = self.clip_range * remaining
        logs: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("policy_loss", "value_loss", "entropy", "clip_fraction")
        }
        for _ in range(self.n_epochs):
            for batch in self.buffer.minibatches(self.batch_size):
                dist = self.net.dist(batch.obs)
                log_prob = self.net.log_prob(dist, batch.actions)
                adv = batch.advantages
                if self.normalize_advantage and len(adv) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                # L^CLIP = E[min(rho * A, clip(rho, 1 - eps, 1 + eps) * A)], rho = pi / pi_old
                ratio = (log_prob - batch.old_log_probs).exp()
                policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()
                value = self.net.value(batch.obs)
                if self.clip_range_vf is not None:  # value clipping around the old estimate
                    clipped = batch.old_values + (value - batch.old_values).clamp(
                        -self.clip_range_vf, self.clip_range_vf
                    )
                    value_loss = torch.max(
                        (value - batch.returns) ** 2, (clipped - batch.returns) ** 2
                    ).mean()
                else:
                    value_loss = ((value - batch.returns) ** 2).mean()
                entropy = self.net.entropy(dist).mean()
                loss = policy_loss + self.vf_coef * value_loss - self.ent_coef * entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), self.max_grad_norm)
                self.optimizer.step()
                logs["policy_loss"].append(policy_loss.detach())
                logs["value_loss"].append(value_loss.detach())
                logs["entropy"].append(entropy.detach())
                logs["clip_fraction"].append(((ratio - 1).abs() > clip).float().mean().detach())
        out = {k: torch.stack(v).mean() for k, v in logs.items()}
        return Iteration(obs, steps, {**out, "lr": self.lr * remaining})

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"net": self.optimizer}
