"""What keeping freed memory buys: CPU step time with and without ``keep_freed_memory``.

With glibc's defaults every buffer over 32 MiB is mmap'ed on allocation and unmapped on
release, so large-batch CPU work pays for fresh zeroed pages on every operation.
``torchlab.memory.keep_freed_memory`` (applied by ``torchlab train/evaluate/predict/serve``)
turns that off. Each case runs in fresh processes, alternately off and on, ``--rounds``
times; a process times ``--steps`` steps after two warm-up steps and reports the median.
"Off" also removes ``MALLOC_MMAP_MAX_`` / ``MALLOC_TRIM_THRESHOLD_`` from the environment
(the Makefile exports them), so it is glibc's default behaviour.

Cases: torchvision MobileNetV2 and ResNet-18 (random weights) on batches of 32 RGB
224x224 images, inference under ``torch.inference_mode``; and one training step (forward,
backward, AdamW) of ResNet-18 on the same batch size at 112x112.

    .venv/bin/python benchmarks/allocator.py [--rounds 2] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

CASES = {  # name -> (torchvision model, image size, training?)
    "mobilenet_v2 inference b32": ("mobilenet_v2", 224, False),
    "resnet18 inference b32": ("resnet18", 224, False),
    "resnet18 train step b32": ("resnet18", 112, True),
}
BATCH = 32
ALLOCATOR_VARIABLES = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")


def make_step(name: str) -> Callable[[], None]:
    """One inference batch or one training step of the case."""
    import torchvision

    arch, size, training = CASES[name]
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=10)
    images = torch.randn(BATCH, 3, size, size)
    if not training:
        model.eval()

        def infer() -> None:
            with torch.inference_mode():
                model(images)

        return infer
    target = torch.randint(0, 10, (BATCH,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train() -> None:
        loss = torch.nn.functional.cross_entropy(model(images), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return train


def child(name: str, steps: int, threads: int | None) -> dict[str, float | bool]:
    """Time the case in this process (the parent set the allocator up through the env)."""
    from torchlab.memory import keep_freed_memory, set_threads

    set_threads(threads)
    kept = keep_freed_memory()  # a no-op under TORCHLAB_KEEP_FREED_MEMORY=0
    step = make_step(name)
    for _ in range(2):
        step()
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return {"seconds": statistics.median(seconds), "kept": kept}


def run(name: str, keep: bool, steps: int, threads: int | None) -> float:
    """Median step seconds of the case in a fresh process with the allocator on or off."""
    env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_VARIABLES}
    env["TORCHLAB_KEEP_FREED_MEMORY"] = "1" if keep else "0"
    command = [sys.executable, __file__, "--child", name, "--steps", str(steps)]
    if threads is not None:
        command += ["--threads", str(threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} (keep={keep}) failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["kept"] != keep:
        raise RuntimeError(f"{name}: keep_freed_memory returned {result['kept']}, wanted {keep}.")
    return float(result["seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="off/on process pairs per case")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per process")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    parser.add_argument("--child", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.threads)))
        return 0
    print(
        f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads, "
        f"{args.rounds} rounds x "
        f"{args.steps} timed steps per process"
    )
    print("| case | glibc default s/step | kept freed memory s/step | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for name in args.cases:
        off: list[float] = []
        on: list[float] = []
        for _ in range(args.rounds):  # alternate, so load from other processes hits both
            off.append(run(name, False, args.steps, args.threads))
            on.append(run(name, True, args.steps, args.threads))
        off_s, on_s = statistics.median(off), statistics.median(on)
        print(f"| {name} | {off_s:.3f} | {on_s:.3f} | {off_s / on_s:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
