"""CartPole-v1: environment steps and wall seconds until the mean return reaches 475.

Protocol (issue 6): evaluate every 5,000 environment steps over 10 deterministic episodes;
stop at the first evaluation with mean return >= 475; seeds 0, 1, 2; at most
``--budget`` steps. Wall seconds count training only (evaluation time is excluded on both
sides). torchlab DQN and PPO (recipes ``cartpole-dqn`` and ``cartpole-ppo``, the RL Zoo's
tuned hyper-parameters) run beside Stable-Baselines3 DQN and PPO with the RL Zoo's
hyper-parameters, run in the benchmark's own environment (``benchmarks/.venv-sb3``,
created by ``--setup``). Both sides use one torch thread (torchlab's RL default).

    .venv/bin/python benchmarks/rl_cartpole.py --setup          # once: the SB3 venv
    .venv/bin/python benchmarks/rl_cartpole.py                  # seeds 0 1 2, DQN and PPO
    .venv/bin/python benchmarks/rl_cartpole.py --seeds 0 --algos ppo
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


def run_sb3(script: str, *args: str) -> dict:
    if not SB3_PYTHON.exists():
        sys.exit(f"{SB3_PYTHON} is missing; create it with: {sys.executable} {__file__} --setup")
    out = subprocess.run(
        [str(SB3_PYTHON), "-c", script, *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        sys.exit(f"SB3 run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


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
        "evals": evals,
    }


def cores_busy() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="create benchmarks/.venv-sb3 and exit")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=["ppo", "dqn"])
    parser.add_argument("--budget", type=int, default=100_000, help="most env steps per run")
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    rows = []
    for algo in args.algos:
        for seed in args.seeds:
            for side in ("torchlab", "sb3"):
                load = cores_busy()
                result = (
                    run_torchlab(algo, seed, args.budget)
                    if side == "torchlab"
                    else run_sb3(SB3_CARTPOLE, algo, str(seed), str(args.budget))
                )
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
                    f"{algo:4} seed {seed} {side:8} solved at {solved} steps, {row['seconds']:.1f} s train (load {load:.1f})",
                    flush=True,
                )
    print(
        "\n| algo | side | steps to 475 (per seed) | median steps | wall s (per seed) | median wall s |"
    )
    print("| --- | --- | --- | ---: | --- | ---: |")
    for algo in args.algos:
        for side in ("torchlab", "sb3"):
            mine = [r for r in rows if r["algo"] == algo and r["side"] == side]
            steps = [
                r["solved_step"] if r["solved_step"] is not None else float("inf") for r in mine
            ]
            secs = [r["seconds"] for r in mine]
            print(
                f"| {algo} | {side} | {', '.join(str(s) for s in steps)} | {statistics.median(steps)} "
                f"| {', '.join(f'{s:.1f}' for s in secs)} | {statistics.median(secs):.1f} |"
            )
    print("\nJSON:", json.dumps(rows))


if __name__ == "__main__":
    main()
