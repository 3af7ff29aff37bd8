"""BBC News topic classification: test accuracy and wall time of each text recipe.

Stratified 80/20 split with seed 0 (the test split of scikit-learn's ``train_test_split``),
validation cut from the 80%. Trains the ``bbc-lstm``, ``bbc-transformer`` and
``bbc-minilm`` recipes with their defaults (or overrides), reports each run's test
accuracy, its wall time (data, tokenizer, training and testing) and the TF-IDF + linear SVM
baseline fitted in the same runs, and the CPU seconds each run used (this process and its
loader workers: on a busy machine the figure that does not depend on others' load; on an
idle 2-core machine wall time is about half of it or more), then measures training tokens/s of the Transformer
classifier over its own training batches (real tokens, padding excluded).

    .venv/bin/python benchmarks/bbc.py [--recipes bbc-lstm bbc-transformer bbc-minilm]
        [--set bbc-lstm:trainer.max_epochs=3 ...] [--out runs/bench-bbc] [--threads 1]
        [--tokens-only [--steps 20]]   # tokens/s and CPU s per epoch of each recipe, no training
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch

import torchlab
from torchlab.config import load_config
from torchlab.engine.experiment import build_experiment, loaders

RECIPES = ("bbc-lstm", "bbc-transformer", "bbc-minilm")


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (loader workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def train(recipe: str, overrides: list[str], out: Path) -> dict:
    started, cpu = time.perf_counter(), cpu_seconds()
    run = torchlab.train(recipe, [*overrides, "trainer.progress=none"], output_dir=out)
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    summary = run.summary
    lines = (run.dir / "metrics.jsonl").read_text().splitlines()
    curve = [json.loads(line) for line in lines if line.strip()]
    return {
        "recipe": recipe,
        "overrides": overrides,
        "test_accuracy": summary["test"]["test/accuracy"],
        "baseline_accuracy": summary["baseline"]["test/accuracy"],
        "epochs": summary["epochs"],
        "best_epoch": summary["best_epoch"],
        "val_accuracy": [round(r["val/accuracy"], 4) for r in curve if "val/accuracy" in r],
        "train_seconds": summary["train_seconds"],
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "run": str(run.dir),
    }


def tokens_per_second(recipe: str, overrides: list[str], steps: int = 20) -> dict:
    """Real tokens per wall second and per CPU second of training steps (forward, backward, step).

    Also the CPU seconds one training epoch would take at that rate (the training split's
    real tokens over tokens per CPU second), to plan a long run before starting it.
    """
    from torchlab.training.optim import build_optimizer

    parts = build_experiment(load_config(recipe, [*overrides, "data.num_workers=0"]))
    loader = loaders(parts)["train"]
    optimizer = build_optimizer(parts.config.optim, parts.model)
    batches = [b for _, b in zip(range(steps + 2), loader.epoch(0), strict=False)]
    parts.model.train()
    tokens, seconds, cpu = 0, 0.0, 0.0
    for i, batch in enumerate(batches):
        started, cpu_started = time.perf_counter(), time.process_time()
        loss = parts.task.training_step(parts.model, batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= 2:  # two warm-up steps
            seconds += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
            tokens += int(batch.inputs["lengths"].sum())
    epoch_tokens = sum(len(ids) for ids in parts.bundle.train.ids)
    return {
        "recipe": recipe,
        "overrides": overrides,
        "train_tokens_per_s": round(tokens / seconds),
        "per_cpu_s": round(tokens / cpu),
        "epoch_cpu_s": round(epoch_tokens / (tokens / cpu)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--set", nargs="*", default=[], help="RECIPE:key=value overrides")
    parser.add_argument("--out", default="runs/bench-bbc")
    parser.add_argument("--tokens-only", action="store_true", help="only measure training tokens/s")
    parser.add_argument(
        "--steps", type=int, default=20, help="timed training steps of the tokens/s measurement"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (1 on a crowded machine)"
    )
    args = parser.parse_args()
    if args.threads:  # spinning OpenMP threads on oversubscribed cores cost up to 10x
        torch.set_num_threads(args.threads)
    overrides: dict[str, list[str]] = {r: [] for r in args.recipes}
    for item in args.set:
        recipe, _, override = item.partition(":")
        overrides.setdefault(recipe, []).append(override)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    results = []
    for recipe in [] if args.tokens_only else args.recipes:
        result = train(recipe, overrides[recipe], Path(args.out))
        results.append(result)
        print(json.dumps(result), flush=True)
    # Every recipe named with --tokens-only, else the Transformer's (the figure).
    measured = args.recipes if args.tokens_only else ["bbc-transformer"]
    for recipe in [r for r in measured if r in args.recipes]:
        print(json.dumps(tokens_per_second(recipe, overrides[recipe], args.steps)), flush=True)
    print(f"load at the end {os.getloadavg()}")
    print("| model | test accuracy | epochs | wall s | CPU s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    if results:
        print(f"| TF-IDF + linear SVM | {results[0]['baseline_accuracy']:.4f} | - | - |")
    for r in results:
        row = f"{r['test_accuracy']:.4f} | {r['epochs']} | {r['wall_seconds']} | {r['cpu_seconds']}"
        print(f"| {r['recipe']} | {row} |")


if __name__ == "__main__":
    main()
