"""Where training time goes: a few real training steps under ``torch.profiler``.

Each step runs the trainer's own ``training_step`` and ``optimizer_step`` inside named
ranges (data, forward, backward, optimizer), so the summary splits the step into those
phases, counts host-device synchronisations, and lists the costliest operators. The
Chrome trace (open it in chrome://tracing or https://ui.perfetto.dev) shows every op.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.profiler import ProfilerActivity, profile, record_function

PHASES = ("data", "forward", "backward", "optimizer")
# Reading a tensor's value into Python (``.item()``, ``float(t)``): on a GPU each one makes
# the host wait for the device; plus explicit synchronisations.
SYNC_OPS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize")


@dataclass(frozen=True)
class ProfileReport:
    steps: int
    phase_ms: dict[str, float]  # total milliseconds per phase over all profiled steps
    syncs: int
    top_ops: str  # torch.profiler's table of the costliest operators
    trace: Path

    def summary(self) -> str:
        total = sum(self.phase_ms.values()) or 1.0
        lines = [f"{'phase':<10} {'ms/step':>9} {'share':>7}"]
        for phase, ms in self.phase_ms.items():
            lines.append(f"{phase:<10} {ms / self.steps:>9.3f} {ms / total:>7.1%}")
        lines.append(
            f"values read back to Python (syncs on a GPU): {self.syncs} in {self.steps} steps"
        )
        return "\n".join(lines)


def profile_steps(trainer: Any, steps: int, trace: Path) -> ProfileReport:
    """Run ``steps`` training steps (after 2 warm-up steps) under the profiler."""
    activities = [ProfilerActivity.CPU]
    if trainer.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    trainer.model.train()
    batches = _endless(trainer)
    for _ in range(2):  # warm-up: first-call allocations and lazy initialisation
        _step(trainer, batches, labelled=False)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            _step(trainer, batches, labelled=True)
    prof.export_chrome_trace(str(trace))
    averages = prof.key_averages()
    by_name = {event.key: event for event in averages}
    phase_ms = {p: by_name[p].cpu_time_total / 1000 if p in by_name else 0.0 for p in PHASES}
    syncs = sum(by_name[name].count for name in SYNC_OPS if name in by_name)
    top = averages.table(sort_by="self_cpu_time_total", row_limit=12)
    return ProfileReport(steps, phase_ms, syncs, top, trace)


def _endless(trainer: Any) -> Any:
    epoch = 0
    while True:
        yield from trainer.train_loader.epoch(epoch)
        epoch += 1


def _step(trainer: Any, batches: Any, labelled: bool) -> None:
    def phase(name: str) -> Any:
        return record_function(name) if labelled else contextlib.nullcontext()

    with phase("data"):
        batch = next(batches).to(
            trainer.device, non_blocking=True, memory_format=trainer.memory_format
        )
    with phase("forward"):
        loss = trainer.training_step(batch)
    with phase("backward"):
        trainer.precision.scaler.scale(loss).backward()
    with phase("optimizer"):
        trainer.optimizer_step()
