"""Vectorised environments with episode statistics and optional normalisation.

Every run steps ``num_envs`` copies of one gymnasium environment in a
:class:`gymnasium.vector.SyncVectorEnv` with *same-step* autoreset: when a copy's episode
ends, ``step`` returns the first observation of the next episode and the last one of the
finished episode in ``info["final_obs"]``. Agents read that through :func:`next_obs`.

Wrappers, innermost first: :class:`EpisodeStats` (raw returns and lengths), then optional
:class:`NormalizeObservation` and :class:`NormalizeReward`, whose running statistics are
part of the checkpoint (``state_dict``). The loop adds :class:`StepHook` outermost.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorWrapper
from gymnasium.wrappers import TimeLimit

from torchlab.errors import ConfigError
from torchlab.rl.config import EnvConfig
from torchlab.trust import CODE_NAME, import_module


def make_env(config: EnvConfig, *, render_mode: str | None = None) -> gym.Env:
    """One gymnasium environment, with a clear error for an unknown id or bad keyword.

    ``module:Id`` (an id the module registers) and ``module:Class`` (a ``gymnasium.Env``
    subclass) come from the user's own code, imported under :mod:`torchlab.trust`'s rules.
    An environment without an episode limit gets ``config.max_episode_steps``, so a policy
    that never reaches the goal cannot hang training or evaluation.
    """
    import torchlab.rl.testing  # noqa: F401  (registers the torchlab/ test environments)

    env_id, kwargs = config.id, config.kwargs
    target: str | EnvSpec = env_id
    if code := CODE_NAME.match(env_id):
        found = getattr(import_module(code[1], "env.id"), code[2], None)
        is_env = isinstance(found, type) and issubclass(found, gym.Env)
        target = EnvSpec(id=code[2], entry_point=found) if is_env else code[2]
    rendering = {} if render_mode is None else {"render_mode": render_mode}
    try:
        env = gym.make(target, **rendering, **kwargs)
    except gym.error.Error as exc:
        raise ConfigError(
            f"Cannot make environment '{env_id}' (at 'env.id'): {exc}. Use a registered "
            "gymnasium id such as CartPole-v1, Pendulum-v1, FrozenLake-v1 or torchlab/Identity-v0, "
            "or your own as module:Class or module:Id."
        ) from None
    except TypeError as exc:
        if "render_mode" in str(exc):
            raise ConfigError(
                f"Environment '{env_id}' cannot render ({exc}); set trainer.record_gif=false, "
                "or accept render_mode='rgb_array' in its constructor."
            ) from None
        given = ", ".join(kwargs) or "none given"
        raise ConfigError(
            f"Environment '{env_id}' rejects its keyword arguments (at 'env.kwargs': {given}): {exc}."
        ) from None
    if config.max_episode_steps is not None or episode_limit(env) is None:
        env = TimeLimit(env, config.max_episode_steps or DEFAULT_EPISODE_LIMIT)
    return env


# Steps after which an episode of an environment that sets no limit of its own is cut.
DEFAULT_EPISODE_LIMIT = 1000


def episode_limit(env: gym.Env) -> int | None:
    """The step limit the environment's spec or a TimeLimit wrapper sets, if any."""
    limit = getattr(env.spec, "max_episode_steps", None)
    while limit is None and isinstance(env, gym.Wrapper):
        limit = env._max_episode_steps if isinstance(env, TimeLimit) else None
        env = env.env
    return limit


def make_vec_env(config: EnvConfig) -> VectorEnv:
    """The wrapped vector env of an :class:`~torchlab.rl.config.EnvConfig`."""
    make_env(config).close()  # fail early, with the clear message
    inner = SyncVectorEnv(
        [lambda: make_env(config) for _ in range(config.num_envs)],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    env: Any = EpisodeStats(inner)
    if config.normalize_obs:
        env = NormalizeObservation(env)
    if config.normalize_reward:
        env = NormalizeReward(env, gamma=0.99)
    return env


VectorEnv = SyncVectorEnv | VectorWrapper


def next_obs(obs: np.ndarray, info: dict[str, Any], done: np.ndarray) -> np.ndarray:
    """The observation each copy actually reached: the final one where an episode ended."""
    if not done.any():
        return obs
    out = obs.copy()
    for i in np.flatnonzero(info["_final_obs"]):
        out[i] = info["final_obs"][i]
    return out


def find(env: Any, kind: type) -> Any:
    """The wrapper of type ``kind`` in ``env``'s chain, or None."""
    while isinstance(env, VectorWrapper):
        if isinstance(env, kind):
            return env
        env = env.env
    return None


class EpisodeStats(VectorWrapper):
    """Undiscounted return and length of every finished episode, before any normalisation."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.returns = np.zeros(self.num_envs)
        self.lengths = np.zeros(self.num_envs, dtype=np.int64)
        self.finished: list[tuple[float, int]] = []

    def reset(self, **kwargs: Any) -> Any:
        self.returns[:] = 0
        self.lengths[:] = 0
        return self.env.reset(**kwargs)

    def step(self, actions: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.returns += reward
        self.lengths += 1
        for i in np.flatnonzero(terminated | truncated):
            self.finished.append((float(self.returns[i]), int(self.lengths[i])))
            self.returns[i] = 0
            self.lengths[i] = 0
        return obs, reward, terminated, truncated, info

    def drain(self) -> list[tuple[float, int]]:
        """Episodes finished since the last call, as ``(return, length)``."""
        out, self.finished = self.finished, []
        return out


class StepHook(VectorWrapper):
    """Calls ``hook(n)`` after every vector step of ``n`` copies, before the agent sees it.

    The loop wraps the env in it to act at exact step counts *inside* an agent's iteration
    (a PPO rollout, a DQN step before its update): evaluation at every multiple of
    ``trainer.eval_every`` sees the policy as of the last update, as Stable-Baselines3's
    callbacks do.
    """

    def __init__(self, env: Any, hook: Any) -> None:
        super().__init__(env)
        self.hook = hook

    def step(self, actions: Any) -> Any:
        out = self.env.step(actions)
        self.hook(self.num_envs)
        return out


class RunningMeanStd:
    """Mean and variance of a stream, merged batch by batch.

    Parallel algorithm of Chan et al.:
    https://en.wikipedia.org/wiki/Algorithms_for_calculating_variance#Parallel_algorithm
    """

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, batch: np.ndarray) -> None:
        mean, var, n = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        delta, total = mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.var, self.count = m2 / total, total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = np.asarray(state["mean"], np.float64)
        self.var = np.asarray(state["var"], np.float64)
        self.count = float(state["count"])


class NormalizeObservation(VectorWrapper):
    """Standardise observations by running mean and std, clipped to +-``clip``."""

    def __init__(self, env: Any, clip: float = 10.0, epsilon: float = 1e-8) -> None:
        super().__init__(env)
        self.rms = RunningMeanStd(self.single_observation_space.shape)
        self.clip, self.epsilon = clip, epsilon

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        scaled = (obs - self.rms.mean) / np.sqrt(self.rms.var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def reset(self, **kwargs: Any) -> Any:
        obs, info = self.env.reset(**kwargs)
        self.rms.update(obs)
        return self.normalize(obs), info

    def step(self, actions: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.rms.update(obs)
        if "final_obs" in info:
            info = dict(info)
            info["final_obs"] = np.array(
                [None if o is None else self.normalize(o) for o in info["final_obs"]],
                dtype=object,
            )
        return self.normalize(obs), reward, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state)


class NormalizeReward(VectorWrapper):
    """Divide rewards by the running std of the discounted return (as in SB3's VecNormalize)."""

    def __init__(self, env: Any, gamma: float = 0.99, clip: float = 10.0) -> None:
        super().__init__(env)
        self.rms = RunningMeanStd()
        self.returns = np.zeros(self.num_envs)
        self.gamma, self.clip = gamma, clip

    def reset(self, **kwargs: Any) -> Any:
        self.returns[:] = 0
        return self.env.reset(**kwargs)

    def step(self, actions: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.returns = self.returns * self.gamma + reward
        self.rms.update(self.returns)
        self.returns[terminated | truncated] = 0
        scaled = np.clip(reward / np.sqrt(self.rms.var + 1e-8), -self.clip, self.clip)
        return obs, scaled, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        return {**self.rms.state_dict(), "returns": self.returns.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state)
        self.returns = np.asarray(state["returns"], np.float64)


def wrapper_state(env: Any) -> dict[str, Any]:
    """Running statistics of the normalisation wrappers, by wrapper name."""
    out = {}
    for kind in (NormalizeObservation, NormalizeReward):
        found = find(env, kind)
        if found is not None:
            out[kind.__name__] = found.state_dict()
    return out


def load_wrapper_state(env: Any, state: dict[str, Any]) -> None:
    for kind in (NormalizeObservation, NormalizeReward):
        found = find(env, kind)
        if found is not None and kind.__name__ in state:
            found.load_state_dict(state[kind.__name__])
