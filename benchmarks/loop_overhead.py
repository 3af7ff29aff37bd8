"""Training-loop overhead: torchlab's ``Trainer`` against a plain PyTorch loop and Lightning.

Each case trains the same model (same initial weights, AdamW with the same rate) on the
same tensors three ways in one process, alternating epoch by epoch so that load from other
processes on a shared machine hits all alike:

* plain: ``DataLoader(TensorDataset(x, y), batch_size=B, shuffle=True)``, forward,
  ``F.cross_entropy``, ``zero_grad``, backward, ``step``;
* torchlab: the real :class:`~torchlab.training.loop.Trainer` over ``build_loader`` (a
  ``TensorSplit``, so the batched in-memory loader), the task and model from the
  registries, and a ``MetricsLogger`` writing to a temporary folder as a run does;
* lightning: a ``LightningModule`` with the same model and AdamW, ``self.log`` of the
  epoch loss to a ``CSVLogger``, ``Trainer(accelerator="cpu", devices=1)`` over the same
  ``DataLoader`` as plain (``lightning_loop.py``). Lightning lives only in the benchmark's
  own environment: ``--setup`` creates ``benchmarks/.venv-lightning`` and this script
  re-runs itself with that interpreter whenever it exists (``--no-lightning`` skips it).

Every epoch is timed; the first epoch of each run is a warm-up and dropped. The ratio is
the median torchlab epoch over the median plain epoch (below 1: torchlab is faster); the
fastest-epoch ratio beside it is the least disturbed by other processes. Targets: at most
0.8x plain on the MLP cases, at most 1.03x on the CNN cases, and below 1x Lightning on all.

    .venv/bin/python benchmarks/loop_overhead.py --setup     # once: the Lightning venv
    .venv/bin/python benchmarks/loop_overhead.py [--epochs 3] [--repeats 3] [--check]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning_loop as lightning_side  # beside this file: the script's folder is on sys.path
import torch
import torch.nn.functional as F
from machine import cpu_model, cpu_seconds
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchlab.config import Component, OptimConfig, ScheduleConfig, TaskConfig, TrainerConfig
from torchlab.data import DataSpec, TensorSplit, build_loader
from torchlab.data.base import SourceContext
from torchlab.memory import keep_freed_memory
from torchlab.models import build_model
from torchlab.tasks import build_task
from torchlab.training.callbacks import Callback
from torchlab.training.loggers import MetricsLogger, TensorBoardLogger
from torchlab.training.loop import Trainer
from torchlab.training.optim import build_optimizer
from torchlab.training.schedules import build_schedule

SEED = 0
OPTIM = OptimConfig(name="adamw", lr=1e-3)  # one parameter group: no weight decay to split


@dataclass(frozen=True)
class Case:
    """One model on one data set; ``target`` is the highest acceptable time ratio."""

    name: str
    data: Callable[[], tuple[TensorSplit, DataSpec]]
    model: Component
    batch_size: int
    target: float
    max_repeats: int | None = None  # fewer repeats for a slow case keep the run short


def teacher_data(rows: int, features: int = 64, classes: int = 10) -> tuple[TensorSplit, DataSpec]:
    """Gaussian inputs labelled by a random linear teacher: (rows, features), (rows,)."""
    generator = torch.Generator().manual_seed(SEED)
    inputs = torch.randn(rows, features, generator=generator)
    teacher = torch.randn(features, classes, generator=generator)
    spec = DataSpec((features,), "categorical", class_names=tuple(map(str, range(classes))))
    return TensorSplit(inputs, (inputs @ teacher).argmax(dim=1)), spec


def digits_at(size: int) -> tuple[TensorSplit, DataSpec]:
    """The training split of torchlab's ``digits`` source upsampled to (1, size, size)."""
    from torchlab.data.vision.images import (
        digits,  # the builder itself: the registry imports every source
    )

    context = SourceContext(val=0.1, test=0.2, stratify=True, seed=SEED, target_kind="categorical")
    bundle = digits(context, size=size)
    return bundle.train, bundle.spec


def mlp(*hidden: int) -> Component:
    return Component(name="mlp", hidden=hidden)


def cnn(*channels: int) -> Component:
    return Component(name="cnn", channels=channels)


CASES = {
    case.name: case
    for case in (
        Case("mlp-large", partial(teacher_data, 50_000), mlp(256, 256), batch_size=256, target=0.8),
        Case("mlp-small", partial(teacher_data, 20_000), mlp(32), batch_size=64, target=0.8),
        Case("cnn-digits32", partial(digits_at, 32), cnn(32, 64), batch_size=64, target=1.03),
        # torchvision's resnet18 (random weights, 10-way head) on 1,257 digits at 64x64.
        Case(
            "resnet18-digits64",
            partial(digits_at, 64),
            Component(name="resnet18"),
            batch_size=64,
            target=1.03,
            max_repeats=2,
        ),
    )
}


def fresh_model(case: Case, spec: DataSpec) -> nn.Module:
    """The case's model from the registry, with the same initial weights on every call."""
    torch.manual_seed(SEED)
    return build_model(case.model, spec, spec.num_outputs)


class PlainLoop:
    """A hand-written loop over a per-sample ``DataLoader``, one epoch per call."""

    def __init__(self, case: Case, split: TensorSplit, spec: DataSpec) -> None:
        self.model = fresh_model(case, spec)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=OPTIM.lr, weight_decay=OPTIM.weight_decay
        )
        dataset = TensorDataset(split.inputs, split.target)
        self.loader = DataLoader(dataset, batch_size=case.batch_size, shuffle=True)

    def epoch(self) -> float:
        """Train one epoch; returns its seconds."""
        start = time.perf_counter()
        self.model.train()
        loss_sum = torch.zeros(())
        for inputs, target in self.loader:
            loss = F.cross_entropy(self.model(inputs), target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach()
        loss_sum.item()
        return time.perf_counter() - start


class Interleave(Callback):
    """Times each torchlab epoch, then trains one epoch of each other loop outside that time.

    The loops alternate epoch by epoch, so a burst of load from other processes on a
    shared machine hits all alike. Put it last so torchlab's time covers its loggers.
    """

    def __init__(self, others: dict[str, Any]) -> None:
        self.others = others  # name -> an object whose epoch() trains one epoch
        self.started = 0.0
        self.times: dict[str, list[float]] = {"torchlab": [], **{name: [] for name in others}}

    def on_epoch_start(self, trainer: Any) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        self.times["torchlab"].append(time.perf_counter() - self.started)
        for name, loop in self.others.items():
            self.times[name].append(loop.epoch())


def make_lightning_loop(
    case: Case, split: TensorSplit, spec: DataSpec, epochs: int, folder: Path
) -> Any:
    """Lightning's ``Trainer`` on the case, paused before each of its ``epochs`` epochs."""
    return lightning_side.LightningLoop(
        fresh_model(case, spec),
        split.inputs,
        split.target,
        batch_size=case.batch_size,
        epochs=epochs,
        lr=OPTIM.lr,
        weight_decay=OPTIM.weight_decay,
        folder=folder,
    )


def make_trainer(
    case: Case,
    split: TensorSplit,
    spec: DataSpec,
    epochs: int,
    *,
    folder: Path,
    tensorboard: bool,
    extra: list[Callback],
) -> Trainer:
    """torchlab's ``Trainer`` built as ``torchlab.engine.fit`` builds it; ``extra`` callbacks come last."""
    device = torch.device("cpu")
    task = build_task(TaskConfig(name="classification"), spec)
    model = fresh_model(case, spec)
    optimizer = build_optimizer(OPTIM, model)
    loader = build_loader(split, batch_size=case.batch_size, shuffle=True, seed=SEED, device=device)
    schedule = build_schedule(ScheduleConfig(), optimizer, len(loader), epochs)
    callbacks: list[Callback] = [MetricsLogger(folder / "metrics.jsonl")]
    if tensorboard:
        callbacks.append(TensorBoardLogger(folder / "tensorboard"))
    config = TrainerConfig(max_epochs=epochs, device="cpu", progress="none", monitor="train/loss")
    return Trainer(
        config,
        model=model,
        task=task,
        optimizer=optimizer,
        schedule=schedule,
        train_loader=loader,
        val_loader=None,
        device=device,
        callbacks=[*callbacks, *extra],
    )


def run_sides(
    case: Case,
    split: TensorSplit,
    spec: DataSpec,
    epochs: int,
    *,
    folder: Path,
    tensorboard: bool,
    lightning: bool,
) -> dict[str, list[float]]:
    """Seconds per epoch of each loop, alternating epoch by epoch."""
    others: dict[str, Any] = {"plain": PlainLoop(case, split, spec)}
    if lightning:
        others["lightning"] = make_lightning_loop(case, split, spec, epochs, folder)
    interleave = Interleave(others)
    trainer = make_trainer(
        case, split, spec, epochs, folder=folder, tensorboard=tensorboard, extra=[interleave]
    )
    trainer.fit()
    if lightning:
        others["lightning"].close()
    return interleave.times


@dataclass(frozen=True)
class Result:
    """The timed epochs of one case and what they say."""

    case: Case
    rows: int
    plain: list[float]  # seconds of every timed epoch (warm-up epochs dropped)
    torchlab: list[float]
    lightning: list[float]  # empty when Lightning was not run
    others: float  # CPU cores kept busy by other processes, on average, while this case ran

    @property
    def ratio(self) -> float:
        return statistics.median(self.torchlab) / statistics.median(self.plain)

    @property
    def lightning_ratio(self) -> float:
        """Median torchlab epoch over median Lightning epoch (NaN without Lightning)."""
        if not self.lightning:
            return math.nan
        return statistics.median(self.torchlab) / statistics.median(self.lightning)

    @property
    def best_ratio(self) -> float:
        """Fastest epoch over fastest epoch: the least disturbed by other processes."""
        return min(self.torchlab) / min(self.plain)

    @property
    def passed(self) -> bool:
        """Within the target against plain and, when it ran, faster than Lightning."""
        return self.ratio <= self.case.target and not self.lightning_ratio >= 1.0


def measure(case: Case, *, epochs: int, repeats: int, tensorboard: bool, lightning: bool) -> Result:
    """``repeats`` fresh sets of runs, each alternating ``epochs`` + 1 epochs of every loop."""
    split, spec = case.data()
    machine, mine = cpu_seconds()
    started = time.perf_counter()
    times: dict[str, list[float]] = {"plain": [], "torchlab": [], "lightning": []}
    for _ in range(min(repeats, case.max_repeats or repeats)):
        with tempfile.TemporaryDirectory(prefix="torchlab-bench-") as tmp:
            run = run_sides(
                case,
                split,
                spec,
                epochs + 1,
                folder=Path(tmp),
                tensorboard=tensorboard,
                lightning=lightning,
            )
        for name, seconds in run.items():
            times[name] += seconds[1:]  # the first epoch of each run is a warm-up
    machine_now, mine_now = cpu_seconds()
    others = ((machine_now - machine) - (mine_now - mine)) / (time.perf_counter() - started)
    others = max(others, 0.0)  # clock-tick rounding can go below 0; NaN stays NaN
    return Result(case, len(split), times["plain"], times["torchlab"], times["lightning"], others)


def table(results: list[Result]) -> str:
    lines = [
        "| case | rows | batch | plain s/epoch | torchlab s/epoch | lightning s/epoch "
        "| vs plain | fastest-epoch vs plain | vs lightning | target | result | others |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in results:
        lightning = f"{statistics.median(r.lightning):.3f}" if r.lightning else "-"
        versus = f"{r.lightning_ratio:.2f}x" if r.lightning else "-"
        lines.append(
            f"| {r.case.name} | {r.rows:,} | {r.case.batch_size} | {statistics.median(r.plain):.3f} | "
            f"{statistics.median(r.torchlab):.3f} | {lightning} | {r.ratio:.2f}x | "
            f"{r.best_ratio:.2f}x | {versus} | <= {r.case.target:.2f}x plain, < 1x lightning | "
            f"{'pass' if r.passed else 'FAIL'} | {r.others:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=3, help="timed epochs per run, after one warm-up epoch"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="fresh pairs of runs per case, each alternating plain and torchlab epochs",
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        default=list(CASES),
        choices=list(CASES),
        metavar="CASE",
        help=f"cases to run (default: all of {', '.join(CASES)})",
    )
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="also give torchlab's run a TensorBoardLogger, as torchlab train does",
    )
    parser.add_argument("--no-lightning", action="store_true", help="skip the Lightning side")
    parser.add_argument(
        "--setup", action="store_true", help=f"create {lightning_side.VENV} and exit"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a case misses its target")
    args = parser.parse_args(argv)
    for name in ("epochs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer; received {getattr(args, name)}.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup:
        lightning_side.setup()
        return 0
    lightning = lightning_side.enabled(__file__, argv, skip=args.no_lightning)
    kept = keep_freed_memory()  # what `torchlab train` does; applies to both loops alike
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_model()}, "
        f"keep_freed_memory={kept}, {args.epochs} timed epochs x {args.repeats} repeats "
        f"(+1 warm-up epoch per run), loggers: metrics{' + tensorboard' if args.tensorboard else ''}"
        + (f", lightning {lightning_side.version()}" if lightning else ", no lightning"),
        flush=True,
    )
    results = []
    for name in args.cases:
        started = time.perf_counter()
        results.append(
            measure(
                CASES[name],
                epochs=args.epochs,
                repeats=args.repeats,
                tensorboard=args.tensorboard,
                lightning=lightning,
            )
        )
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(table(results))
    busiest = max(r.others for r in results)
    if busiest > 0.2:
        print(
            f"note: other processes kept up to {busiest:.1f} cores busy during the run (column "
            "'others'), so the figures are noisy; rerun on an idle machine.",
            file=sys.stderr,
        )
    return 1 if args.check and not all(r.passed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
