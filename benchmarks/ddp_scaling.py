"""DDP scaling on the CPU: one process against ``torchrun --nproc-per-node N`` on the same job.

The job is an MLP 64-256-256-10 on 50,000 synthetic rows (a CSV written once), global batch
256: one process at batch 256 with all threads, N gloo processes at 256/N each with
threads split between them. Figures are the training seconds from each run's
``summary.json`` (training and validation epochs, without start-up) and their ratio.

    .venv/bin/python benchmarks/ddp_scaling.py [--procs 2] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def write_job(folder: Path, batch_size: int, epochs: int) -> Path:
    data = folder / "data.csv"
    if not data.exists():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(50_000, 64)).astype(np.float32)
        frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(64)])
        frame["y"] = (x @ rng.normal(size=(64, 10))).argmax(axis=1)
        frame.to_csv(data, index=False)
    config = {
        "name": "scaling",
        "data": {
            "source": {"name": "csv", "path": str(data), "target": "y", "categorical": []},
            "batch_size": batch_size,
            "split": {"val": 0.1, "test": 0.1},
        },
        "model": {"name": "mlp", "hidden": [256, 256]},
        "task": "classification",
        "optim": {"name": "adamw", "lr": 1e-3},
        "trainer": {"max_epochs": epochs, "progress": "none"},
    }
    path = folder / f"job-{batch_size}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train_seconds(command: list[str], folder: Path, out: str, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(
        [*command, "--output-dir", out], cwd=folder, env=env, capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(done.stderr[-2000:])
    (run,) = [p for p in (folder / out / "scaling").iterdir() if p.is_dir()]
    return json.loads((run / "summary.json").read_text())["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        single = write_job(folder, 256, args.epochs)
        per_rank = write_job(folder, 256 // args.procs, args.epochs)
        one = train_seconds(
            [sys.executable, "-m", "torchlab", "train", str(single)], folder, "one", cores
        )
        many = train_seconds(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node",
                str(args.procs),
                "-m",
                "torchlab",
                "train",
                str(per_rank),
            ],
            folder,
            "many",
            max(1, cores // args.procs),
        )
    print(f"{cores} cores, {args.epochs} epochs, global batch 256")
    print("| processes | threads each | train seconds | speed-up |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| 1 | {cores} | {one:.2f} | 1.00x |")
    print(f"| {args.procs} | {max(1, cores // args.procs)} | {many:.2f} | {one / many:.2f}x |")


if __name__ == "__main__":
    main()
