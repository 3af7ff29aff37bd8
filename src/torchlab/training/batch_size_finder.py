"""``data.batch_size: auto``: the batch size that trains the most samples per second.

Powers of two are tried from 16 upward, a few real training steps each (forward, backward,
optimizer), until one does not fit in memory, the training split is used up or the largest
candidate is reached; the fastest per sample wins. Model and optimizer are restored
afterwards, so the run starts exactly as it would with that size written in the config.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from torchlab.data import build_loader

CANDIDATES = tuple(2**k for k in range(4, 12))  # 16 .. 2048


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def samples_per_second(
    parts: Any, optimizer: torch.optim.Optimizer, batch_size: int, steps: int = 3
) -> float:
    """Training throughput at ``batch_size`` after one warm-up step."""
    loader = build_loader(
        parts.bundle.train,
        batch_size=batch_size,
        shuffle=True,
        seed=parts.config.seed,
        device=parts.device,
        drop_last=True,
        num_workers=0,
        pin_memory=False,
    )
    batches = loader.epoch(0)
    parts.model.train()
    started = 0.0
    for i in range(steps + 1):
        if i == 1:
            if parts.device.type == "cuda":
                torch.cuda.synchronize(parts.device)
            started = time.perf_counter()
        batch = next(batches).to(parts.device)
        parts.task.training_step(parts.model, batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if parts.device.type == "cuda":
        torch.cuda.synchronize(parts.device)
    return steps * batch_size / (time.perf_counter() - started)


def find_batch_size(parts: Any, optimizer: torch.optim.Optimizer) -> dict[int, float]:
    """Samples per second for each candidate that fits; weights and optimizer left untouched."""
    weights = copy.deepcopy(parts.model.state_dict())
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    rng = torch.get_rng_state()
    speeds: dict[int, float] = {}
    try:
        for size in CANDIDATES:
            if size * 4 > len(parts.bundle.train):  # warm-up plus 3 steps must fit in an epoch
                break
            try:
                speeds[size] = samples_per_second(parts, optimizer, size)
            except (RuntimeError, torch.OutOfMemoryError) as exc:
                if not is_out_of_memory(exc):
                    raise
                break
            finally:
                if parts.device.type == "cuda":
                    torch.cuda.empty_cache()
    finally:
        parts.model.load_state_dict(weights)
        optimizer.load_state_dict(optimizer_state)
        torch.set_rng_state(rng)
    return speeds


def fastest_batch_size(experiment: Any) -> tuple[int, dict[int, float]]:
    """The batch size with the most samples per second (``data.batch_size: auto``), and the
    speed of each size tried."""
    from torchlab.training.optim import build_optimizer

    optimizer = build_optimizer(experiment.config.optim, experiment.model)
    speeds = find_batch_size(experiment, optimizer)
    return (max(speeds, key=speeds.__getitem__) if speeds else CANDIDATES[0]), speeds
