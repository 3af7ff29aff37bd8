"""How long a config mistake takes to be reported, against importing torchlab's config layer.

Each case is a `torchlab train` command with one mistake in its config; each must exit 2 with
one `error: ` line. Every round runs the reference (`python -c "import torchlab.config"`),
then each case, in fresh processes, so a busy machine slows all of them alike; the table
shows medians and each case's ratio to the reference. A run with `-X importtime` per case
says whether the error path imported torch.

    .venv/bin/python benchmarks/startup.py                  # 3 rounds
    .venv/bin/python benchmarks/startup.py --repeats 5 --check   # exit 1 above --target
    .venv/bin/python benchmarks/startup.py --train          # also a good config's start-up

Target: every case within --target (default 2.5) times the reference, and without torch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
REFERENCE = [sys.executable, "-c", "import torchlab.config"]


def run(command: list[str], cwd: Path, importtime: bool = False) -> tuple[float, str, int]:
    """Wall seconds, stderr and exit status of ``command``."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    if importtime:
        command = [command[0], "-X", "importtime", *command[1:]]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done.stderr, done.returncode


def imported_torch(stderr: str) -> bool:
    return any(line.rpartition("|")[2].strip() == "torch" for line in stderr.splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", type=float, default=2.5)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--train", action="store_true", help="also time a good config to its first epoch line"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(SRC))
    from torchlab.testing import CONFIG_MISTAKES, MISTAKE_FILES

    cli = [sys.executable, "-m", "torchlab", "train"]
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        for name, text in MISTAKE_FILES.items():
            (cwd / name).write_text(text)
        times: dict[str, list[float]] = {"reference": [], **{case: [] for case in CONFIG_MISTAKES}}
        errors: dict[str, str] = {}
        for _ in range(args.repeats):
            times["reference"].append(run(REFERENCE, cwd)[0])
            for case, case_args in CONFIG_MISTAKES.items():
                seconds, stderr, status = run([*cli, *case_args], cwd)
                lines = stderr.strip().splitlines()
                if status != 2 or not lines or not lines[0].startswith("error: "):
                    print(f"{case}: expected an error line and exit 2, got {status}:\n{stderr}")
                    return 1
                times[case].append(seconds)
                errors[case] = lines[0] + (" [more lines]" if len(lines) > 1 else "")
        torch_on_error_path = {
            case: imported_torch(run([*cli, *case_args], cwd, importtime=True)[1])
            for case, case_args in CONFIG_MISTAKES.items()
        }
        train_seconds = first_epoch_seconds(cli, cwd) if args.train else None
    reference = statistics.median(times["reference"])
    print(f"reference `python -c 'import torchlab.config'`: {reference:.3f} s (median)")
    print("| mistake | median s | ratio | torch imported | error |")
    print("| --- | ---: | ---: | --- | --- |")
    missed = []
    for case in CONFIG_MISTAKES:
        seconds = statistics.median(times[case])
        ratio = seconds / reference
        torch = torch_on_error_path[case]
        if ratio > args.target or torch:
            missed.append(case)
        shown = errors[case] if len(errors[case]) < 90 else errors[case][:87] + "..."
        print(f"| {case} | {seconds:.3f} | {ratio:.2f}x | {'yes' if torch else 'no'} | `{shown}` |")
    if train_seconds is not None:
        print(f"good config (`train iris`) to its first epoch line: {train_seconds:.3f} s")
    print(f"VERDICT: {'missed on ' + ', '.join(missed) if missed else 'met'}")
    return 1 if missed and args.check else 0


def first_epoch_seconds(cli: list[str], cwd: Path) -> float:
    """Seconds from starting `torchlab train iris` to its first line of output."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    start = time.perf_counter()
    command = [*cli, "iris", "trainer.max_epochs=1", "trainer.progress=plain"]
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        proc.stdout.readline()
        seconds = time.perf_counter() - start
        proc.wait()
    return seconds


if __name__ == "__main__":
    sys.exit(main())
