"""What MLflow tracking costs a training run: seconds per epoch on the digits recipe with
and without ``trainer.tracking.mlflow``, measured side by side in one process.

Runs alternate (untracked, tracked) ``--rounds`` times so a busy machine weighs on both
alike; s/epoch is the run's own training time (``summary.json``'s ``train_seconds``, the
loop and its callbacks, the background pushes included) over its epochs, median of the
rounds. What a tracked run does outside its epochs (finding its MLflow run before training;
files, export and model upload after it) is reported on its own, from the runs' wall times. The store is a local SQLite file unless ``--uri`` names a server.

    .venv/bin/python benchmarks/tracking_overhead.py [--epochs 5] [--rounds 3] [--per-class N] [--uri URI]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torchlab


def one_run(
    folder: Path, epochs: int, per_class: int | None, tracking: dict | None
) -> tuple[float, float]:
    """(s/epoch of training, wall seconds of the whole call)."""
    overrides = {"trainer.max_epochs": epochs, "trainer.progress": "none"}
    if per_class:
        overrides["data.source.per_class"] = per_class
    if tracking is not None:
        overrides["trainer.tracking"] = {"mlflow": tracking}
    started = time.perf_counter()
    run = torchlab.train("digits", overrides=overrides, output_dir=folder / "runs")
    wall = time.perf_counter() - started
    summary = run.summary
    return summary["train_seconds"] / summary["epochs"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--per-class", type=int, default=None, help="images per digit (default: all)"
    )
    parser.add_argument(
        "--uri", default=None, help="an MLflow server (default: a local SQLite store)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        uri = args.uri or f"sqlite:///{folder / 'mlflow.db'}"
        tracking = {"uri": uri, "experiment": "tracking-overhead"}
        one_run(folder, 1, args.per_class, tracking)  # warm-up: imports, the store's tables
        plain, tracked, plain_wall, tracked_wall = [], [], [], []
        for _ in range(args.rounds):
            per_epoch, wall = one_run(folder, args.epochs, args.per_class, None)
            plain.append(per_epoch)
            plain_wall.append(wall)
            per_epoch, wall = one_run(folder, args.epochs, args.per_class, tracking)
            tracked.append(per_epoch)
            tracked_wall.append(wall)
    without, with_ = statistics.median(plain), statistics.median(tracked)
    outside = statistics.median(tracked_wall) - statistics.median(plain_wall)
    print(f"digits, {args.epochs} epochs, {args.rounds} rounds, store {args.uri or 'local SQLite'}")
    print(f"  without tracking  {without:.3f} s/epoch")
    print(f"  with tracking     {with_:.3f} s/epoch  ({(with_ / without - 1) * 100:+.1f}%)")
    print(f"  outside the epochs (connecting; files, export, model): +{outside:.1f} s once")


if __name__ == "__main__":
    main()
