"""Targets of tuning on the digits recipe, measured in one run of this script.

1. A 30-trial Optuna study (benchmarks/configs/digits-tune.yaml: TPE, Hyperband pruning)
   finds a config at least as good as the hand-written digits recipe: its best validation
   accuracy >= the recipe's, and its test accuracy is printed beside the recipe's.
2. The learning-rate finder's suggestion (optim.lr: auto) trains the digits recipe to a
   test accuracy >= 0.98 with nothing else changed.

    .venv/bin/python benchmarks/tune_digits.py                    # both, about 30-60 min on 2 cores
    .venv/bin/python benchmarks/tune_digits.py --part study       # only the first, one command
    .venv/bin/python benchmarks/tune_digits.py --part lr-finder   # only the second
    .venv/bin/python benchmarks/tune_digits.py --reference RUN    # reuse a trained digits run
    .venv/bin/python benchmarks/tune_digits.py --part study --trials 3 --max-epochs 3  # a quick check

Everything goes under --out (default runs/bench/tune_digits, ignored by git). The study
resumes when its folder exists: pass a fresh --out for a fresh study. Run it from a tree
nobody edits meanwhile: every trial imports torchlab and writes its report anew.
Each part ends with a VERDICT line; exit status 1 when a target is missed (with --check).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def best_val(run) -> float:  # type: ignore[no-untyped-def]
    return max(r["val/accuracy"] for r in run.history if "val/accuracy" in r and "train/loss" in r)


def failures(study_dir: Path) -> list[str]:
    """'trial N: error' for every failed trial in the study's trials.csv."""
    path = study_dir / "trials.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return [
        f"trial {r['number']}: {r.get('user_attrs_error') or 'no message'}"
        for r in rows
        if r["state"] == "FAIL"
    ]


def study_part(args: argparse.Namespace, quiet: dict) -> bool:
    """Run (or resume) the study, train the recipe and the study's best, print the verdict."""
    import torchlab
    from torchlab.run import Run
    from torchlab.tune import tune

    study_dir = args.out / "study"
    epochs = {"trainer.max_epochs": args.max_epochs} if args.max_epochs else {}
    if (study_dir / "base.yaml").is_file():
        print(f"resuming the study in {study_dir} (pass a fresh --out for a new one)")
    started = time.perf_counter()
    result = tune(
        HERE / "configs" / "digits-tune.yaml",
        epochs,
        trials=args.trials,
        storage=args.storage,
        study_dir=study_dir,
    )
    minutes = (time.perf_counter() - started) / 60
    print(f"study: {result.counts} in {minutes:.1f} min; trials table {study_dir / 'trials.csv'}")
    for line in failures(study_dir):
        print(f"  failed {line}")
    if result.best_config is None:
        print("VERDICT study: no trial completed, so there is no best configuration to compare.")
        return False
    print(f"best: {result.best_config.read_text().splitlines()[0].lstrip('# ')}")
    print(f"best params: {result.best_params}")
    reference = (
        Run(args.reference)
        if args.reference
        else torchlab.train("digits", {**quiet, **epochs}, output_dir=args.out / "runs")
    )
    best = torchlab.train(result.best_config, quiet, output_dir=args.out / "runs")
    recipe_val, recipe_test = best_val(reference), reference.metrics["test/accuracy"]
    study_test = best.metrics["test/accuracy"]
    print(f"{'':28} {'best val/accuracy':>18} {'test/accuracy':>14}  run")
    print(
        f"{'hand-written digits recipe':28} {recipe_val:18.4f} {recipe_test:14.4f}  {reference.dir}"
    )
    print(f"{'study best (retrained)':28} {result.best_value:18.4f} {study_test:14.4f}  {best.dir}")  # fmt: skip
    met = result.best_value >= recipe_val
    print(
        f"VERDICT study: target {'MET' if met else 'NOT MET'} (study best val/accuracy "
        f"{result.best_value:.4f} {'>=' if met else '<'} recipe {recipe_val:.4f}); test/accuracy "
        f"study {study_test:.4f} vs recipe {recipe_test:.4f} "
        f"({'higher' if study_test > recipe_test else 'equal' if study_test == recipe_test else 'lower'})."
    )
    return met


def main() -> int:
    import torchlab

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "study", "lr-finder"], default="all")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/tune_digits"))
    parser.add_argument("--storage", default=None, help="e.g. journal, to run several workers")
    parser.add_argument("--reference", type=Path, help="a completed run of the digits recipe")
    parser.add_argument(
        "--max-epochs", type=int, help="shorter trials and reference, to check the script only"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()
    quiet = {"trainer.progress": "none"}
    ok = True

    if args.part in ("all", "study"):
        ok &= study_part(args, quiet)

    if args.part in ("all", "lr-finder"):
        run = torchlab.train("digits", {**quiet, "optim.lr": "auto"}, output_dir=args.out / "runs")
        accuracy = run.metrics["test/accuracy"]
        print(f"lr finder: suggested optim.lr={run.config.optim.lr:g}; test/accuracy {accuracy:.4f} "
              f"in {run.dir}")  # fmt: skip
        print(f"VERDICT lr finder: target {'MET' if accuracy >= 0.98 else 'NOT MET'} "
              f"(test/accuracy {accuracy:.4f}, target >= 0.98).")  # fmt: skip
        ok &= accuracy >= 0.98
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
