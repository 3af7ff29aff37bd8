"""Full CPU runs of the shapes recipes: segmentation mean IoU and detection mAP@0.5.

Trains ``shapes-seg`` and ``shapes-det`` as shipped (their own epochs and data sizes) on
the held-out test split and prints the test metrics, the baseline's, and the wall time of
the whole run (data generation included the first time) and of training alone.

    python benchmarks/shapes.py                 # both recipes, two threads (2 CPU cores)
    python benchmarks/shapes.py --only seg      # one of them
    python benchmarks/shapes.py --threads 4 --out /tmp/runs

Targets (issue 3): mean IoU >= 0.90 and mAP@0.5 >= 0.80, each in under 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

RECIPES = {"seg": ("shapes-seg", "test/mean_iou", 0.90), "det": ("shapes-det", "test/map_50", 0.80)}
BUDGET_S = 15 * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(RECIPES), action="append")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CPU cores used)")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: a temp dir)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides for every recipe")
    args = parser.parse_args()

    import torch

    import torchlab

    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="torchlab-shapes-"))
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {args.threads} threads, load average at start {load:.1f}")
    for key in args.only or sorted(RECIPES):
        recipe, metric, target = RECIPES[key]
        started = time.perf_counter()
        run = torchlab.train(recipe, ["trainer.progress=none", *args.overrides], output_dir=out)
        wall = time.perf_counter() - started
        summary = json.loads((run.dir / "summary.json").read_text())
        value = summary["test"][metric]
        baseline = summary.get("baseline") or {}
        met = value >= target and summary["train_seconds"] <= BUDGET_S
        print(
            f"{recipe}: {metric} {value:.3f} (target {target}), baseline "
            f"{baseline.get('name', 'none')} {baseline.get(metric, float('nan')):.3f}, "
            f"training {summary['train_seconds'] / 60:.1f} min, whole run {wall / 60:.1f} min, "
            f"{summary['epochs']} epochs -> {'met' if met else 'NOT met'}; run {run.dir}"
        )
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
