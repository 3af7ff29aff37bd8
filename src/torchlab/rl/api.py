"""``train`` and ``evaluate`` for RL configs: the ``rl`` run kind (:mod:`torchlab.rl.kind`) hands them over here.

A run directory of an RL run::

  config.yaml  run.json  environment.json
  metrics.jsonl       one line per log_every steps (train/return, losses) and per evaluation
  tensorboard/        the same as event files, plus time/fps
  checkpoints/        resumable checkpoints (weights, optimizers, replay buffer, RNG, ...)
  model.safetensors   every network at the best periodic evaluation
  evaluation.gif      one deterministic episode of the best weights (if the env renders)
  learning_curve.png  evaluation and training return against environment steps
  summary.json        evaluation of the best weights on fresh seeds, beside a random policy
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchlab.errors import ConfigError, RunError
from torchlab.kinds import TrainRequest
from torchlab.rl.config import RLConfig
from torchlab.tracking import TRACKING_KEYS

FINAL_SEED = 2_000_000  # final evaluation and `torchlab evaluate` use seed + FINAL_SEED + i
OBS_STATS = "obs_normalization.json"  # statistics that go with model.safetensors
# Keys a resume may change: the budget, and settings that only change outputs or speed.
RESUMABLE = {
    "trainer.total_steps", "trainer.progress", "trainer.device", "trainer.threads",
    "trainer.record_gif", "trainer.log_every", "trainer.keep_checkpoints",
    *TRACKING_KEYS,
}  # fmt: skip


def restores_threads(verb: Callable[..., Any]) -> Callable[..., Any]:
    """Give torch's thread count back after a verb (``trainer.threads`` sets it for the run)."""

    @functools.wraps(verb)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        threads = torch.get_num_threads()
        try:
            return verb(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


def build(config: RLConfig) -> tuple[Any, Any]:
    """Seed everything, then the vector env and the agent, in a fixed order."""
    import torch

    from torchlab.registry import AGENTS
    from torchlab.rl.common.agent import EnvSpec
    from torchlab.rl.common.env import make_vec_env
    from torchlab.training.precision import resolve_device
    from torchlab.training.state import seed_everything

    if config.trainer.threads is not None:
        torch.set_num_threads(config.trainer.threads)
    seed_everything(config.seed)
    device = resolve_device(config.trainer.device)
    env = make_vec_env(config.env)
    spec = EnvSpec(
        env.single_observation_space,
        env.single_action_space,
        config.env.num_envs,
        config.trainer.total_steps,
        config.seed,
        device,
    )
    env.single_action_space.seed(config.seed)
    agent = AGENTS.build(config.agent, "agent", spec)
    return env, agent


@restores_threads
def train(request: TrainRequest) -> Any:
    """Train an RL recipe (or resume an RL run) and return its completed run."""
    from torchlab.config import load_config
    from torchlab.files import write_json, write_text
    from torchlab.run import Run, create_run, environment
    from torchlab.training.checkpoint import latest_checkpoint, load_checkpoint

    recipe, overrides, resume = request.recipe, request.overrides, request.resume
    if resume is not None:
        run = Run(resume, trust_code=request.trust_code)
        run.hold()  # before anything of it changes: one process trains a run at a time
        config = resumed_config(run, recipe, overrides)
    else:
        config = load_config(recipe, overrides)
        run = None
    env, agent = build(config)
    if run is None:
        facts = {**environment(agent.device, config.seed), "env": config.env.id}
        run = create_run(
            config,
            request.output_dir,
            lambda folder: write_json(folder / "environment.json", facts),
        )
    write_text(run.dir / "config.yaml", config.to_yaml())
    run.__dict__.pop("config", None)
    from torchlab.rl.loop import Loop
    from torchlab.tracking.session import tracked

    loop = Loop(config, agent, env, run.dir, list(request.callbacks))
    try:
        with (
            tracked(run.dir, config, main=True) as tracking,  # MLflow, when asked
            run.recording_failure(new=resume is None, main=True),
        ):
            loop.callbacks += tracking
            latest = latest_checkpoint(run.dir / "checkpoints") if resume is not None else None
            if latest is not None:
                checkpoint = load_checkpoint(latest)
                agent.load_weights(checkpoint.weights)
                loop.load_state_dict(checkpoint.state)
            if resume is not None:
                run.set_status("running", resumed_from=str(latest) if latest else None)
                if latest is None:  # killed before the first checkpoint: start over cleanly
                    (run.dir / "metrics.jsonl").unlink(missing_ok=True)
            loop.fit()
            finish(run, config, loop)
    finally:
        run.release()
        env.close()
    return run


def finish(run: Any, config: RLConfig, loop: Any) -> None:
    """Evaluate the best weights on fresh seeds, record a GIF, plot, write the summary."""
    from torchlab.files import write_json
    from torchlab.rl.common.evaluation import evaluate_policy, record_gif
    from torchlab.training.checkpoint import load_weights

    loop.agent.load_weights(load_weights(run.dir / "model.safetensors"))
    seed = config.seed + FINAL_SEED
    normalize = best_normalizer(run.dir, loop.env)
    result = evaluate_policy(
        loop.agent.act, config.env, config.trainer.eval_episodes, seed, normalize
    )
    gif = None
    if config.trainer.record_gif:
        gif = record_gif(loop.agent.act, config.env, run.dir / "evaluation.gif", seed, normalize)
    learning_curve(run.history, run.dir / "learning_curve.png")
    state = loop.state
    summary = {
        "recipe": config.name,
        "kind": "rl",
        "env": config.env.id,
        "agent": config.agent.name,
        "eval": {
            "return_mean": result.mean,
            "return_std": result.std,
            "episodes": len(result.returns),
        },
        "baseline": {"name": "random policy", **random_policy(config, seed)},
        "steps": state.steps,
        "episodes": state.episodes,
        "best_step": state.best_step,
        "best_eval_return": state.best_return,
        "solved_step": state.solved_step,
        "solved_seconds": state.solved_seconds,
        "train_seconds": round(state.seconds, 3),
        "gif": gif.name if gif else None,
        "parameters": sum(p.numel() for p in loop.agent.policy().parameters()),
    }
    write_json(run.dir / "summary.json", summary)
    run.set_status("completed")
    from torchlab.rl.report import write_run_report

    write_run_report(run)  # report.html and MODEL_CARD.md


def random_policy(config: RLConfig, seed: int) -> dict[str, float]:
    """Mean and std of return of uniformly random actions: the classical baseline."""
    import numpy as np

    from torchlab.rl.common.env import make_env
    from torchlab.rl.common.evaluation import evaluate_policy

    space = make_env(config.env).action_space
    space.seed(seed)
    result = evaluate_policy(
        lambda obs: np.asarray([space.sample()]), config.env, config.trainer.eval_episodes, seed
    )
    return {"return_mean": result.mean, "return_std": result.std}


def learning_curve(history: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("train/return", "eval/return"):
        points = [(r["step"], r[key]) for r in history if key in r]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", markersize=2, label=key)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def resumed_config(run: Any, recipe: Any, overrides: Any) -> RLConfig:
    """The saved config; only the step budget, progress and device may change."""
    from torchlab.config import config_for_resume, load_config

    saved = run.config
    if recipe is not None and not isinstance(load_config(recipe, overrides), RLConfig):
        raise ConfigError(f"Run '{run.dir}' is an RL run; resume it with an RL config.")
    wanted = config_for_resume(saved, recipe, overrides, RESUMABLE, run.dir)
    if run.status == "completed" and wanted.trainer.total_steps <= saved.trainer.total_steps:
        raise RunError(
            f"Run '{run.dir}' already completed {saved.trainer.total_steps} steps; "
            "raise trainer.total_steps to train it further."
        )
    return wanted


@restores_threads
def evaluate(run: Any, episodes: int | None = None) -> dict[str, Any]:
    """Mean and std of return of a run's best weights over ``episodes`` deterministic episodes."""
    from torchlab.rl.common.evaluation import evaluate_policy
    from torchlab.training.checkpoint import load_weights

    config: RLConfig = run.config
    episodes = episodes or config.trainer.eval_episodes
    if episodes <= 0:
        raise ConfigError(f"--episodes must be a positive integer; received {episodes}.")
    env, agent = build(config)
    try:
        agent.load_weights(load_weights(run.dir / "model.safetensors"))
        normalize = best_normalizer(run.dir, env)
        result = evaluate_policy(
            agent.act, config.env, episodes, config.seed + FINAL_SEED, normalize
        )
    finally:
        env.close()
    return {
        "eval/return_mean": result.mean,
        "eval/return_std": result.std,
        "eval/episodes": len(result.returns),
        "eval/length_mean": float(sum(result.lengths) / len(result.lengths)),
    }


def best_normalizer(run_dir: Path, env: Any) -> Any:
    """The observation normalisation in force when the best weights were saved, if any."""
    from torchlab.rl.common.env import NormalizeObservation, find
    from torchlab.run import read_json

    norm = find(env, NormalizeObservation)
    if norm is None:
        return None
    path = run_dir / OBS_STATS
    if path.is_file():
        norm.load_state_dict(read_json(path))
    return norm.normalize


@dataclass(frozen=True)
class LoadedPolicy:
    """A run's deterministic policy, ready to export.

    Attributes:
        module: Observations ``(B, *obs_shape)`` -> actions (class indices for Discrete
            actions, values within the bounds for Box actions); best weights, eval mode, CPU.
        example: One real observation from the environment, shaped ``(1, *obs_shape)``.
        observation_space, action_space: The environment's spaces (one copy).
        normalization: The observation statistics the policy expects (``obs_normalization.json``),
            or None when observations go in raw.
    """

    module: Any
    example: Any
    observation_space: Any
    action_space: Any
    normalization: dict[str, Any] | None


@restores_threads
def load_policy(run: Any) -> LoadedPolicy:
    """The run's deterministic policy: what ``torchlab export`` traces for an RL run."""
    import torch

    from torchlab.run import read_json
    from torchlab.training.checkpoint import load_weights

    config: RLConfig = run.config
    env, agent = build(
        config.model_copy(update={"trainer": config.trainer.model_copy(update={"device": "cpu"})})
    )
    try:
        agent.load_weights(load_weights(run.dir / "model.safetensors"))
        obs, _ = env.reset(seed=config.seed)
        spaces = env.single_observation_space, env.single_action_space
    finally:
        env.close()
    stats = run.dir / OBS_STATS
    return LoadedPolicy(
        agent.policy().eval(),
        torch.as_tensor(obs[:1]),
        *spaces,
        read_json(stats) if stats.is_file() else None,
    )
