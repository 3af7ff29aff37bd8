"""Deep deterministic policy gradient (Lillicrap et al. 2016, https://arxiv.org/abs/1509.02971).

TD3 grew out of DDPG by adding clipped double-Q targets, target policy smoothing and
delayed actor updates; DDPG is TD3 with the three turned off, as in Stable-Baselines3.
"""

from __future__ import annotations

from torch import nn

from torchlab.registry import AGENTS
from torchlab.rl.agents.td3 import TD3
from torchlab.rl.common.agent import EnvSpec


@AGENTS.register("ddpg")
class DDPG(TD3):
    """DDPG with target networks and Gaussian exploration noise, for Box actions: one
    critic, whose target ``y = r + gamma * (1 - terminated) * Q'(s', mu'(s'))`` the actor
    follows at every update.

    Args:
        spec: What the agent is built for; its action space must be a Box.
        lr: Adam learning rate of actor and critic.
        buffer_size: Transitions kept in the replay buffer (at most the step budget).
        learning_starts: Environment steps of uniformly random actions before learning.
        batch_size: Transitions per update.
        gamma: Discount factor.
        tau: Polyak factor of the target networks.
        noise_std: Std of the exploration noise, as a fraction of half the action range.
        gradient_steps: Updates per vector-env step.
        hidden: Widths of the hidden layers of the actor and of the critic.
        activation: Activation of the hidden layers (a registered activation name).
    """

    name = "ddpg"
    n_critics = 1

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
        gradient_steps: int = 1,
        hidden: tuple[int, ...] = (400, 300),
        activation: str = "relu",
    ) -> None:
        super().__init__(
            spec,
            lr=lr,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            gamma=gamma,
            tau=tau,
            noise_std=noise_std,
            target_noise=0.0,
            target_noise_clip=0.0,
            policy_delay=1,
            gradient_steps=gradient_steps,
            hidden=hidden,
            activation=activation,
        )

    def networks(self) -> dict[str, nn.Module]:
        # The one critic under the names DDPG's runs and checkpoints have always used.
        return {
            "actor": self.actor,
            "critic": self.critics[0],
            "actor_target": self.actor_target,
            "critic_target": self.critics_target[0],
        }
