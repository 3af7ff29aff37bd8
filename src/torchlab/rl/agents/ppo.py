"""Proximal policy optimisation (Schulman et al. 2017, https://arxiv.org/abs/1707.06347)
with GAE, a clipped value loss and an entropy bonus."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from torchlab.registry import AGENTS
from torchlab.rl.common.agent import Agent, EnvSpec, Iteration
from torchlab.rl.common.networks import adam
from torchlab.rl.common.policies import OnPolicyAgent


class PPO(OnPolicyAgent):
    def __init__(self, spec: EnvSpec, **hp: Any) -> None:
        super().__init__(spec, "ppo", hp)
        self.optimizer = adam(self.net.parameters(), hp["lr"], eps=1e-5)

    def learn(self, env: Any, obs: np.ndarray, progress: float) -> Iteration:
        hp = self.hp
        steps = self.rollout_steps
        obs = self.rollout(env, obs, hp["gamma"], hp["gae_lambda"])
        # Linear decay on the progress remaining *after* this rollout, as the RL Zoo's
        # schedules in SB3 (which update the progress before training on a rollout).
        done = progress + steps / self.spec.total_steps
        remaining = max(0.0, 1.0 - done) if hp["anneal"] else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = hp["lr"] * remaining
        clip = hp["clip_range"] * remaining
        logs: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("policy_loss", "value_loss", "entropy", "clip_fraction")
        }
        for _ in range(hp["n_epochs"]):
            for batch in self.buffer.minibatches(hp["batch_size"]):
                dist = self.net.dist(batch.obs)
                log_prob = self.net.log_prob(dist, batch.actions)
                adv = batch.advantages
                if hp["normalize_advantage"] and len(adv) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                # L^CLIP = E[min(rho * A, clip(rho, 1 - eps, 1 + eps) * A)], rho = pi / pi_old
                ratio = (log_prob - batch.old_log_probs).exp()
                policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()
                value = self.net.value(batch.obs)
                if hp["clip_range_vf"] is not None:  # value clipping around the old estimate
                    clipped = batch.old_values + (value - batch.old_values).clamp(
                        -hp["clip_range_vf"], hp["clip_range_vf"]
                    )
                    value_loss = torch.max(
                        (value - batch.returns) ** 2, (clipped - batch.returns) ** 2
                    ).mean()
                else:
                    value_loss = ((value - batch.returns) ** 2).mean()
                entropy = self.net.entropy(dist).mean()
                loss = policy_loss + hp["vf_coef"] * value_loss - hp["ent_coef"] * entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), hp["max_grad_norm"])
                self.optimizer.step()
                logs["policy_loss"].append(policy_loss.detach())
                logs["value_loss"].append(value_loss.detach())
                logs["entropy"].append(entropy.detach())
                logs["clip_fraction"].append(((ratio - 1).abs() > clip).float().mean().detach())
        out = {k: torch.stack(v).mean() for k, v in logs.items()}
        return Iteration(obs, steps, {**out, "lr": hp["lr"] * remaining})

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"net": self.optimizer}


@AGENTS.register("ppo")
def ppo(
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
) -> Agent:
    """PPO-clip for Discrete or Box actions.

    Args:
        lr: Adam learning rate.
        n_steps: Steps per copy in each rollout (a rollout is ``n_steps * num_envs`` samples).
        batch_size: Minibatch size; ``n_epochs`` passes over each rollout.
        gae_lambda: GAE's lambda (1: Monte-Carlo advantages, 0: one-step TD).
        clip_range: The policy ratio is clipped to ``[1 - clip_range, 1 + clip_range]``.
        clip_range_vf: Clip the value update to this distance from the rollout's estimate
            (None: no value clipping).
        ent_coef: Weight of the entropy bonus.
        vf_coef: Weight of the value loss.
        anneal: Decay ``lr`` and ``clip_range`` linearly to 0 over the step budget.
        hidden: Widths of the separate policy and value MLPs.
    """
    return PPO(spec, **{k: v for k, v in locals().items() if k != "spec"})
