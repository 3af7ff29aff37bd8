"""Peak resident memory of torchlab's training loop against a plain PyTorch loop (and Lightning).

For each case of ``loop_overhead.py`` every loop trains alone in a fresh process (so the
peaks are separate): the process builds the case's data and model exactly as the timing
benchmark does, notes its resident memory, trains ``--epochs`` epochs, and reports the
high-water mark (``VmHWM`` in ``/proc/self/status``, Linux only). The ratio is torchlab's
peak over plain's; "training growth" is the peak minus the memory before training, the
part the loop itself is responsible for. Target: torchlab's peak within 5% of plain's.

    .venv/bin/python benchmarks/peak_memory.py [--epochs 2] [--cases mlp-small ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import lightning_loop as lightning_side  # beside this file: the script's folder is on sys.path
import loop_overhead as bench
import torch

from torchlab.memory import keep_freed_memory

TARGET = 1.05


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS: now, VmHWM: the peak so far)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} field; this benchmark needs Linux.")


def train_alone(side: str, case_name: str, epochs: int) -> dict[str, int]:
    """Train one loop of one case in this process; its memory before and at the peak."""
    keep_freed_memory()  # what `torchlab train` does; the same for every side
    case = bench.CASES[case_name]
    split, spec = case.data()
    with tempfile.TemporaryDirectory(prefix="torchlab-bench-") as tmp:
        if side == "plain":
            loop = bench.PlainLoop(case, split, spec)
            before = status_kib("VmRSS")
            for _ in range(epochs):
                loop.epoch()
        elif side == "torchlab":
            trainer = bench.make_trainer(
                case, split, spec, epochs, folder=Path(tmp), tensorboard=False, extra=[]
            )
            before = status_kib("VmRSS")
            trainer.fit()
        else:
            loop = bench.make_lightning_loop(case, split, spec, epochs, Path(tmp))
            before = status_kib("VmRSS")
            for _ in range(epochs):
                loop.epoch()
            loop.close()
    return {"before_kib": before, "peak_kib": status_kib("VmHWM")}


def measure(side: str, case_name: str, epochs: int) -> dict[str, int]:
    """Run :func:`train_alone` in a fresh interpreter (Lightning's venv for Lightning)."""
    python = str(lightning_side.PYTHON) if side == "lightning" else sys.executable
    command = [python, __file__, "--child", side, "--cases", case_name, "--epochs", str(epochs)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{side} on {case_name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs each loop trains")
    parser.add_argument("--cases", nargs="+", default=list(bench.CASES), choices=list(bench.CASES))
    parser.add_argument("--no-lightning", action="store_true", help="skip the Lightning side")
    parser.add_argument("--check", action="store_true", help="exit 1 when a case misses")
    parser.add_argument(
        "--child", choices=["plain", "torchlab", "lightning"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(train_alone(args.child, args.cases[0], args.epochs)))
        return 0
    sides = ["plain", "torchlab"]
    if not args.no_lightning and lightning_side.PYTHON.exists():
        sides.append("lightning")
    print(
        f"torch {torch.__version__}, {args.epochs} epochs per process, "
        f"MALLOC_MMAP_MAX_={os.environ.get('MALLOC_MMAP_MAX_', 'unset')}, sides: {', '.join(sides)}"
    )
    print(
        "| case | plain peak MiB | torchlab peak MiB | lightning peak MiB | torchlab / plain "
        "| plain growth MiB | torchlab growth MiB | target | result |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    passed = True
    for name in args.cases:
        got = {side: measure(side, name, args.epochs) for side in sides}
        plain, ours = got["plain"], got["torchlab"]
        ratio = ours["peak_kib"] / plain["peak_kib"]
        passed &= ratio <= TARGET
        lightning = mib(got["lightning"]["peak_kib"]) if "lightning" in got else "-"
        print(
            f"| {name} | {mib(plain['peak_kib'])} | {mib(ours['peak_kib'])} | {lightning} | "
            f"{ratio:.3f}x | {mib(plain['peak_kib'] - plain['before_kib'])} | "
            f"{mib(ours['peak_kib'] - ours['before_kib'])} | <= {TARGET:.2f}x | "
            f"{'pass' if ratio <= TARGET else 'FAIL'} |",
            flush=True,
        )
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
