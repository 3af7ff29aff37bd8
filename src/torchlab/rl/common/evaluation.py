"""Evaluation episodes with the deterministic policy, and a GIF of one of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from torchlab.notices import notice
from torchlab.rl.common.env import make_env


class EvalResult(NamedTuple):
    mean: float
    std: float
    returns: list[float]
    lengths: list[int]


def evaluate_policy(
    act: Callable[[np.ndarray], np.ndarray],
    env_config: Any,
    episodes: int,
    seed: int,
    normalize: Callable[[np.ndarray], np.ndarray] | None = None,
) -> EvalResult:
    """Run ``episodes`` full episodes; episode ``i`` is reset with seed ``seed + i``.

    Args:
        act: Batched deterministic policy, ``(1, *obs_shape) -> (1, *action_shape)``.
        normalize: The training run's observation normalisation (frozen), if any.
    """
    env = make_env(env_config)
    returns, lengths = [], []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            total, length, done = 0.0, 0, False
            while not done:
                batch = np.asarray(obs)[None]
                action = act(normalize(batch) if normalize else batch)[0]
                obs, reward, terminated, truncated, _ = env.step(_env_action(action, env))
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
    finally:
        env.close()
    return EvalResult(float(np.mean(returns)), float(np.std(returns)), returns, lengths)


def _env_action(action: np.ndarray, env: Any) -> Any:
    import gymnasium as gym

    if isinstance(env.action_space, gym.spaces.Discrete):
        return int(np.asarray(action).reshape(-1)[0])
    return np.clip(action, env.action_space.low, env.action_space.high)


def record_gif(
    act: Callable[[np.ndarray], np.ndarray],
    env_config: Any,
    path: Path,
    seed: int,
    normalize: Callable[[np.ndarray], np.ndarray] | None = None,
    max_frames: int = 500,
    fps: int = 30,
) -> Path | None:
    """One deterministic episode rendered to an animated GIF; None if the env cannot render."""
    import os

    from PIL import Image

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen, no display
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    try:
        env = make_env(env_config, render_mode="rgb_array")
    except (
        Exception
    ) as exc:  # an env without rgb_array rendering: no GIF, training result unaffected
        skipped_gif(env_config.id, exc)
        return None
    frames: list[Any] = []
    try:
        obs, _ = env.reset(seed=seed)
        done = False
        while not done and len(frames) < max_frames:
            frame = env.render()
            if frame is None:
                return None
            frames.append(Image.fromarray(np.asarray(frame)))
            batch = np.asarray(obs)[None]
            action = act(normalize(batch) if normalize else batch)[0]
            obs, _, terminated, truncated, _ = env.step(_env_action(action, env))
            done = terminated or truncated
    except Exception as exc:  # the GIF is optional: an env that cannot render costs only it
        skipped_gif(env_config.id, exc)
        return None
    finally:
        env.close()
    if not frames:
        return None
    frames = [f.convert("P", palette=Image.Palette.ADAPTIVE) for f in frames]
    frames[0].save(
        path, save_all=True, append_images=frames[1:], duration=1000 // fps, loop=0, optimize=True
    )
    return path


def skipped_gif(env_id: str, exc: Exception) -> None:
    notice(
        f"No evaluation.gif: environment '{env_id}' cannot render an episode "
        f"({type(exc).__name__}: {exc}); the run is unaffected. Set trainer.record_gif=false to "
        "skip it.",
    )
