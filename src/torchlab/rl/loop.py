"""The environment loop: iterate the agent, evaluate, log and checkpoint, until the budget.

Reads top to bottom::

    obs = env.reset(seed)
    while steps < total_steps:
        obs, n, logs = agent.learn(env, obs, progress)     # one rollout or one env step
        steps += n
        log every trainer.log_every steps       (metrics.jsonl + TensorBoard)
        checkpoint every trainer.checkpoint_every steps, then restart the copies with
            seeded resets (seed + steps)
    evaluate at every multiple of trainer.eval_every (deterministic policy; best weights
        kept) -- from inside the iteration, see below -- and once more at the end

Evaluation happens at exact step counts: the vector env is wrapped in a
:class:`~torchlab.rl.common.env.StepHook` that reports every vector step to the loop, which
evaluates as soon as the count reaches a multiple of ``eval_every`` -- in the middle of a
PPO rollout, or after a DQN step but before its update -- with the policy as of the last
update (the protocol of Stable-Baselines3's ``EvalCallback``). Evaluation runs its own
seeded environment and draws from no training RNG, so it leaves training unchanged;
its wall time is left out of ``seconds``. Logging and checkpoints stay at iteration ends.

Exact resume: gymnasium environments cannot in general save their state, so a checkpoint
is always followed by seeded resets of every copy -- in an uninterrupted run too. A run
resumed from that checkpoint therefore continues from the very same state (weights,
optimizers, replay buffer, normalisation statistics, every RNG) and ends bit-identical.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from torchlab.rl.common.agent import Agent
from torchlab.rl.common.env import (
    EpisodeStats,
    NormalizeObservation,
    StepHook,
    find,
    load_wrapper_state,
    wrapper_state,
)
from torchlab.rl.common.evaluation import EvalResult, evaluate_policy

EVAL_SEED = 1_000_000  # periodic evaluations use seeds seed + EVAL_SEED + i


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in ``(before, after]``."""
    return after // every > before // every


@dataclass
class LoopState:
    """Counters and best evaluation so far; saved in every checkpoint."""

    steps: int = 0
    iterations: int = 0
    episodes: int = 0
    best_return: float = float("-inf")
    best_step: int = -1
    solved_step: int | None = None
    solved_seconds: float | None = None
    seconds: float = 0.0  # training wall time, evaluation excluded
    recent: list[float] = field(default_factory=list)  # returns since the last log line


class Loop:
    """Owns the vector env, the agent's schedule of evaluation, logging and checkpoints."""

    def __init__(
        self, config: Any, agent: Agent, env: Any, run_dir: Any, callbacks: list[Any] = ()
    ) -> None:
        self.config, self.agent, self.dir = config, agent, run_dir
        self.env = StepHook(env, self.on_env_steps)
        self.trainer = config.trainer
        self.state = LoopState()
        self.callbacks = list(callbacks)
        self.writer: Any = None
        self.stop = False  # set by a callback (or a reached target) to end training early
        self.clock = 0  # environment steps so far, counted inside an iteration too
        self.started = 0.0  # perf_counter at the start of the current iteration
        self.paused = 0.0  # seconds spent evaluating inside the current iteration
        self.evaluated_step = -1

    # --- the loop ---------------------------------------------------------------------

    def fit(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from torchlab.training.loggers import MetricsLogger

        state, trainer = self.state, self.trainer
        self.metrics = MetricsLogger(self.dir / "metrics.jsonl")
        self.writer = SummaryWriter(str(self.dir / "tensorboard"), purge_step=state.steps or None)
        obs = self.reset_envs()
        try:
            while state.steps < trainer.total_steps and not self.stop:
                self.started, self.paused, self.clock = time.perf_counter(), 0.0, state.steps
                before = state.steps
                obs, steps, logs = self.agent.learn(
                    self.env, obs, state.steps / trainer.total_steps
                )
                state.steps += steps
                state.iterations += 1
                finished = find(self.env, EpisodeStats).drain()
                state.episodes += len(finished)
                state.recent += [r for r, _ in finished]
                state.seconds += self.iteration_seconds()
                if crossed(before, state.steps, trainer.log_every):
                    self.log(logs, steps / max(self.iteration_seconds(), 1e-9))
                if state.steps >= trainer.total_steps and self.evaluated_step != state.steps:
                    self.periodic_eval(state.steps, state.seconds)  # the final policy
                for callback in self.callbacks:
                    callback.on_iteration_end(self)
                if (
                    crossed(before, state.steps, trainer.checkpoint_every)
                    and state.steps < trainer.total_steps
                ):
                    self.checkpoint()
                    obs = self.reset_envs()
        finally:
            self.writer.close()

    def iteration_seconds(self) -> float:
        """Wall time of the current iteration so far, evaluation excluded."""
        return time.perf_counter() - self.started - self.paused

    def on_env_steps(self, n: int) -> None:
        """After every vector step of ``n`` copies: evaluate at each multiple of eval_every."""
        before, self.clock = self.clock, self.clock + n
        if crossed(before, self.clock, self.trainer.eval_every):
            seconds = self.state.seconds + self.iteration_seconds()
            started = time.perf_counter()
            self.periodic_eval(self.clock, seconds)
            self.paused += time.perf_counter() - started

    def reset_envs(self) -> np.ndarray:
        """Seeded resets of every copy: at the start and after each checkpoint."""
        obs, _ = self.env.reset(seed=self.config.seed + self.state.steps)
        find(self.env, EpisodeStats).drain()
        self.agent.on_env_reset()
        return obs

    # --- logging and evaluation -------------------------------------------------------

    def write(self, record: dict[str, Any]) -> None:
        """Append one line to ``metrics.jsonl`` (its length is part of each checkpoint)."""
        with (self.dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")

    def log(self, logs: dict[str, float], fps: float) -> None:
        state = self.state
        record: dict[str, Any] = {"step": state.steps, "train/episodes": state.episodes}
        if state.recent:
            record["train/return"] = float(np.mean(state.recent))
            state.recent = []
        record.update({f"train/{k}": float(v) for k, v in logs.items()})
        self.write(record)
        for key, value in record.items():
            if key != "step":
                self.writer.add_scalar(key, value, state.steps)
        self.writer.add_scalar(
            "time/fps", fps, state.steps
        )  # not in metrics.jsonl: not reproducible

    def normalizer(self) -> Any:
        norm = find(self.env, NormalizeObservation)
        return norm.normalize if norm is not None else None

    def evaluate(self, episodes: int, seed: int) -> EvalResult:
        return evaluate_policy(self.agent.act, self.config.env, episodes, seed, self.normalizer())

    def periodic_eval(self, step: int, seconds: float) -> None:
        """Evaluate the current policy at ``step``, after ``seconds`` of training."""
        from torchlab.files import write_json
        from torchlab.training.checkpoint import save_weights

        state, trainer = self.state, self.trainer
        self.evaluated_step = step
        result = self.evaluate(trainer.eval_episodes, self.config.seed + EVAL_SEED)
        record = {"step": step, "eval/return": result.mean, "eval/return_std": result.std}
        self.write(record)
        self.writer.add_scalar("eval/return", result.mean, step)
        self.writer.flush()
        if result.mean > state.best_return:
            state.best_return, state.best_step = result.mean, step
            save_weights(self.dir / "model.safetensors", self.agent.weights())
            norm = find(self.env, NormalizeObservation)
            if norm is not None:
                write_json(self.dir / "obs_normalization.json", norm.state_dict())
        target = trainer.target_return
        if target is not None and state.solved_step is None and result.mean >= target:
            state.solved_step, state.solved_seconds = step, seconds
            self.stop = True  # ends training at the end of the current iteration
        if trainer.progress != "none":
            # Agents learn in whole rollouts, so the last may end past total_steps.
            where = (
                f"step {step}/{trainer.total_steps}"
                if step <= trainer.total_steps
                else f"step {step} (total_steps {trainer.total_steps}, ending a whole rollout)"
            )
            print(
                f"{where}  eval return {result.mean:.2f} "
                f"+- {result.std:.2f}  episodes {state.episodes}  ({seconds:.1f} s)",
                flush=True,
            )

    # --- checkpoints ------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        from torchlab.training.state import rng_state

        return {
            "loop": {k: v for k, v in asdict(self.state).items() if k != "recent"},
            "recent": torch.tensor(self.state.recent, dtype=torch.float64),
            "agent": self.agent.state_dict(),
            "rng": rng_state(),
            "wrappers": wrapper_state(self.env),
            "metrics": self.metrics.state_dict(),
            "stop": self.stop,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from torchlab.training.loggers import MetricsLogger
        from torchlab.training.state import set_rng_state

        self.state = LoopState(**state["loop"], recent=state["recent"].tolist())
        self.agent.load_state_dict(state["agent"])
        set_rng_state(state["rng"])
        load_wrapper_state(self.env, state["wrappers"])
        MetricsLogger(self.dir / "metrics.jsonl").load_state_dict(state["metrics"])
        self.stop = bool(state["stop"])

    def checkpoint(self) -> None:
        from torchlab.training.checkpoint import prune, save_checkpoint

        folder = self.dir / "checkpoints"
        save_checkpoint(
            folder, f"step-{self.state.steps:09d}", self.agent.weights(), self.state_dict()
        )
        prune(folder, self.trainer.keep_checkpoints)
