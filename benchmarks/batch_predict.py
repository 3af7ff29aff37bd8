"""Batch scoring beyond memory: ``torchlab predict RUN DATASET -o OUT.parquet`` over a
generated Parquet dataset of ``--rows`` rows by 30 mixed columns (20 numbers, 10 categories,
blanks in both), with an MLP trained for one epoch on a slice of it.

The predict runs in a fresh process; its peak resident memory (``ru_maxrss`` of the child)
and its rows per second (from the job's manifest) are printed, and, with ``--pandas``, the
peak of a process that reads the whole dataset with pandas beside it. Target: the predict's
peak under 2 GiB at 20 million rows (``--check`` exits 1 on a miss).

    .venv/bin/python benchmarks/batch_predict.py --rows 20000000       # several GB of Parquet
    .venv/bin/python benchmarks/batch_predict.py --rows 200000 --pandas  # a quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TARGET_MIB = 2048
NUMBERS, CATEGORIES = 20, 10


def write_dataset(folder: Path, rows: int, rows_per_file: int, seed: int = 0) -> None:
    """``rows`` rows in files of ``rows_per_file``, written a block at a time (bounded memory)."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=NUMBERS)
    folder.mkdir(parents=True)
    for number, start in enumerate(range(0, rows, rows_per_file)):
        with pq.ParquetWriter(folder / f"part-{number:04d}.parquet", schema()) as writer:
            for block in range(start, min(start + rows_per_file, rows), 250_000):
                size = min(250_000, rows - block, start + rows_per_file - block)
                writer.write_table(make_block(rng, size, weights), row_group_size=size)


def schema() -> pa.Schema:
    fields = [pa.field(f"x{i}", pa.float64()) for i in range(NUMBERS)]
    fields += [pa.field(f"c{i}", pa.string()) for i in range(CATEGORIES)]
    return pa.schema([*fields, pa.field("target", pa.string())])


def make_block(rng: np.random.Generator, size: int, weights: np.ndarray) -> pa.Table:
    numbers = rng.normal(size=(size, NUMBERS))
    columns: dict[str, pa.Array] = {}
    for i in range(NUMBERS):
        column = numbers[:, i].copy()
        column[rng.random(size) < 0.01] = np.nan  # blanks, imputed
        columns[f"x{i}"] = pa.array(column, from_pandas=True)
    for i in range(CATEGORIES):
        levels = np.array([f"v{j}" for j in range(5 + 5 * i)])
        values = levels[rng.integers(0, len(levels), size)].astype(object)
        values[rng.random(size) < 0.01] = None
        columns[f"c{i}"] = pa.array(values, type=pa.string())
    score = numbers @ weights
    columns["target"] = pa.array(np.where(score > 0, "yes", "no"))
    return pa.table(columns)


def train(folder: Path, train_rows: int) -> Path:
    """A one-epoch MLP run on the first ``train_rows`` rows."""
    import torchlab

    first = pq.ParquetFile(next(iter(sorted((folder / "data").glob("*.parquet")))))
    slice_ = folder / "train.parquet"
    pq.write_table(first.read().slice(0, train_rows), slice_)
    source = {"name": "parquet", "path": str(slice_), "target": "target"}
    overrides = {
        "data.source": source,
        "data.batch_size": 256,
        "trainer.max_epochs": 1,
        "trainer.progress": "none",
        "baseline": None,
    }
    return torchlab.train("iris", overrides, output_dir=folder / "runs").dir


# Prepended to a child's code: its own peak resident memory, printed as it exits.
PEAK = (
    "import atexit, resource, sys; atexit.register(lambda: print('PEAK_KIB', "
    "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); "
)
TORCHLAB = (
    "import runpy; sys.argv[0] = 'torchlab'; runpy.run_module('torchlab', run_name='__main__')"
)


def child_peak(code: str, *argv: str) -> tuple[float, int]:
    """Seconds and peak resident MiB of ``python -c code argv...`` in a fresh process."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK + code, *argv], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{code} {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    peak = next(line for line in reversed(done.stderr.splitlines()) if line.startswith("PEAK_KIB"))
    return seconds, int(peak.split()[1]) // 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--rows-per-file", type=int, default=2_000_000)
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--chunk-rows", type=int, default=16_384)
    parser.add_argument("--pandas", action="store_true", help="also read it whole with pandas")
    parser.add_argument("--out", type=Path, help="keep the data here (default: a temp folder)")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 unless peak < {TARGET_MIB} MiB"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="torchlab-bench-") as tmp:
        folder = args.out or Path(tmp)
        started = time.perf_counter()
        write_dataset(folder / "data", args.rows, args.rows_per_file)
        size = sum(f.stat().st_size for f in (folder / "data").glob("*.parquet"))
        print(
            f"data: {args.rows:,} rows x {NUMBERS + CATEGORIES} columns, {size / 2**30:.2f} GiB of Parquet ({time.perf_counter() - started:.0f} s)"
        )
        run = train(folder, min(args.train_rows, args.rows))
        out = folder / "scores.parquet"
        command = ["predict", str(run), str(folder / "data"), "-o", str(out)]
        seconds, peak = child_peak(TORCHLAB, *command, "--chunk-rows", str(args.chunk_rows))
        manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
        print(
            f"torchlab predict: {manifest['rows']:,} rows, {manifest['rows_per_second']:,.0f} rows/s while scoring ({seconds:.0f} s with start-up and joining), peak RSS {peak:,} MiB (target < {TARGET_MIB:,})"
        )
        if args.pandas:
            read = f"import pandas as pd; pd.read_parquet({str(folder / 'data')!r})"
            seconds, whole = child_peak(read)
            print(
                f"pandas.read_parquet of the whole dataset: peak RSS {whole:,} MiB ({seconds:.0f} s)"
            )
    ok = peak < TARGET_MIB
    print(f"VERDICT: {'PASS' if ok else 'MISS'} (peak {peak:,} MiB)")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
