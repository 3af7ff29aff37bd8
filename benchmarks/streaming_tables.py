"""Training on a Parquet table larger than memory: peak memory and rows per second.

Generates ``--rows`` rows x 30 mixed columns (20 numeric with blanks, 9 categorical, a
binary target) as Parquet row groups of 65,536 rows, then measures, each in a fresh
process with its high-water mark (``VmHWM``, Linux):

- ``pandas``: ``pd.read_parquet`` of the whole table, what an in-memory source starts with;
- ``streamed``: one epoch of an MLP with ``data.source.streaming: true`` (the statistics
  pass included in the peak, not in the rate);
- ``in-memory`` and ``streamed-slice``: one epoch on the first ``--slice`` rows (a table that
  fits), read into memory and streamed; the ratio is streamed rows/s over in-memory rows/s.

Targets at 20 million rows: streamed peak under 2 GB, slice ratio at least 0.8.

    .venv/bin/python benchmarks/streaming_tables.py --rows 20000000 --slice 1000000
    .venv/bin/python benchmarks/streaming_tables.py --rows 200000 --slice 50000   # quick
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

GROUP = 65_536


def generate(folder: Path, rows: int, chunk: int = 1_000_000) -> None:
    """``rows`` rows in files of at most ``chunk`` rows, written a file at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, start in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - start)
        rng = np.random.default_rng(number)
        numbers = rng.normal(size=(n, 20))
        columns = {f"x{i}": numbers[:, i] for i in range(20)}
        for i in range(20):
            columns[f"x{i}"][rng.random(n) < 0.02] = np.nan
        for i in range(9):
            columns[f"c{i}"] = rng.choice([f"v{j}" for j in range(5 + 3 * i)], n)
        signal = numbers[:, 0] + numbers[:, 1] * numbers[:, 2] + (columns["c0"] == "v1")
        columns["target"] = np.where(signal + rng.normal(0, 0.5, n) > 0.5, "yes", "no")
        pq.write_table(pa.table(columns), folder / f"part-{number:04d}.parquet",
                       row_group_size=GROUP)  # fmt: skip


def peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("this benchmark needs Linux (/proc/self/status)")


def measure(case: str, data: str, workers: int | str) -> dict[str, float]:
    """One case in this process (run as a child): seconds, rows and peak memory."""
    if case == "pandas":
        import pandas as pd

        started = time.perf_counter()
        rows = len(pd.read_parquet(data))
        return {
            "seconds": time.perf_counter() - started,
            "rows": rows,
            "peak_mib": peak_kib() / 1024,
        }
    import torchlab

    source = {"name": "parquet", "path": data, "target": "target", "streaming": case != "in-memory"}
    overrides = {
        "data.source": source, "data.batch_size": 1024, "data.num_workers": workers,
        "data.split.val": 0.0, "data.split.test": 0.0, "task.name": "classification",
        "model.name": "mlp", "model.hidden": [256, 256], "trainer.max_epochs": 1,
        "trainer.progress": "none", "baseline": None,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        run = torchlab.train("iris", overrides=overrides, output_dir=out)
        summary = json.loads((run.dir / "summary.json").read_text())
        rows = json.loads((run.dir / "data.json").read_text())["sizes"]["train"]
    seconds = summary["train_seconds"]
    return {"seconds": seconds, "rows": rows, "peak_mib": peak_kib() / 1024}


def child(case: str, data: Path, workers: int | str) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", case, "--data", str(data),
               "--workers", str(workers)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--slice", type=int, default=1_000_000)
    parser.add_argument(
        "--workers", type=lambda v: v if v == "auto" else int(v), default="auto",
        help="data.num_workers (auto: none for a streamed table below 4 cores)",
    )  # fmt: skip
    parser.add_argument("--folder", type=Path, default=None, help="keep the data here")
    parser.add_argument("--child", default=None)
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.data, args.workers)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.folder or Path(tmp)
        table, part = root / "table", root / "slice"
        if not table.exists():
            generate(table, args.rows)
        if not part.exists():
            generate(part, min(args.slice, args.rows), chunk=args.slice)  # one file
        part = part / "part-0000.parquet"
        size = sum(f.stat().st_size for f in table.glob("*.parquet")) / 2**20
        print(
            f"{args.rows:,} rows x 30 columns, {size:,.0f} MiB of Parquet; slice {args.slice:,} rows"
        )
        results = {
            "pandas (whole table)": child("pandas", table, args.workers),
            "streamed (whole table)": child("streamed", table, args.workers),
            "in-memory (slice)": child("in-memory", part, args.workers),
            "streamed (slice)": child("streamed", part, args.workers),
        }
    for name, r in results.items():
        rate = r["rows"] / r["seconds"] if r["seconds"] else 0.0
        print(
            f"{name:24s} peak {r['peak_mib']:8,.0f} MiB  {r['seconds']:8.1f} s  {rate:12,.0f} rows/s"
        )
    slice_rate = {k: v["rows"] / v["seconds"] for k, v in results.items() if "slice" in k}
    ratio = slice_rate["streamed (slice)"] / slice_rate["in-memory (slice)"]
    print(f"streamed / in-memory rows/s on the slice: {ratio:.2f}x (target >= 0.8)")
    print(
        f"streamed peak: {results['streamed (whole table)']['peak_mib']:,.0f} MiB (target < 2048)"
    )


if __name__ == "__main__":
    main()
