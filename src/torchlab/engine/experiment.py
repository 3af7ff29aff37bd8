"""An :class:`Experiment`: everything built from a config before training starts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchlab.config import RunConfig
from torchlab.memory import set_threads

if TYPE_CHECKING:
    import torch
    from torch import nn

    from torchlab.data.base import DataBundle
    from torchlab.data.loaders import Loader
    from torchlab.distributed import World
    from torchlab.run import Run
    from torchlab.tasks.base import Task


@dataclass(frozen=True)
class Experiment:
    """A config with the data, task and model built from it, on its device.

    Attributes:
        config: The validated config (``data.batch_size`` and ``optim.lr`` resolved once
            their ``auto`` search has run).
        bundle: The data: splits, spec, featurizer, collate and the data's own callbacks.
        task: Loss, metrics and predictions of the config's task.
        model: The model, on ``device``.
        device: Where training runs.
        world: This process among the DDP ranks (one process: a world of one).
    """

    config: RunConfig
    bundle: DataBundle
    task: Task
    model: nn.Module
    device: torch.device
    world: World


def build_experiment(
    config: RunConfig, run_dir: Path | None = None, *, bundle: DataBundle | None = None
) -> Experiment:
    """Seed, then build data, task and model in a fixed order (so a resume matches).

    ``run_dir`` is the saved run being rebuilt, whose fitted files (e.g. a tokenizer) the
    data source reuses. ``bundle`` is data already in memory (``torchlab.sklearn``'s arrays),
    used instead of building ``config.data.source``.
    """
    import torch

    from torchlab.data.base import Fold, SourceContext
    from torchlab.distributed import init_world
    from torchlab.engine.calibration import check_calibration
    from torchlab.models import build_model, input_needs
    from torchlab.registry import DATASETS, TASKS
    from torchlab.tasks import build_task
    from torchlab.training.precision import Precision, resolve_device
    from torchlab.training.state import seed_everything

    seed_everything(config.seed)
    set_threads(config.trainer.threads)
    device = resolve_device(config.trainer.device)
    world, device = init_world(device, config.trainer.distributed_timeout_s)
    Precision(config.trainer.precision, device)  # fail on a bad combination before any work
    if config.trainer.deterministic:  # non-deterministic ops are reported as warnings
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not config.trainer.deterministic
    task_class = TASKS.get(config.task.name, "task.name").builder
    check_calibration(config.task, task_class.metric_kind)
    if bundle is None:
        target_kind = task_class.target_kind
        split = config.data.split
        context = SourceContext(
            split.val,
            split.test,
            split.stratify,
            config.seed if split.seed is None else split.seed,
            target_kind,
            input_needs(config.model),
            run_dir,
            None if split.fold is None else Fold(**split.fold.model_dump()),
        )
        bundle = DATASETS.build(config.data.source, "data.source", context)
    task = build_task(config.task, bundle.spec)
    model = build_model(config.model, bundle.spec, task.num_outputs).to(device)
    if config.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if world.distributed:  # same initial weights everywhere; own dropout streams per rank
        seed_everything(config.seed + world.rank)
    return Experiment(config, bundle, task, model, device, world)


def loaders(experiment: Experiment) -> dict[str, Loader]:
    """The train loader, and val and test loaders for the splits that are not empty."""
    from torchlab.data import build_loader

    data = experiment.config.data
    common: dict[str, Any] = {
        "seed": experiment.config.seed,
        "device": experiment.device,
        "num_workers": data.num_workers,
        "pin_memory": data.pin_memory,
        "world": experiment.world,
        "collate": experiment.bundle.collate,
    }
    out = {
        "train": build_loader(
            experiment.bundle.train,
            batch_size=data.batch_size,
            shuffle=True,
            drop_last=data.drop_last,
            **common,
        )
    }
    for name in ("val", "test"):
        split = experiment.bundle.split(name)
        if len(split):
            out[name] = build_loader(
                split, batch_size=data.eval_batch_size or data.batch_size, shuffle=False, **common
            )
    return out


def rebuilt(run: Run) -> Experiment:
    """A completed run's experiment rebuilt, with the run's best weights in its model (and
    its calibration temperature, when it has one)."""
    from dataclasses import replace

    from torchlab.engine.calibration import with_calibration
    from torchlab.training.checkpoint import load_into, load_weights

    experiment = build_experiment(run.config, run.dir)
    weights = run.dir / "model.safetensors"
    load_into(experiment.model, load_weights(weights), weights)
    model = with_calibration(experiment.model, run.dir).to(experiment.device)
    return replace(experiment, model=model)


def load_trained(run: Run, calibrated: bool = True) -> Any:
    """A run's trained model with its best weights, in eval mode on the CPU (nothing else
    of the experiment is built: no data is read). ``calibrated``: with the run's
    calibration temperature, when it has one (the model predictions come from)."""
    from torchlab.engine.calibration import with_calibration
    from torchlab.models import build_model
    from torchlab.tasks import build_task
    from torchlab.training.checkpoint import load_into, load_weights

    task = build_task(run.config.task, run.spec)
    model = build_model(run.config.model, run.spec, task.num_outputs, trained=True)
    weights = run.dir / "model.safetensors"
    load_into(model, load_weights(weights), weights)
    return with_calibration(model, run.dir).eval() if calibrated else model.eval()
