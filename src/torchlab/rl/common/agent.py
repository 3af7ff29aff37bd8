"""The contract between the environment loop and an agent.

An agent is a registered class whose ``__init__(spec, /, *, hyper-parameters...)`` takes each
hyper-parameter as a typed, documented keyword-only argument with a default (the registry
checks a config's ``agent:`` keys against them). It advances training one *iteration* at a
time: an off-policy agent steps the vector env once and maybe updates; an on-policy agent
collects a rollout and updates. The loop owns the environments, the step budget,
evaluation, logging and checkpoints.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from torchlab.errors import ConfigError


@dataclass(frozen=True)
class EnvSpec:
    """What an agent is built for: spaces, copies, budget, seed and device."""

    observation_space: gym.Space
    action_space: gym.Space
    num_envs: int
    total_steps: int
    seed: int
    device: torch.device


class Iteration(NamedTuple):
    """What one call of :meth:`Agent.learn` did."""

    obs: np.ndarray  # (N, *obs_shape): the observation to continue from
    steps: int  # environment steps taken, summed over copies
    logs: dict[str, Any]  # losses and the like: floats or detached tensors, synced only when logged


class Agent(ABC):
    """Base of every agent. Subclasses hold networks and optimizers as attributes."""

    def __init__(self, spec: EnvSpec) -> None:
        self.spec = spec
        self.device = spec.device
        self.rng = np.random.default_rng(spec.seed)  # exploration and replay sampling

    @abstractmethod
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions ``(N, ...)`` for observations ``(N, ...)``."""

    @abstractmethod
    def learn(self, env: Any, obs: np.ndarray, progress: float) -> Iteration:
        """One iteration from ``obs``; ``progress`` is the fraction of the budget done."""

    @abstractmethod
    def networks(self) -> dict[str, nn.Module]:
        """Every network by name (saved as ``<name>.<param>`` in safetensors)."""

    @abstractmethod
    def policy(self) -> nn.Module:
        """The deterministic policy ``obs -> action`` as one module (what export traces)."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def on_env_reset(self) -> None:
        """Called when the loop restarts every copy (at a checkpoint): drop partial episodes."""
        return None

    def extra_state(self) -> dict[str, Any]:
        """State beyond weights and optimizers (a replay buffer, counters)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""
        return None

    # --- saved as a whole by the loop ------------------------------------------------

    def weights(self) -> dict[str, torch.Tensor]:
        return {
            f"{name}.{key}": value
            for name, net in self.networks().items()
            for key, value in net.state_dict().items()
        }

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        for name, net in self.networks().items():
            prefix = f"{name}."
            net.load_state_dict(
                {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "rng": _generator_state(self.rng),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, optimizer in self.optimizers().items():
            optimizer.load_state_dict(state["optimizers"][key])
        self.rng.bit_generator.state = _from_generator_state(state["rng"])
        self.load_extra_state(state["extra"])


def _generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """A NumPy generator's state with its 128-bit integers as text (``weights_only`` safe)."""
    state = rng.bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": {k: str(v) for k, v in state["state"].items()},
        "has_uint32": state["has_uint32"],
        "uinteger": state["uinteger"],
    }


def _from_generator_state(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "state": {k: int(v) for k, v in state["state"].items()}}


def require(space: gym.Space, kinds: tuple[type, ...], agent: str, what: str) -> None:
    """A clear error when an agent meets a space it cannot handle."""
    if not isinstance(space, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(
            f"Agent '{agent}' needs a {names} {what} space; the environment has {space}. "
            "Choose an agent for this space (docs/rl.md lists which agent fits which)."
        )


def obs_dim(space: gym.Space) -> int:
    """Width of a flat observation (a Discrete observation is one-hot encoded)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    raise ConfigError(
        f"Observation space {space} is not supported; use a Box or Discrete observation space."
    )


class FlatObs(nn.Module):
    """Observations as a flat float batch: one-hot for Discrete spaces."""

    def __init__(self, space: gym.Space) -> None:
        super().__init__()
        self.n = int(space.n) if isinstance(space, gym.spaces.Discrete) else 0

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.n:
            return nn.functional.one_hot(obs.long().reshape(-1), self.n).float()
        return obs.float().reshape(obs.shape[0], -1)
