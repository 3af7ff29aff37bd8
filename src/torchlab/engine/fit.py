"""Supervised training: a new run or a resumed one, from the first epoch to the files a
completed run holds (written by :class:`RunFinisher` at the end of fit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchlab import notices
from torchlab.config import RunConfig, config_for_resume, load_config, local_paths
from torchlab.data.fingerprint import fingerprints
from torchlab.distributed import barrier, broadcast_object, failures_named, shutdown
from torchlab.engine.calibration import CALIBRATION_FILE, Fitted, fit_calibration, interval_metrics
from torchlab.engine.experiment import Experiment, build_experiment, loaders
from torchlab.engine.tracking import tracked
from torchlab.errors import ConfigError, RunError
from torchlab.files import write_json, write_text
from torchlab.kinds import TrainRequest
from torchlab.notices import notice
from torchlab.run import Run, create_run, elastic_marker, elastic_restart_of, environment
from torchlab.tracking import TRACKING_KEYS
from torchlab.training.callbacks import Callback

if TYPE_CHECKING:
    from torchlab.training.callbacks import BestWeights
    from torchlab.training.loop import Trainer

# Keys that may differ between a saved run and the command that resumes it: the budget, and
# settings that only change outputs or speed.
RESUMABLE_CHANGES = {
    "trainer.max_epochs", "trainer.progress", "trainer.device", "trainer.threads",
    "trainer.log_every_n_steps", "trainer.keep_checkpoints",
    *TRACKING_KEYS,
}  # fmt: skip
# Schedules whose whole course is fixed by trainer.max_epochs.
SCHEDULES_OVER_MAX_EPOCHS = {"cosine", "onecycle"}


@notices.collected  # the run's summary and report list what the user was warned of
def train(request: TrainRequest) -> Run:
    """Train a supervised recipe, or resume a supervised run; see :func:`torchlab.train`."""
    recipe, overrides, output_dir = request.recipe, request.overrides, request.output_dir
    resume = request.resume
    if resume is None and recipe is not None:
        resume = elastic_restart_of(load_config(recipe, overrides), output_dir)
    if resume is not None:
        run: Run | None = Run(resume, trust_code=request.trust_code)
        run.hold()  # before anything of it changes: one process trains a run at a time
        config = resumed_config(run, recipe, overrides)
    else:
        if recipe is None:
            raise ConfigError("Name a recipe or YAML file to train, or give --resume RUN_DIR.")
        config = load_config(recipe, overrides)
        run = None
    experiment = build_experiment(config, run.dir if run else None)
    experiment, lr_test = with_auto_settings(experiment)
    config = experiment.config
    if run is None and not experiment.world.is_main:
        run = Run(broadcast_object(None))  # rank 0 creates the folder and writes its files
    elif run is None:
        run = create_run(
            config,
            output_dir,
            lambda folder: write_start(folder, experiment, lr_test),
            folder=request.run_dir,
        )
        marker = elastic_marker(config, output_dir)
        if marker is not None:
            write_text(marker, str(run.dir))
        broadcast_object(str(run.dir))
    elif experiment.world.is_main:
        write_text(run.dir / "config.yaml", config.to_yaml())
        run.__dict__.pop("config", None)
    try:
        with (
            tracked(run, config, experiment.world.is_main) as tracking,  # MLflow, when asked
            run.recording_failure(new=resume is None, main=experiment.world.is_main),
            failures_named(experiment.world),
        ):
            callbacks = [*request.callbacks, *tracking]
            fit(run, experiment, resuming=resume is not None, extra_callbacks=callbacks)
        marker = elastic_marker(config, output_dir)
        if marker is not None and experiment.world.is_main:
            marker.unlink(missing_ok=True)  # done: a later job with this id starts afresh
    finally:
        run.release()
        shutdown()
    return run


def with_auto_settings(experiment: Experiment) -> tuple[Experiment, Any]:
    """Resolve ``data.batch_size: auto`` and ``optim.lr: auto`` by measuring; config.yaml
    records the numbers picked. Also returns the range test, whose plot goes into the run."""
    config, lr_test = experiment.config, None
    if config.data.batch_size == "auto":  # the fastest per sample
        from torchlab.training.batch_size_finder import fastest_batch_size

        best, speeds = fastest_batch_size(experiment)
        config = config.model_copy(
            update={"data": config.data.model_copy(update={"batch_size": best})}
        )
        experiment = replace(experiment, config=config)
        shown = ", ".join(f"{size}: {rate:,.0f}/s" for size, rate in speeds.items())
        print(f"data.batch_size: auto picked {best} ({shown})")
    if config.optim.lr == "auto":  # the range test picks it
        from torchlab.training.lr_finder import find_lr

        lr_test = find_lr(experiment, loaders(experiment)["train"])
        optim = config.optim.model_copy(update={"lr": float(f"{lr_test.suggestion:.3g}")})
        experiment = replace(experiment, config=config.model_copy(update={"optim": optim}))
    return experiment, lr_test


def write_start(folder: Path, experiment: Experiment, lr_test: Any = None) -> None:
    """The files a new run holds before it trains: environment, featurizer, data, spec."""
    config, bundle = experiment.config, experiment.bundle
    if lr_test is not None:
        lr_test.save(folder)
    write_json(
        folder / "environment.json",
        environment(experiment.device, config.seed, experiment.world),
    )
    write_json(folder / "featurizer.json", bundle.featurizer.to_dict())
    if hasattr(bundle.featurizer, "save"):  # side files, e.g. tokenizer.json
        bundle.featurizer.save(folder)
    files = fingerprints(local_paths(config))  # to notice data that changes later
    write_json(folder / "data.json", {**bundle.summary, **({"files": files} if files else {})})
    write_json(folder / "spec.json", asdict(bundle.spec))


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


def monitored(experiment: Experiment, data: dict[str, Any]) -> tuple[str, str]:
    """The metric that picks the best epoch, and whether lower or higher is better."""
    trainer = experiment.config.trainer
    monitor = trainer.monitor
    if "val" not in data and monitor.startswith("val/"):
        notice(
            f"There is no validation split, so trainer.monitor '{monitor}' is replaced by "
            "'train/loss'.",
        )
        monitor = "train/loss"
    if trainer.monitor_mode != "auto":
        return monitor, trainer.monitor_mode
    return monitor, experiment.task.mode_for(monitor)


def make_trainer(
    run: Run, experiment: Experiment, data: dict[str, Any], extra_callbacks: Sequence[Any] = ()
) -> tuple[Trainer, BestWeights]:
    """The trainer with its optimizer, schedule and callbacks, and the best-weights callback."""
    from torchlab.registry import CALLBACKS
    from torchlab.training.callbacks import BestWeights, Checkpointer, EarlyStopping
    from torchlab.training.loggers import MetricsLogger, ProgressBar, TensorBoardLogger
    from torchlab.training.loop import Trainer
    from torchlab.training.optim import build_optimizer
    from torchlab.training.schedules import build_schedule

    config = experiment.config.trainer
    monitor, mode = monitored(experiment, data)
    optimizer = build_optimizer(experiment.config.optim, experiment.model)
    steps = -(-len(data["train"]) // config.accumulate_grad_batches)
    schedule = build_schedule(experiment.config.schedule, optimizer, steps, config.max_epochs)
    if "val" not in data and schedule.monitor and schedule.monitor.startswith("val/"):
        schedule.monitor = "train/loss"

    # Loggers come before the checkpointer, so a checkpoint covers what was logged; only
    # rank 0 writes files.
    callbacks: list[Any] = []
    if experiment.world.is_main:
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
    callbacks += experiment.bundle.callbacks  # e.g. listing skipped unreadable images
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
        model=experiment.model,
        task=experiment.task,
        optimizer=optimizer,
        schedule=schedule,
        train_loader=data["train"],
        val_loader=data.get("val"),
        device=experiment.device,
        callbacks=callbacks,
        world=experiment.world,
    )
    return trainer, best


def restore(run: Run, experiment: Experiment, trainer: Trainer) -> None:
    """Load the run's newest checkpoint into the model and the trainer."""
    from torchlab.training.checkpoint import latest_checkpoint, load_checkpoint, load_into

    latest = latest_checkpoint(run.dir / "checkpoints")
    if latest is not None:
        checkpoint = load_checkpoint(latest)
        load_into(experiment.model, checkpoint.weights, latest)
        trainer.load_state_dict(checkpoint.state)
    if experiment.world.is_main:
        run.set_status("running", resumed_from=str(latest) if latest else None, error=None)


def fit(
    run: Run, experiment: Experiment, resuming: bool, extra_callbacks: Sequence[Any] = ()
) -> None:
    """Train; at the end of fit, :class:`RunFinisher` writes what a completed run holds."""
    data = loaders(experiment)
    trainer, best = make_trainer(run, experiment, data, extra_callbacks)
    trainer.callbacks.callbacks.append(RunFinisher(run, experiment, data, best))
    if resuming:
        restore(run, experiment, trainer)
    trainer.fit()


class RunFinisher(Callback):
    """At the end of fit: test the best weights, fit the baseline, plot the curves, write
    ``summary.json`` (last of the numbers), the report and the model card, and mark the run
    completed. Comes after every other callback, so it sees the final best weights."""

    def __init__(
        self, run: Run, experiment: Experiment, data: dict[str, Any], best: BestWeights
    ) -> None:
        self.run, self.experiment, self.data, self.best = run, experiment, data, best

    def on_fit_end(self, trainer: Trainer) -> None:
        from torchlab.training.checkpoint import load_into, load_weights

        experiment, run = self.experiment, self.run
        weights = run.dir / "model.safetensors"
        load_into(experiment.model, load_weights(weights), weights)
        calibration = fit_calibration(experiment, self.data)  # task.calibrate, task.intervals
        test = {}
        if "test" in self.data:
            test = self.test_metrics(trainer, calibration)
        if not experiment.world.is_main:
            barrier()  # wait until rank 0 has written the summary
            return
        summary = self.summary(trainer, test)
        if calibration is not None:
            write_json(run.dir / CALIBRATION_FILE, calibration.record)
            summary["calibration"] = calibration.record
            experiment = replace(experiment, model=calibration.model)
        write_json(run.dir / "summary.json", summary)
        from torchlab.report.html import write_run_reports

        write_run_reports(run, experiment, self.data)  # report.html and MODEL_CARD.md
        run.set_status("completed")
        barrier()

    def test_metrics(self, trainer: Trainer, calibration: Fitted | None) -> dict[str, Any]:
        """The best weights' test metrics, with the report-only ones, as predictions come
        out of the run: after its calibration, when it has one."""
        from torchlab.training.loop import evaluate

        task, loader = self.experiment.task, self.data["test"]
        if calibration is None:
            return trainer.evaluate(loader, "test", extra_metrics=task.report_metrics)
        metrics = task.metrics(task.report_metrics).to(trainer.device)
        test = evaluate(
            calibration.model,
            task,
            loader,
            metrics=metrics,
            prefix="test",
            precision=trainer.precision,
            device=trainer.device,
        )
        return {**test, **interval_metrics(calibration, self.experiment, loader)}

    def summary(self, trainer: Trainer, test: dict[str, Any]) -> dict[str, Any]:
        from torchlab.baselines import run_baseline
        from torchlab.report.plots import learning_curves

        experiment = self.experiment
        learning_curves(self.run.history, self.run.dir / "learning_curves.png")
        baseline = run_baseline(experiment.config.baseline, experiment.bundle)
        summary = {
            "recipe": experiment.config.name,
            "test": test,
            "baseline": baseline.best if baseline else None,
            "baselines": baseline.table if baseline else [],
            "baseline_note": baseline.note if baseline else None,  # why there is none
            "epochs": trainer.state.epoch,
            "steps": trainer.state.global_step,
            "best_epoch": self.best.best_epoch + 1,  # 1-based, as the progress bar counts
            "monitor": self.best.tracker.monitor,
            "train_seconds": round(trainer.state.seconds, 3),  # every segment of a resumed run
            "parameters": sum(p.numel() for p in experiment.model.parameters()),
            "notices": notices.current(),
        }
        for callback in experiment.bundle.callbacks:  # the data's own facts (skipped files)
            summary.update(getattr(callback, "summary", dict)())
        for artifact in experiment.bundle.artifacts:  # e.g. word vectors beside the weights
            summary.update(artifact.write(experiment.model, self.run.dir))
        return summary


def profile(
    recipe: str | Path,
    overrides: list[str] | dict[str, Any] = (),
    *,
    steps: int = 20,
    output_dir: str | Path | None = None,
) -> Any:
    """Profile ``steps`` training steps of a recipe; see :func:`torchlab.profile`."""
    from torchlab.memory import keep_freed_memory
    from torchlab.training.profiler import profile_steps

    keep_freed_memory()
    config = load_config(recipe, overrides)
    experiment = build_experiment(config)
    run = create_run(config, output_dir, status="profiled")
    trainer, _ = make_trainer(run, experiment, loaders(experiment))
    report = profile_steps(trainer, steps, run.dir / "trace.json")
    (run.dir / "profile.txt").write_text(f"{report.summary()}\n\n{report.top_ops}\n")
    return report
