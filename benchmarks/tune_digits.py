"""Targets of tuning on the digits recipe, measured in one run of this script.

1. A 30-trial Optuna study (benchmarks/configs/digits-tune.yaml: TPE, Hyperband pruning)
   finds a config at least as good as the hand-written digits recipe: its best validation
   accuracy >= the recipe's, and its test accuracy is printed beside the recipe's.
2. The learning-rate finder's suggestion (optim.lr: auto) trains the digits recipe to a
   test accuracy >= 0.98 with nothing else changed.

    .venv/bin/python benchmarks/tune_digits.py                    # both, about 30-60 min on 2 cores
    .venv/bin/python benchmarks/tune_digits.py --part lr-finder   # only the second
    .venv/bin/python benchmarks/tune_digits.py --reference RUN    # reuse a trained digits run

Exit status 1 when a target is missed (with --check).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def best_val(run) -> float:  # type: ignore[no-untyped-def]
    return max(r["val/accuracy"] for r in run.history if "val/accuracy" in r and "train/loss" in r)


def main() -> int:
    import torchlab
    from torchlab.run import Run
    from torchlab.tune import tune

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "study", "lr-finder"], default="all")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("bench-out/tune_digits"))
    parser.add_argument("--storage", default=None, help="e.g. journal, to run several workers")
    parser.add_argument("--reference", type=Path, help="a completed run of the digits recipe")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()
    quiet = {"trainer.progress": "none"}
    ok = True

    if args.part in ("all", "study"):
        started = time.perf_counter()
        result = tune(
            HERE / "configs" / "digits-tune.yaml",
            trials=args.trials,
            storage=args.storage,
            study_dir=args.out / "study",
        )
        study_minutes = (time.perf_counter() - started) / 60
        reference = (
            Run(args.reference)
            if args.reference
            else torchlab.train("digits", quiet, output_dir=args.out / "runs")
        )
        best = torchlab.train(result.best_config, quiet, output_dir=args.out / "runs")
        print(
            f"study: {result.counts} in {study_minutes:.1f} min; best params {result.best_params}"
        )
        print(f"{'':28} {'best val/accuracy':>18} {'test/accuracy':>14}")
        print(f"{'hand-written digits recipe':28} {best_val(reference):18.4f} "
              f"{reference.metrics['test/accuracy']:14.4f}")  # fmt: skip
        print(f"{'study best (retrained)':28} {result.best_value:18.4f} "
              f"{best.metrics['test/accuracy']:14.4f}")  # fmt: skip
        ok &= result.best_value >= best_val(reference)

    if args.part in ("all", "lr-finder"):
        run = torchlab.train("digits", {**quiet, "optim.lr": "auto"}, output_dir=args.out / "runs")
        accuracy = run.metrics["test/accuracy"]
        print(f"lr finder: suggested optim.lr={run.config.optim.lr:g}; test/accuracy {accuracy:.4f} "
              f"(target >= 0.98) in {run.dir}")  # fmt: skip
        ok &= accuracy >= 0.98
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
