"""Tiny deterministic environments for tests, registered as ``torchlab/...`` gymnasium ids.

- ``torchlab/Identity-v0``: observe a random symbol in ``Discrete(n)``, act with the same
  symbol for reward 1 (else 0); episodes last ``length`` steps, so the best return is
  ``length``. Tests tabular Q-learning and discrete-action agents.
- ``torchlab/IdentityBox-v0``: the same with the symbol one-hot encoded in a ``Box``.
- ``torchlab/IdentityContinuous-v0``: observe ``x`` in ``[-1, 1]^d``, reward ``-mean((a-x)^2)``;
  the best return is 0. Tests continuous-action agents.
- ``torchlab/Bandit-v0``: one state, arm ``k`` pays ``k / (n-1)`` at once; the best
  return is 1 (arm ``n-1``).

Symbols come from the env's own seeded generator, so a seeded reset replays an episode.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Identity(gym.Env):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, n: int = 4, length: int = 8, render_mode: str | None = None) -> None:
        self.n, self.length, self.render_mode = n, length, render_mode
        self.observation_space: spaces.Space = spaces.Discrete(n)
        self.action_space: spaces.Space = spaces.Discrete(n)
        self.symbol, self.t = 0, 0

    def _obs(self) -> Any:
        return self.symbol

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        self.symbol = int(self.np_random.integers(self.n))
        return self._obs(), {}

    def step(self, action: Any) -> Any:
        reward = float(int(action) == self.symbol)
        self.t += 1
        self.symbol = int(self.np_random.integers(self.n))
        return self._obs(), reward, False, self.t >= self.length, {}

    def render(self) -> np.ndarray:
        frame = np.zeros((32, 32 * self.n, 3), np.uint8)
        frame[:, 32 * self.symbol : 32 * (self.symbol + 1)] = 255
        return frame


class IdentityBox(Identity):
    def __init__(self, n: int = 4, length: int = 8, render_mode: str | None = None) -> None:
        super().__init__(n, length, render_mode)
        self.observation_space = spaces.Box(0.0, 1.0, (n,), np.float32)

    def _obs(self) -> Any:
        return np.eye(self.n, dtype=np.float32)[self.symbol]


class IdentityContinuous(gym.Env):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": [], "render_fps": 4}

    def __init__(self, dim: int = 1, length: int = 8, render_mode: str | None = None) -> None:
        self.dim, self.length = dim, length
        self.observation_space = spaces.Box(-1.0, 1.0, (dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (dim,), np.float32)
        self.x = np.zeros(dim, np.float32)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        self.x = self.np_random.uniform(-1, 1, self.dim).astype(np.float32)
        return self.x.copy(), {}

    def step(self, action: Any) -> Any:
        reward = -float(np.mean((np.asarray(action, np.float32) - self.x) ** 2))
        self.t += 1
        self.x = self.np_random.uniform(-1, 1, self.dim).astype(np.float32)
        return self.x.copy(), reward, False, self.t >= self.length, {}


class Bandit(gym.Env):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": [], "render_fps": 4}

    def __init__(self, n: int = 4, render_mode: str | None = None) -> None:
        self.n = n
        self.observation_space = spaces.Discrete(1)
        self.action_space = spaces.Discrete(n)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        return 0, {}

    def step(self, action: Any) -> Any:
        return 0, int(action) / (self.n - 1), True, False, {}


for _name, _cls in [
    ("Identity", Identity),
    ("IdentityBox", IdentityBox),
    ("IdentityContinuous", IdentityContinuous),
    ("Bandit", Bandit),
]:
    if f"torchlab/{_name}-v0" not in gym.registry:
        gym.register(f"torchlab/{_name}-v0", entry_point=_cls, disable_env_checker=True)


class KillAtStep:
    """An RL loop callback that SIGKILLs the process once ``step`` env steps are done.

    The first run to get there creates ``marker`` and dies as if the power went; a run
    started while ``marker`` exists trains on. Proves resumed runs end bit-identical.
    """

    def __init__(self, *, step: int, marker: str) -> None:
        from pathlib import Path

        self.step, self.marker = step, Path(marker)

    def on_iteration_end(self, loop: Any) -> None:
        import os
        import signal

        if loop.state.steps >= self.step and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
