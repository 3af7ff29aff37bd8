"""Pendulum-v1: mean return over 10 deterministic episodes after 20,000 environment steps.

torchlab DDPG and TD3 (recipes ``pendulum-ddpg`` and ``pendulum-td3``, the RL Zoo's
hyper-parameters) beside Stable-Baselines3 DDPG and TD3 with the same RL Zoo
hyper-parameters, run in ``benchmarks/.venv-sb3`` (create it with
``benchmarks/rl_cartpole.py --setup``). Both sides: one torch thread, evaluation seeds
``seed + 1,000,000 + i``, the final weights after exactly 20,000 steps. Target (issue 6):
TD3 >= -150.

    .venv/bin/python benchmarks/rl_pendulum.py                  # seeds 0 1 2
    .venv/bin/python benchmarks/rl_pendulum.py --seeds 0 --algos td3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rl_cartpole import SB3_COMMON, cores_busy, run_sb3

SB3_PENDULUM = (
    SB3_COMMON
    + r"""
from stable_baselines3 import DDPG, TD3
from stable_baselines3.common.noise import NormalActionNoise

algo, seed, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
env = gym.make("Pendulum-v1")
noise = NormalActionNoise(mean=np.zeros(1), sigma=0.1 * np.ones(1))
cls = {"ddpg": DDPG, "td3": TD3}[algo]  # rl-baselines3-zoo hyperparams/{ddpg,td3}.yml, Pendulum-v1
model = cls("MlpPolicy", env, gamma=0.98, buffer_size=200000, learning_starts=10000,
            action_noise=noise, gradient_steps=1, train_freq=1, learning_rate=1e-3,
            policy_kwargs=dict(net_arch=[400, 300]), seed=seed)
started = time.perf_counter()
model.learn(total_timesteps=steps)
seconds = time.perf_counter() - started
print(json.dumps({"return": evaluate(model, "Pendulum-v1", 10, seed + 1_000_000), "seconds": seconds}))
"""
)


def run_torchlab(algo: str, seed: int, steps: int) -> dict:
    import torchlab

    overrides = {
        "seed": seed,
        "trainer.total_steps": steps,
        "trainer.eval_every": steps,  # one evaluation, of the final weights
        "trainer.eval_episodes": 10,
        "trainer.record_gif": False,
        "trainer.progress": "none",
    }
    with tempfile.TemporaryDirectory() as tmp:
        run = torchlab.train(f"pendulum-{algo}", overrides=overrides, output_dir=tmp)
        final = [r["eval/return"] for r in run.history if "eval/return" in r][-1]
        return {"return": final, "seconds": run.summary["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=["td3", "ddpg"], choices=["td3", "ddpg"])
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()
    rows = []
    for algo in args.algos:
        for seed in args.seeds:
            for side in ("torchlab", "sb3"):
                load = cores_busy()
                result = (
                    run_torchlab(algo, seed, args.steps)
                    if side == "torchlab"
                    else run_sb3(SB3_PENDULUM, algo, str(seed), str(args.steps))
                )
                rows.append(
                    {
                        "algo": algo,
                        "seed": seed,
                        "side": side,
                        "load_before": round(load, 2),
                        **result,
                    }
                )
                print(
                    f"{algo:4} seed {seed} {side:8} return {result['return']:.1f} ({result['seconds']:.1f} s, load {load:.1f})",
                    flush=True,
                )
    print(
        f"\n| algo | side | return after {args.steps} steps (per seed) | median | train s (per seed) |"
    )
    print("| --- | --- | --- | ---: | --- |")
    for algo in args.algos:
        for side in ("torchlab", "sb3"):
            mine = [r for r in rows if r["algo"] == algo and r["side"] == side]
            returns = [r["return"] for r in mine]
            per_seed = ", ".join(f"{x:.1f}" for x in returns)
            seconds = ", ".join(f"{r['seconds']:.0f}" for r in mine)
            print(
                f"| {algo} | {side} | {per_seed} | {statistics.median(returns):.1f} | {seconds} |"
            )
    print("\nJSON:", json.dumps(rows))


if __name__ == "__main__":
    main()
