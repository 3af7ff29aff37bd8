"""Few-shot digits: ImageNet-pretrained MobileNetV2 versus the same network from scratch.

Trains the ``digits-transfer`` recipe (20 training images per class, upscaled to 64x64 RGB,
ImageNet MobileNetV2 weights, gradual unfreezing, backbone at 0.3x the head's learning
rate) and ``digits-scratch`` (the same network and data, random weights, every layer
trained from the start) with the same seed, split and epochs, and prints each run's test
accuracy (360 test images), macro F1, the SVM baseline on the same few shots, wall time and
the CPU seconds used (this process and its loader workers: on a busy machine the figure
that does not depend on others' load).

    .venv/bin/python benchmarks/vision_fewshot.py [--per-class 20] [--epochs 12]
        [--seeds 0] [--out runs/bench-fewshot]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torchlab

RECIPES = ("digits-transfer", "digits-scratch")


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_one(recipe: str, per_class: int, epochs: int, seed: int, out: Path) -> dict[str, float]:
    overrides = {
        "data.source.per_class": per_class,
        "trainer.max_epochs": epochs,
        "trainer.progress": "none",
        "seed": seed,
    }
    wall, cpu = time.perf_counter(), cpu_seconds()
    run = torchlab.train(recipe, overrides, output_dir=out)
    summary = run.summary
    return {
        "accuracy": summary["test"]["test/accuracy"],
        "f1": summary["test"]["test/f1"],
        "svm": summary["baseline"]["test/accuracy"],
        "wall_s": time.perf_counter() - wall,
        "cpu_s": cpu_seconds() - cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-fewshot"))
    args = parser.parse_args()
    print(f"few-shot digits: {args.per_class} train images per class, {args.epochs} epochs")
    print("| recipe | seed | test accuracy | test macro F1 | SVM baseline | wall s | CPU s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    results: dict[str, list[float]] = {r: [] for r in RECIPES}
    for seed in args.seeds:
        for recipe in RECIPES:
            r = run_one(recipe, args.per_class, args.epochs, seed, args.out)
            results[recipe].append(r["accuracy"])
            print(
                f"| {recipe} | {seed} | {r['accuracy']:.4f} | {r['f1']:.4f} | {r['svm']:.4f} "
                f"| {r['wall_s']:.1f} | {r['cpu_s']:.1f} |",
                flush=True,
            )
    mean = {k: sum(v) / len(v) for k, v in results.items()}
    print(
        f"mean test accuracy: pretrained {mean['digits-transfer']:.4f}, scratch "
        f"{mean['digits-scratch']:.4f}, margin {mean['digits-transfer'] - mean['digits-scratch']:+.4f}"
    )


if __name__ == "__main__":
    main()
