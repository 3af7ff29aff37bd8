"""The public verbs: train, evaluate and predict. The CLI is a thin layer over these."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torchlab import notices
from torchlab.config import RunConfig, config_for_resume, load_config, local_paths
from torchlab.data.fingerprint import changes, fingerprints
from torchlab.distributed import barrier, broadcast_object, failures_named, shutdown
from torchlab.errors import ConfigError, DataError, RunError
from torchlab.files import write_json, write_text
from torchlab.memory import keep_freed_memory, set_threads
from torchlab.notices import notice
from torchlab.run import Run, create_run, environment, read_json

# Keys that may differ between a saved run and the command that resumes it: the budget, and
# settings that only change outputs or speed.
RESUMABLE_CHANGES = {
    "trainer.max_epochs", "trainer.progress", "trainer.device", "trainer.threads",
    "trainer.log_every_n_steps", "trainer.keep_checkpoints",
}  # fmt: skip
# Schedules whose whole course is fixed by trainer.max_epochs.
SCHEDULES_OVER_MAX_EPOCHS = {"cosine", "onecycle"}


@dataclass
class Parts:
    """Everything built from a config before training starts."""

    config: RunConfig
    bundle: Any
    task: Any
    model: Any
    device: Any
    world: Any = None  # torchlab.distributed.World: this process among the DDP ranks


def build(config: RunConfig, run_dir: Path | None = None) -> Parts:
    """Seed, then build data, task and model in a fixed order (so a resume matches).

    ``run_dir`` is the saved run being rebuilt, whose fitted files (e.g. a tokenizer) the
    data source reuses.
    """
    import torch

    from torchlab.data.base import SourceContext
    from torchlab.distributed import init_world
    from torchlab.models import build_model
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
    target_kind = TASKS.get(config.task.name, "task.name").builder.target_kind
    split = config.data.split
    context = SourceContext(
        split.val, split.test, split.stratify, config.seed, target_kind, config.model, run_dir
    )
    bundle = DATASETS.build(config.data.source, "data.source", context)
    task = build_task(config.task, bundle.spec)
    model = build_model(config.model, bundle.spec, task.num_outputs).to(device)
    if config.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if world.distributed:  # same initial weights everywhere; own dropout streams per rank
        seed_everything(config.seed + world.rank)
    return Parts(config, bundle, task, model, device, world)


def loaders(parts: Parts) -> dict[str, Any]:
    from torchlab.data import build_loader

    data = parts.config.data
    common = {
        "seed": parts.config.seed,
        "device": parts.device,
        "num_workers": data.num_workers,
        "pin_memory": data.pin_memory,
        "world": parts.world,
        "collate": parts.bundle.collate,
    }
    out = {
        "train": build_loader(
            parts.bundle.train,
            batch_size=data.batch_size,
            shuffle=True,
            drop_last=data.drop_last,
            **common,
        )
    }
    for name in ("val", "test"):
        split = parts.bundle.split(name)
        if len(split):
            out[name] = build_loader(
                split, batch_size=data.eval_batch_size or data.batch_size, shuffle=False, **common
            )
    return out


@notices.collected  # the run's summary and report list what the user was warned of
def train(
    recipe: str | Path | None = None,
    overrides: list[str] | dict[str, Any] = (),
    *,
    resume: str | Path | None = None,
    output_dir: str | Path | None = None,
    callbacks: Sequence[Any] = (),
    trust_code: bool = False,
) -> Run:
    """Train a recipe (or YAML file) and return its completed :class:`Run`.

    Args:
        recipe: A built-in recipe name or a YAML path; optional when resuming.
        overrides: Dotted overrides, ``["optim.lr=1e-3"]`` or ``{"optim.lr": 1e-3}``.
        resume: A run directory to continue from its last checkpoint.
        output_dir: Where new runs go (default: the config's ``output_dir``, ``runs``).
        callbacks: Extra :class:`~torchlab.training.callbacks.Callback` objects (e.g. a
            tuner's pruning hook), called after the config's own callbacks.
        trust_code: Let the resumed run import code it did not record (``--trust-code``).
    """
    keep_freed_memory()
    from torchlab.rl import api as rl

    if rl.is_rl_source(recipe, resume):  # an `agent:` section: reinforcement learning
        return rl.train(
            recipe,
            overrides,
            resume=resume,
            output_dir=output_dir,
            callbacks=callbacks,
            trust_code=trust_code,
        )
    if resume is None and recipe is not None:
        resume = elastic_restart_of(load_config(recipe, overrides), output_dir)
    if resume is not None:
        run = Run(resume, trust_code=trust_code)
        run.hold()  # before anything of it changes: one process trains a run at a time
        config = resumed_config(run, recipe, overrides)
    else:
        if recipe is None:
            raise ConfigError("Name a recipe or YAML file to train, or give --resume RUN_DIR.")
        config = load_config(recipe, overrides)
        run = None
    parts = build(config, run.dir if run is not None else None)
    if config.data.batch_size == "auto":  # the fastest per sample; config.yaml records it
        from torchlab.training.batch_size_finder import resolve_auto_batch_size

        speeds = resolve_auto_batch_size(parts)
        config = parts.config
        shown = ", ".join(f"{size}: {rate:,.0f}/s" for size, rate in speeds.items())
        print(f"data.batch_size: auto picked {config.data.batch_size} ({shown})")
    lr_test = None
    if config.optim.lr == "auto":  # the range test picks it; config.yaml records the number
        from torchlab.training.lr_finder import resolve_auto_lr

        lr_test = resolve_auto_lr(parts, loaders(parts)["train"])
        config = parts.config
    if run is None and not parts.world.is_main:
        run = Run(broadcast_object(None))  # rank 0 creates the folder and writes its files
    elif run is None:
        run = create_run(config, output_dir, lambda folder: write_start(folder, parts, lr_test))
        mark_elastic_run(config, output_dir, run.dir)
        broadcast_object(str(run.dir))
    elif parts.world.is_main:
        write_text(run.dir / "config.yaml", config.to_yaml())
        run.__dict__.pop("config", None)
    try:
        with (
            run.recording_failure(new=resume is None, main=parts.world.is_main),
            failures_named(parts.world),
        ):
            fit(run, parts, resuming=resume is not None, extra_callbacks=list(callbacks))
        marker = elastic_marker(config, output_dir)
        if marker is not None and parts.world.is_main:
            marker.unlink(missing_ok=True)  # done: a later job with this id starts afresh
    finally:
        run.release()
        shutdown()
    return run


def write_start(folder: Path, parts: Parts, lr_test: Any) -> None:
    """The files a new run holds before it trains: environment, featurizer, data, spec."""
    config = parts.config
    if lr_test is not None:
        lr_test.save(folder)
    write_json(folder / "environment.json", environment(parts.device, config.seed, parts.world))
    write_json(folder / "featurizer.json", parts.bundle.featurizer.to_dict())
    if hasattr(parts.bundle.featurizer, "save"):  # side files, e.g. tokenizer.json
        parts.bundle.featurizer.save(folder)
    files = fingerprints(local_paths(config))  # to notice data that changes later
    write_json(
        folder / "data.json", {**parts.bundle.summary, **({"files": files} if files else {})}
    )
    write_json(folder / "spec.json", asdict(parts.bundle.spec))


def elastic_marker(config: RunConfig, output_dir: str | Path | None) -> Path | None:
    """Where a ``torchrun`` job notes its run folder, so its restarts resume it."""
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    root = Path(output_dir or config.output_dir) / config.name
    return root / f".torchrun-{job}" if job else None


def mark_elastic_run(config: RunConfig, output_dir: str | Path | None, path: Path) -> None:
    marker = elastic_marker(config, output_dir)
    if marker is not None:
        write_text(marker, str(path))


def elastic_restart_of(config: RunConfig, output_dir: str | Path | None) -> Path | None:
    """The run folder of this ``torchrun`` job when torchrun restarted it after a failure."""
    marker = elastic_marker(config, output_dir)
    if marker is None or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0:
        return None
    return Path(marker.read_text()) if marker.is_file() else None


def resumed_config(run: Run, recipe: str | Path | None, overrides: Any) -> RunConfig:
    """The saved config, allowing only changes that keep the run the same run."""
    saved = run.config
    wanted = config_for_resume(saved, recipe, overrides, RESUMABLE_CHANGES, run.dir)
    longer = wanted.trainer.max_epochs != saved.trainer.max_epochs
    if longer and saved.schedule.name in SCHEDULES_OVER_MAX_EPOCHS:
        raise ConfigError(
            f"Schedule '{saved.schedule.name}' of '{run.dir}' is laid out over its "
            f"{saved.trainer.max_epochs} epochs, so trainer.max_epochs cannot change on resume; "
            "start a new run to train longer."
        )
    if run.status == "completed" and wanted.trainer.max_epochs <= saved.trainer.max_epochs:
        raise RunError(
            f"Run '{run.dir}' already completed {saved.trainer.max_epochs} epochs; "
            "raise trainer.max_epochs to train it further."
        )
    return wanted


def monitored(parts: Parts, data: dict[str, Any]) -> tuple[str, str]:
    """The metric that picks the best epoch, and whether lower or higher is better."""
    trainer = parts.config.trainer
    monitor = trainer.monitor
    if "val" not in data and monitor.startswith("val/"):
        notice(
            f"There is no validation split, so trainer.monitor '{monitor}' is replaced by "
            "'train/loss'.",
        )
        monitor = "train/loss"
    mode = parts.task.mode_for(monitor) if trainer.monitor_mode == "auto" else trainer.monitor_mode
    return monitor, mode


def make_trainer(
    run: Run, parts: Parts, data: dict[str, Any], extra_callbacks: list[Any] = ()
) -> tuple[Any, Any]:
    """The trainer with its optimizer, schedule and callbacks, and the best-weights callback."""
    from torchlab.registry import CALLBACKS
    from torchlab.training.callbacks import BestWeights, Checkpointer, EarlyStopping
    from torchlab.training.loggers import MetricsLogger, ProgressBar, TensorBoardLogger
    from torchlab.training.loop import Trainer
    from torchlab.training.optim import build_optimizer
    from torchlab.training.schedules import build_schedule

    config = parts.config.trainer
    monitor, mode = monitored(parts, data)
    optimizer = build_optimizer(parts.config.optim, parts.model)
    steps = -(-len(data["train"]) // config.accumulate_grad_batches)
    schedule = build_schedule(parts.config.schedule, optimizer, steps, config.max_epochs)
    if "val" not in data and schedule.monitor and schedule.monitor.startswith("val/"):
        schedule.monitor = "train/loss"

    # Loggers come before the checkpointer, so a checkpoint covers what was logged; only
    # rank 0 writes files.
    callbacks: list[Any] = []
    if parts.world.is_main:
        callbacks += [ProgressBar(config.progress)] if config.progress != "none" else []
        callbacks += [
            MetricsLogger(run.dir / "metrics.jsonl"),
            TensorBoardLogger(run.dir / "tensorboard"),
        ]
    if config.early_stopping is not None:
        stop = config.early_stopping
        callbacks.append(
            EarlyStopping(
                monitor=monitor, mode=mode, patience=stop.patience, min_delta=stop.min_delta
            )
        )
    callbacks += [
        CALLBACKS.build(c, f"trainer.callbacks.{i}") for i, c in enumerate(config.callbacks)
    ]
    callbacks += parts.bundle.callbacks  # e.g. listing skipped unreadable images
    callbacks += extra_callbacks
    best = BestWeights(run.dir / "model.safetensors", monitor, mode)
    callbacks += [
        best,
        Checkpointer(
            run.dir / "checkpoints", config.checkpoint_every_n_steps, config.keep_checkpoints
        ),
    ]
    trainer = Trainer(
        config,
        model=parts.model,
        task=parts.task,
        optimizer=optimizer,
        schedule=schedule,
        train_loader=data["train"],
        val_loader=data.get("val"),
        device=parts.device,
        callbacks=callbacks,
        world=parts.world,
    )
    return trainer, best


def restore(run: Run, parts: Parts, trainer: Any) -> None:
    """Load the run's newest checkpoint into the model and the trainer."""
    from torchlab.training.checkpoint import latest_checkpoint, load_checkpoint, load_into

    latest = latest_checkpoint(run.dir / "checkpoints")
    if latest is not None:
        checkpoint = load_checkpoint(latest)
        load_into(parts.model, checkpoint.weights, latest)
        trainer.load_state_dict(checkpoint.state)
    if parts.world.is_main:
        run.set_status("running", resumed_from=str(latest) if latest else None, error=None)


def fit(run: Run, parts: Parts, resuming: bool, extra_callbacks: list[Any] = ()) -> None:
    """Train, test the best weights, fit the baseline and write the summary (last)."""
    from torchlab.baselines import run_baseline
    from torchlab.report.plots import learning_curves
    from torchlab.training.checkpoint import load_into, load_weights

    data = loaders(parts)
    trainer, best = make_trainer(run, parts, data, extra_callbacks)
    if resuming:
        restore(run, parts, trainer)
    trainer.fit()

    weights = run.dir / "model.safetensors"
    load_into(parts.model, load_weights(weights), weights)
    test = {}
    if "test" in data:
        test = trainer.evaluate(data["test"], "test", extra_metrics=parts.task.report_metrics)
    if not parts.world.is_main:
        barrier()  # wait until rank 0 has written the summary
        return
    learning_curves(run.history, run.dir / "learning_curves.png")
    baseline = run_baseline(parts.config.baseline, parts.bundle)
    summary = {
        "recipe": parts.config.name,
        "test": test,
        "baseline": baseline.best if baseline else None,
        "baselines": baseline.table if baseline else [],
        "baseline_note": baseline.note if baseline else None,  # why there is none
        "epochs": trainer.state.epoch,
        "steps": trainer.state.global_step,
        "best_epoch": best.best_epoch + 1,  # 1-based, as the progress bar counts
        "monitor": best.tracker.monitor,
        "train_seconds": round(trainer.state.seconds, 3),  # every segment of a resumed run
        "parameters": sum(p.numel() for p in parts.model.parameters()),
        "notices": notices.current(),
    }
    for callback in parts.bundle.callbacks:  # the data's own facts (e.g. skipped files)
        summary.update(getattr(callback, "summary", dict)())
    write_json(run.dir / "summary.json", summary)
    from torchlab.report.html import write_run_reports

    write_run_reports(run, parts, data)  # report.html and MODEL_CARD.md
    run.set_status("completed")
    barrier()


def evaluate(
    run: str | Path | Run,
    split: str = "test",
    *,
    episodes: int | None = None,
    trust_code: bool = False,
) -> dict[str, Any]:
    """Metrics of a run's best weights on one split (``train``, ``val`` or ``test``).

    For an RL run: mean and std of return over ``episodes`` deterministic episodes.
    ``trust_code`` lets the run import code it did not record (``--trust-code``).
    """
    from torchlab.training.checkpoint import load_into, load_weights

    keep_freed_memory()
    run = run if isinstance(run, Run) else Run(run, trust_code=trust_code)
    if getattr(run.config, "agent", None) is not None:  # an RL run: torchlab.rl
        from torchlab.rl.api import evaluate as evaluate_rl

        return evaluate_rl(run, episodes)
    if split not in ("train", "val", "test"):
        raise ConfigError(f"Split '{split}' does not exist; use train, val or test.")
    warn_of_changed_data(run)
    parts = build(run.config, run.dir)
    load_into(
        parts.model, load_weights(run.dir / "model.safetensors"), run.dir / "model.safetensors"
    )
    data = loaders(parts)
    if split not in data:
        raise RunError(f"Run '{run.dir}' has an empty {split} split; evaluate another split.")
    from torchlab.training.loop import evaluate as evaluate_loader
    from torchlab.training.precision import Precision

    metrics = parts.task.metrics(parts.task.report_metrics).to(parts.device)
    return evaluate_loader(
        parts.model,
        parts.task,
        data[split],
        metrics=metrics,
        prefix=split,
        precision=Precision(parts.config.trainer.precision, parts.device),
        device=parts.device,
    )


def warn_of_changed_data(run: Run) -> None:
    """Say so before a run is evaluated against data that changed since it was trained."""
    data = run.dir / "data.json"
    recorded = read_json(data).get("files", {}) if data.is_file() else {}
    for change in changes(recorded):
        notice(
            f"{change}; the metrics are of the data as it is now, not as it was trained on.",
        )


def prediction_columns(name: str, values: Any, spec: Any) -> Any:
    """One named prediction tensor as DataFrame columns with readable names.

    ``label`` (N,) becomes class names; ``probabilities`` (N, C) become ``p_<class>``;
    other (N, K) tensors become ``<name>_<class or target>``.
    """
    import pandas as pd

    if values.ndim == 1:
        data = (
            [spec.class_names[i] for i in values.tolist()]
            if name == "label" and spec.class_names
            else values.tolist()
        )
        return pd.DataFrame({name: data})
    labels = spec.class_names or spec.target_names or [str(i) for i in range(values.shape[1])]
    prefix = "p" if name == "probabilities" else name
    return pd.DataFrame(values.tolist(), columns=[f"{prefix}_{label}" for label in labels])


def predict(
    run: str | Path | Run,
    inputs: Any,
    output: str | Path | None = None,
    overwrite: bool = False,
    horizon: int | None = None,
    trust_code: bool = False,
    on_error: str = "fail",
    id_column: str | None = None,
) -> Any:
    """Predict for a user's files (a CSV for tabular runs, image files for image runs), or
    for data in memory: a DataFrame or row dicts, a list of texts, PIL images, arrays or
    tensors (``torchlab.predict(run, ["I love this phone"])``).

    A forecasting run with ``horizon`` forecasts that many steps beyond the end of its data
    (``inputs``: at most one file of known-future covariates); see
    :func:`torchlab.forecasting.forecast`.

    ``run`` may also be an export directory (``torchlab export``): the exported artefact
    then runs (ONNX Runtime, TorchScript, ...) with the run's own preprocessing.
    ``trust_code`` lets a run or export folder import or unpickle code (``--trust-code``).
    ``on_error`` says what an image file that cannot be read, or an empty text, does:
    ``fail`` (one error naming it) or ``skip`` (its row holds the reason in an ``error``
    column, empty for the others, and a warning lists the skipped inputs). ``id_column``
    names a column of the input tables whose values become the ids (``customer_id``)
    instead of ``file:row``.

    Returns a pandas DataFrame with an ``id`` column, the predicted label (or value) and
    one probability column per class; writes it as CSV to ``output`` when given.
    """
    import pandas as pd

    from torchlab.exporters.runtime import load_predictor

    keep_freed_memory()
    if not isinstance(run, Run) and (Path(run) / "config.yaml").is_file():  # a run, not an export
        run = Run(run, trust_code=trust_code)
    if isinstance(run, Run):
        set_threads(run.config.trainer.threads)
    if horizon is not None:  # forecasting: beyond the end of the run's own data
        from torchlab.forecasting import forecast

        future = inputs[0] if inputs else None
        return forecast(run, horizon, future=future, output=output, overwrite=overwrite)
    if output is not None and Path(output).exists() and not overwrite:
        raise RunError(
            f"Output file '{output}' already exists; choose another name or pass --overwrite."
        )
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error (--on-error) must be fail or skip; received {on_error!r}.")
    predictor = load_predictor(run, trust_code=trust_code)
    spec = predictor.spec
    in_memory = predictor.objects_to_inputs(inputs)
    if in_memory is None:  # files
        features, ids, skipped = read_inputs(predictor.featurizer, inputs, on_error)
        texts = getattr(predictor.featurizer, "texts", None)
    else:  # a DataFrame, texts, PIL images, arrays, tensors
        (features, ids), skipped = in_memory, {}
        texts = list(inputs) if predictor.featurizer.kind == "text" else None
    if id_column is not None:
        ids = ids_from_column(ids, inputs, id_column)
        skipped = dict(
            zip(ids_from_column(list(skipped), inputs, id_column), skipped.values(), strict=True)
        )
    outputs = predictor(features)
    # Segmentation and detection write overlay images and their table into the folder
    # ``output`` instead of one CSV file.
    folder = Path(output) if output is not None else None
    written = predictor.task.write_predictions(features, outputs, ids, folder, predictor.featurizer)
    if written is not None:
        return with_errors(written, skipped) if on_error == "skip" else written
    frame = pd.DataFrame({"id": ids})
    if texts:  # what each row was about
        frame["text"] = texts
    for name, values in predictor.task.predict(outputs).items():
        frame = frame.join(prediction_columns(name, values, spec))
    if on_error == "skip":
        frame = with_errors(frame, skipped)
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(output, index=False)
    return frame


def ids_from_column(ids: list[str], inputs: Any, column: str) -> list[str]:
    """``file.csv:3`` ids as the values of ``column`` in row 3 of ``file.csv``."""
    import pandas as pd

    tables: dict[str, list[str]] = {}
    for path in map(Path, inputs if isinstance(inputs, list) else []):
        suffix = path.suffix.lower()
        if suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(path).astype(str)
        elif suffix in {".csv", ".tsv"}:
            sep = "\t" if suffix == ".tsv" else ","
            frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        else:
            continue
        if column not in frame.columns:
            raise DataError(
                f"'{path}' has no column '{column}' (columns: "
                f"{', '.join(map(str, frame.columns))}); name one of them with --id-column."
            )
        tables[path.name] = frame[column].tolist()
    if not tables:
        raise ConfigError("--id-column applies to CSV, TSV and Parquet inputs; give such files.")
    out = []
    for id_ in ids:
        name, _, row = id_.rpartition(":")
        out.append(tables[name][int(row)] if name in tables and row.isdigit() else id_)
    return out


def read_inputs(
    featurizer: Any, inputs: list[str | Path], on_error: str
) -> tuple[Any, list[str], dict[str, str]]:
    """Model inputs and ids of the user's files, and the inputs skipped (id -> why).

    Featurizers with a ``skipped`` list can leave out an input they cannot use (an image
    file that cannot be read, an empty text); a table featurizer reads its files whole.
    """
    paths = [Path(p) for p in inputs]
    if not hasattr(featurizer, "skipped"):
        if on_error == "skip":
            notice(
                f"on_error='skip' applies to images and texts; this run reads {featurizer.kind} "
                "inputs, so it is ignored.",
            )
        return (*featurizer.load_inputs(paths), {})
    features, ids = featurizer.load_inputs(paths, on_error=on_error)
    if featurizer.skipped:
        shown = list(featurizer.skipped.items())[:10]
        listed = "; ".join(f"{file}: {reason}" for file, reason in shown)
        if len(featurizer.skipped) > len(shown):
            listed += f"; and {len(featurizer.skipped) - len(shown)} more"
        notice(
            f"Skipped {len(featurizer.skipped)} of {len(ids) + len(featurizer.skipped)} inputs "
            f"({listed}); their rows hold the reason in the error column.",
        )
    return features, ids, featurizer.skipped


def with_errors(frame: Any, skipped: dict[str, str]) -> Any:
    """Predictions with an ``error`` column: empty for predicted rows, the reason for one row
    per skipped file (after the others)."""
    import pandas as pd

    errors = pd.DataFrame({"id": list(skipped), "error": list(skipped.values())})
    return pd.concat([frame.assign(error=""), errors], ignore_index=True)


def profile(
    recipe: str | Path,
    overrides: list[str] | dict[str, Any] = (),
    *,
    steps: int = 20,
    output_dir: str | Path | None = None,
) -> Any:
    """Profile ``steps`` training steps of a recipe; the trace goes into a new run folder.

    Returns a :class:`~torchlab.training.profiler.ProfileReport` (``.summary()`` for the
    phase table, ``.top_ops`` for the costliest operators, ``.trace`` for the Chrome trace).
    """
    from torchlab.training.profiler import profile_steps

    keep_freed_memory()
    config = load_config(recipe, overrides)
    parts = build(config)
    run = create_run(config, output_dir, status="profiled")
    path = run.dir
    trainer, _ = make_trainer(run, parts, loaders(parts))
    report = profile_steps(trainer, steps, path / "trace.json")
    (path / "profile.txt").write_text(f"{report.summary()}\n\n{report.top_ops}\n")
    return report
