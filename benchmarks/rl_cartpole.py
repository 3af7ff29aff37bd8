"""CartPole-v1: environment steps and wall seconds until the mean return reaches 475.

Protocol (issue 6), the same on both sides:

- Evaluate at every multiple of 5,000 environment steps (summed over the vector env's
  copies), as soon as the count reaches it -- in the middle of a PPO rollout too -- with
  the policy as of the last update: 10 deterministic episodes of a fresh CartPole-v1,
  episode ``i`` seeded ``seed + 1,000,000 + i``. SB3: a callback whose ``_on_step`` runs
  after every vector step, once ``num_timesteps`` has been increased and before the step
  is stored or trained on. torchlab: ``trainer.eval_every=5000`` (the loop's step hook does
  exactly the same, see ``torchlab/rl/loop.py``). With 8 copies (PPO) both sides count 8
  steps per vector step, and 5,000 is a multiple of 8.
- Stop at the first evaluation with mean return >= 475 and report its step count; at most
  ``--budget`` steps (also the schedules' horizon: ``total_timesteps`` /
  ``trainer.total_steps``). Seeds 0, 1, 2 by default.
- Wall seconds count training only, up to that evaluation (evaluation time is excluded on
  both sides, setup and imports too). One torch thread on both sides.
- torchlab: recipes ``cartpole-ppo`` and ``cartpole-dqn`` (their comments say where they
  depart from the RL Zoo), no checkpoints during the run (SB3 takes none either). SB3:
  DQN and PPO with the RL Zoo's hyper-parameters for CartPole-v1 (written out below), run
  in the benchmark's own environment (``benchmarks/.venv-sb3``, created by ``--setup``).

    .venv/bin/python benchmarks/rl_cartpole.py --setup          # once: the SB3 venv
    .venv/bin/python benchmarks/rl_cartpole.py                  # seeds 0 1 2, DQN and PPO
    .venv/bin/python benchmarks/rl_cartpole.py --seeds 0 --algos ppo
    .venv/bin/python benchmarks/rl_cartpole.py --sides torchlab --seeds 0 1 2 3 4 5 6 7 8 9
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SB3_VENV = HERE / ".venv-sb3"
SB3_PYTHON = SB3_VENV / "bin" / "python"

# Shared by the SB3 side (runs in its own interpreter; prints one JSON line).
SB3_COMMON = r'''
import json, sys, time
import numpy as np
import torch
import gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback

torch.set_num_threads(1)


def evaluate(model, env_id, episodes, seed):
    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


class Protocol(BaseCallback):
    """Evaluate every `every` env steps; stop at `target`; time training only."""

    def __init__(self, env_id, every, episodes, seed, target):
        super().__init__()
        self.env_id, self.every, self.episodes, self.seed, self.target = env_id, every, episodes, seed, target
        self.train_seconds, self.solved_step, self.evals, self.next_eval = 0.0, None, [], every

    def _on_training_start(self):
        self.started = time.perf_counter()

    def _on_step(self):
        if self.num_timesteps < self.next_eval:
            return True
        self.next_eval += self.every
        self.train_seconds += time.perf_counter() - self.started
        mean = evaluate(self.model, self.env_id, self.episodes, self.seed)
        self.evals.append((self.num_timesteps, mean))
        self.started = time.perf_counter()
        if self.target is not None and mean >= self.target:
            self.solved_step = self.num_timesteps
            return False
        return True
'''

SB3_CARTPOLE = (
    SB3_COMMON
    + r"""
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.env_util import make_vec_env

algo, seed, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if algo == "ppo":  # rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1
    lin = lambda v: (lambda progress: progress * v)
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                n_epochs=20, ent_coef=0.0, learning_rate=lin(1e-3), clip_range=lin(0.2), seed=seed)
else:  # rl-baselines3-zoo hyperparams/dqn.yml, CartPole-v1
    env = make_vec_env("CartPole-v1", n_envs=1, seed=seed)
    model = DQN("MlpPolicy", env, learning_rate=2.3e-3, batch_size=64, buffer_size=100000,
                learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
                gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04,
                policy_kwargs=dict(net_arch=[256, 256]), seed=seed)
protocol = Protocol("CartPole-v1", 5000, 10, seed + 1_000_000, 475.0)
model.learn(total_timesteps=budget, callback=protocol)
print(json.dumps({"solved_step": protocol.solved_step, "seconds": protocol.train_seconds,
                  "timed_steps": protocol.evals[-1][0] if protocol.evals else 0,
                  "evals": protocol.evals}))
"""
)


def setup() -> None:
    """Create benchmarks/.venv-sb3 with stable-baselines3 (torch from the local wheel)."""
    subprocess.run([sys.executable, "-m", "venv", str(SB3_VENV)], check=True)
    pip = [str(SB3_PYTHON), "-m", "pip", "install", "-q"]
    subprocess.run(
        [*pip, "torch==2.14.1", "stable-baselines3", "gymnasium[classic-control]"], check=True
    )


def start_sb3(script: str, *args: str) -> subprocess.Popen:
    if not SB3_PYTHON.exists():
        sys.exit(f"{SB3_PYTHON} is missing; create it with: {sys.executable} {__file__} --setup")
    return start([str(SB3_PYTHON), "-c", script, *args])


def start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result_of(process: subprocess.Popen, what: str) -> dict:
    """The JSON line a run printed last."""
    out, err = process.communicate()
    if process.returncode != 0:
        sys.exit(f"{what} run failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def run_sb3(script: str, *args: str) -> dict:
    return result_of(start_sb3(script, *args), "SB3")


def run_pair(algo: str, seed: int, budget: int) -> dict[str, dict]:
    """torchlab and SB3 at the same time, one process each, so both see the same load."""
    ours = start([sys.executable, __file__, "--worker", algo, str(seed), str(budget)])
    theirs = start_sb3(SB3_CARTPOLE, algo, str(seed), str(budget))
    return {"sb3": result_of(theirs, "SB3"), "torchlab": result_of(ours, "torchlab")}


def run_torchlab(algo: str, seed: int, budget: int) -> dict:
    import torchlab

    overrides = {
        "seed": seed,
        "trainer.total_steps": budget,
        "trainer.eval_every": 5000,
        "trainer.eval_episodes": 10,
        "trainer.target_return": 475.0,
        "trainer.checkpoint_every": budget,  # SB3 takes no checkpoints either
        "trainer.record_gif": False,
        "trainer.progress": "none",
    }
    with tempfile.TemporaryDirectory() as tmp:
        run = torchlab.train(f"cartpole-{algo}", overrides=overrides, output_dir=tmp)
        summary = run.summary
        evals = [(r["step"], r["eval/return"]) for r in run.history if "eval/return" in r]
    return {
        "solved_step": summary["solved_step"],
        "seconds": summary["solved_seconds"] or summary["train_seconds"],
        "timed_steps": summary["solved_step"] or summary["steps"],  # what "seconds" covers
        "evals": evals,
    }


SIDES = ["torchlab", "sb3"]


def cores_busy() -> float:
    return os.getloadavg()[0]


def medians(rows: list[dict], algo: str, side: str) -> tuple[float, float, float]:
    """Median steps to 475 (inf when unsolved), median train seconds, ms per step."""
    mine = [r for r in rows if r["algo"] == algo and r["side"] == side]
    steps = [r["solved_step"] if r["solved_step"] is not None else float("inf") for r in mine]
    secs = [r["seconds"] for r in mine]
    per_step = [1000 * r["seconds"] / r["timed_steps"] for r in mine if r["timed_steps"]]
    return (
        statistics.median(steps),
        statistics.median(secs),
        statistics.median(per_step) if per_step else float("nan"),
    )


def table(rows: list[dict], algos: list[str], sides: list[str]) -> None:
    print(
        "\n| algo | side | steps to 475 (per seed) | median steps | train s (per seed) "
        "| median s | median ms/step |"
    )
    print("| --- | --- | --- | ---: | --- | ---: | ---: |")
    for algo in algos:
        for side in sides:
            mine = [r for r in rows if r["algo"] == algo and r["side"] == side]
            steps = ", ".join(str(r["solved_step"]) for r in mine)
            secs = ", ".join(f"{r['seconds']:.1f}" for r in mine)
            median_steps, median_s, ms = medians(rows, algo, side)
            print(
                f"| {algo} | {side} | {steps} | {median_steps} | {secs} | {median_s:.1f} "
                f"| {ms:.2f} |"
            )


def verdict(rows: list[dict], algo: str) -> None:
    """Issue 6's targets: no more steps (median) and less wall time than SB3."""
    mine, theirs = medians(rows, algo, "torchlab"), medians(rows, algo, "sb3")
    steps_met = mine[0] <= theirs[0] and mine[0] != float("inf")
    wall_met = mine[1] < theirs[1]
    print(
        f"{algo.upper()} steps: torchlab {mine[0]} vs SB3 {theirs[0]} (median) -> "
        f"{'MET' if steps_met else 'NOT MET'};  wall: torchlab {mine[1]:.1f} s vs SB3 "
        f"{theirs[1]:.1f} s (median) -> {'MET' if wall_met else 'NOT MET'};  per step: "
        f"{mine[2]:.2f} vs {theirs[2]:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="create benchmarks/.venv-sb3 and exit")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=["ppo", "dqn"])
    parser.add_argument("--sides", nargs="+", default=SIDES, choices=SIDES)
    parser.add_argument("--budget", type=int, default=100_000, help="most env steps per run")
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="run the two sides of each seed at the same time (fairer wall times on a busy "
        "machine; on an idle one each side gets a core)",
    )
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)  # ALGO SEED BUDGET
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    if args.worker:  # one torchlab run in its own process (--parallel)
        algo, seed, budget = args.worker
        print(json.dumps(run_torchlab(algo, int(seed), int(budget))))
        return
    rows = []
    for algo in args.algos:
        for seed in args.seeds:
            both = args.parallel and len(args.sides) == 2
            pair = run_pair(algo, seed, args.budget) if both else {}
            for side in args.sides:
                load = cores_busy()
                if side in pair:
                    result = pair[side]
                elif side == "torchlab":
                    result = run_torchlab(algo, seed, args.budget)
                else:
                    result = run_sb3(SB3_CARTPOLE, algo, str(seed), str(args.budget))
                row = {
                    "algo": algo,
                    "seed": seed,
                    "side": side,
                    "load_before": round(load, 2),
                    **result,
                }
                rows.append(row)
                solved = (
                    row["solved_step"]
                    if row["solved_step"] is not None
                    else f"not by {args.budget}"
                )
                print(
                    f"{algo:4} seed {seed} {side:8} solved at {solved} steps, "
                    f"{row['seconds']:.1f} s train (load {load:.1f})",
                    flush=True,
                )
    table(rows, args.algos, args.sides)
    if len(args.sides) == 2:
        for algo in args.algos:
            verdict(rows, algo)
    print("\nJSON:", json.dumps(rows))


if __name__ == "__main__":
    main()
