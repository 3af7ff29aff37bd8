"""What ``torchlab export`` writes for an RL run: its deterministic policy (observations ->
actions), verified on observations drawn from the environment's own space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from torchlab.exporters.inputs import InputKind
from torchlab.exporters.sources import Exportable, refusing
from torchlab.rl.api import load_policy

ARCHIVE = (
    "A TorchServe archive serves supervised models; export an RL policy with "
    "--format torchscript, onnx or exported-program."
)


@dataclass(frozen=True)
class ObservationKind(InputKind):
    """Observations of an RL environment: examples are drawn from its observation space, so
    verification runs on states the policy can meet (in range for discrete spaces)."""

    space: Any = None

    def example(self, input_shape: tuple[int, ...], batch: int = 2, seed: int = 0) -> torch.Tensor:
        self.space.seed(seed)
        samples = np.stack([np.asarray(self.space.sample()) for _ in range(batch)])
        return torch.as_tensor(samples).to(self.dtype).reshape(batch, *input_shape)


def policy_exportable(run: Any) -> Exportable:
    """The run's deterministic policy, what its observations look like, and its sidecar."""
    import gymnasium as gym

    policy = load_policy(run)
    obs_shape = tuple(policy.example.shape[1:])
    kind = ObservationKind(
        "observation", {0: "batch"}, dtype=policy.example.dtype, space=policy.observation_space
    )
    discrete = isinstance(policy.action_space, gym.spaces.Discrete)
    steps = (
        "observations as the environment returns them, batched (B, *shape)"
        if policy.normalization is None
        else "standardise each observation with 'normalization': (x - mean) / sqrt(var + 1e-8), "
        "clipped to [-10, 10], float32, batched (B, *shape)"
    )
    description = {
        "agent": run.config.agent.model_dump(mode="json"),
        "env": run.config.env.model_dump(mode="json"),
        "output": {
            "shape": ["batch"] if discrete else ["batch", *policy.action_space.shape],
            "meaning": "the deterministic action: the index of a Discrete action"
            if discrete
            else "the action, within the environment's bounds",
        },
        "preprocessing": {"kind": "observation", "normalization": policy.normalization},
        "preprocessing_steps": steps,
    }
    return refusing(Exportable(policy.module, kind, obs_shape, description), "mar", ARCHIVE)
