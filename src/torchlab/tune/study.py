"""``torchlab tune``: an Optuna study whose trials are ordinary torchlab runs.

Each trial samples the ``tune.space``, trains the config with those values (its run
directory under ``<study>/trials/``), reports the validation metric after every epoch so
the pruner can stop it, and is scored by the best value of ``tune.metric`` over its epochs.
A trial that raises (a bad combination, a NaN loss, out of memory) or scores NaN is
recorded as failed with its message, and the study goes on.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from torchlab.config import (
    RunConfig,
    TuneConfig,
    apply_overrides,
    load_config,
    read_recipe,
    validate,
    with_absolute_paths,
)
from torchlab.errors import ConfigError
from torchlab.training.callbacks import Callback
from torchlab.trust import users_config
from torchlab.tune.space import check_space, ready_to_run, suggest
from torchlab.tune.storage import Heartbeat, Storage, fail_stale_trials, open_storage

if TYPE_CHECKING:
    from torchlab.tracking.study import ParentRun

log = logging.getLogger(__name__)
MODEL_LOGGING = "trainer.tracking.mlflow.log_model"


@dataclass
class StudyResult:
    """What a finished ``tune`` call leaves behind."""

    study_dir: Path
    study_name: str
    metric: str
    direction: str
    best_value: float | None
    best_params: dict[str, Any]
    best_config: Path | None  # a ready-to-run recipe: torchlab train <study>/best.yaml
    counts: dict[str, int] = field(default_factory=dict)  # trials per state
    plots: list[Path] = field(default_factory=list)


class OptunaPruning(Callback):
    """Report ``metric`` to the trial after each epoch; raise TrialPruned when told to."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric = trial, metric

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        import optuna

        value = logs.get(self.metric)
        if value is None:
            raise ConfigError(
                f"tune.metric '{self.metric}' is not among the logged metrics "
                f"({', '.join(k for k in logs if '/' in k)}); pick one of those."
            )
        if not math.isfinite(value):
            return  # nothing to compare; a NaN score fails the trial at its end
        self.trial.report(value, logs["epoch"])
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned after epoch {logs['epoch'] + 1} with {self.metric}={value:.4g}"
            )


def tune(
    recipe: str | Path,
    overrides: list[str] | dict[str, Any] = (),
    *,
    trials: int | None = None,
    storage: str | None = None,
    study_dir: str | Path | None = None,
    timeout_minutes: float | None = None,
) -> StudyResult:
    """Run (or resume) the Optuna study a config's ``tune:`` section describes.

    Args:
        recipe: A built-in recipe name or YAML path with a ``tune:`` section.
        overrides: Dotted overrides applied to the config before the search.
        trials: Total trials of the study (default ``tune.trials``); a resumed study runs
            only the missing ones, and workers sharing a storage share the count.
        storage: ``None`` (SQLite in the study folder), ``journal``, ``journal:PATH`` or a
            database URL such as ``postgresql://user@host/db``.
        study_dir: The study folder (default ``studies/<config name>``).
        timeout_minutes: Stop starting new trials after this long (default ``tune.timeout_minutes``).
    """
    path = Path(str(recipe))
    with users_config(path.parent if path.is_file() else None):  # trials import its code
        return _tune(recipe, overrides, trials, storage, study_dir, timeout_minutes)


def _tune(
    recipe: str | Path,
    overrides: list[str] | dict[str, Any],
    trials: int | None,
    storage: str | None,
    study_dir: str | Path | None,
    timeout_minutes: float | None,
) -> StudyResult:
    import optuna

    raw = with_absolute_paths(apply_overrides(read_recipe(recipe), overrides))
    config = validate(raw)
    if config.tune is None:
        raise ConfigError(
            f"'{recipe}' has no tune: section; add one with a search space, e.g. "
            "tune: {space: {optim.lr: {type: float, low: 1e-4, high: 1e-2, log: true}}}."
        )
    settings = config.tune
    check_space(raw, settings.space)
    metric = settings.metric or config.trainer.monitor
    direction = _direction(config, metric, settings)
    total = trials or settings.trials
    timeout = timeout_minutes or settings.timeout_minutes
    folder = Path(study_dir or Path("studies") / config.name)
    store = open_storage(storage, folder)
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=config.name,
            storage=store.storage,
            pruner=_pruner(settings, config.trainer.max_epochs),
            direction=direction,
            load_if_exists=True,
        )
        if study.direction.name.lower() != direction:
            raise ConfigError(
                f"The study '{config.name}' in {store.description} was created to "
                f"{study.direction.name.lower()}; this config asks to {direction}. "
                "Use another --study-dir or the same tune.direction."
            )
        # Seeded by the trials already there, so a resumed study does not replay its first draws.
        study.sampler = _sampler(settings, config.seed + len(study.trials), store)
        study.set_user_attr("metric", metric)
        _enqueue_once(study, settings)
        (folder / "base.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        parent = _parent_run(config, folder)
        # Trials are tracked as runs, without a model each: best.yaml trains the one to keep.
        trial_raw = apply_overrides(raw, {MODEL_LOGGING: False}) if parent else raw
        _loop(study, trial_raw, settings, metric, folder, total, timeout, store, parent)
        result = _finish(study, raw, folder, metric, direction)
        if parent is not None:
            best = {f"best/{metric}": result.best_value} if result.best_value is not None else {}
            parent.finish(best, {f"trials.{k}": str(v) for k, v in result.counts.items()})
        return result
    finally:
        store.close()


def _direction(config: RunConfig, metric: str, settings: TuneConfig) -> str:
    if settings.direction != "auto":
        return settings.direction
    from torchlab.registry import TASKS

    task = TASKS.get(config.task.name, "task.name").builder
    higher = metric.rpartition("/")[2] in getattr(task, "higher_is_better", frozenset())
    return "maximize" if higher else "minimize"


def _sampler(settings: TuneConfig, seed: int, store: Storage) -> Any:
    import optuna

    # One worker on SQLite is reproducible from the config's seed; parallel workers need
    # different seeds or their first random trials would be the same points.
    seed = seed if store.single_process else (seed * 1_000_003 + os.getpid()) % 2**31
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(settings: TuneConfig, max_epochs: int) -> Any:
    import optuna

    pruner = settings.pruner
    if pruner.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=pruner.startup_trials, n_warmup_steps=pruner.warmup_epochs
        )
    if pruner.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=pruner.min_epochs,
            max_resource=max_epochs,
            reduction_factor=pruner.reduction_factor,
        )
    return optuna.pruners.NopPruner()


def _enqueue_once(study: Any, settings: TuneConfig) -> None:
    if settings.enqueue and not study.user_attrs.get("enqueued"):
        study.set_user_attr("enqueued", True)
        for params in settings.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)


def _loop(
    study: Any,
    raw: dict[str, Any],
    settings: TuneConfig,
    metric: str,
    folder: Path,
    total: int,
    timeout: float | None,
    store: Storage,
    parent: ParentRun | None = None,
) -> None:
    from optuna.trial import TrialState

    started = time.monotonic()
    # On SQLite this process holds the lock, so a trial still "running" was left by a
    # process that died: fail and retry it now instead of after the grace period.
    grace = 0.0 if store.single_process else settings.grace_seconds
    while timeout is None or time.monotonic() - started < timeout * 60:
        for number in fail_stale_trials(study, grace, settings.max_retries):
            _fail_runs_of(folder, number)
        taken = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.state != TrialState.WAITING and not t.user_attrs.get("retried")
        ]
        if len(taken) >= total:
            return
        objective = Objective(raw, settings, metric, folder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # optuna's NaN warning
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
        if parent is not None and objective.number is not None:
            _nest(parent, study, objective.number, folder)


def _parent_run(config: RunConfig, folder: Path) -> ParentRun | None:
    """The study's MLflow run, when its config or the environment asks for tracking."""
    from torchlab.tracking import settings_for

    tracking = settings_for(config)
    if tracking is None:
        return None
    from torchlab.tracking.study import ParentRun

    folder.mkdir(parents=True, exist_ok=True)
    tags = {"torchlab.recipe": config.name, "torchlab.kind": "study"}
    return ParentRun(tracking, folder, f"study {config.name}", tags)


def _nest(parent: ParentRun, study: Any, number: int, folder: Path) -> None:
    """Put trial ``number``'s MLflow run under the study's, with its state."""
    (trial,) = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    state = trial.state.name.lower()  # complete, pruned, fail
    for run_dir in trial_runs(folder, number):
        parent.nest(run_dir, "failed" if state == "fail" else state, {"optuna.trial": str(number)})


def trial_runs(folder: Path, number: int) -> list[Path]:
    """The run folders of trial ``number`` (one, unless a crash left a second)."""
    return [p.parent for p in (folder / "trials" / f"{number:04d}").glob("*/*/run.json")]


def _fail_runs_of(folder: Path, number: int) -> None:
    """Mark failed the run of a trial whose worker died, unless a live process holds it."""
    from torchlab.errors import RunError
    from torchlab.run import Run

    for path in trial_runs(folder, number):
        run = Run(path)
        try:
            run.hold()
        except RunError:
            continue  # its worker lives after all (a silent heartbeat): leave its run be
        try:
            if run.status == "running":
                run.set_status("failed", error="its worker stopped; the study failed the trial")
        finally:
            run.release()


class Objective:
    """One trial: sample, train, score; failures carry their message into the study."""

    def __init__(
        self, raw: dict[str, Any], settings: TuneConfig, metric: str, folder: Path
    ) -> None:
        self.raw, self.settings, self.metric, self.folder = raw, settings, metric, folder
        self.number: int | None = None  # the trial it ran

    def __call__(self, trial: Any) -> float:
        import optuna

        from torchlab.engine import verbs
        from torchlab.kinds import TrainRequest
        from torchlab.run import Run

        self.number = trial.number
        values = suggest(trial, self.settings.space)
        output = self.folder / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("pid", os.getpid())
        try:
            with Heartbeat(trial, self.settings.heartbeat_seconds):
                config = ready_to_run(self.raw, {**values, "trainer.progress": "none"})
                output.mkdir(parents=True, exist_ok=True)
                config_path = output / "config.yaml"
                config_path.write_text(config.to_yaml())
                pruning = [OptunaPruning(trial, self.metric)]
                run = verbs.train(TrainRequest(config_path, output_dir=output, callbacks=pruning))
        except optuna.TrialPruned:
            for path in trial_runs(self.folder, trial.number):
                Run(path).set_status("pruned")
                trial.set_user_attr("run_dir", str(path))
            reported = trial.storage.get_trial(trial._trial_id).intermediate_values
            if reported:
                _write_hparams(
                    self.folder, trial.number, values, self.metric, reported[max(reported)]
                )
            raise
        except BaseException as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            _free_cuda_memory()
            raise
        trial.set_user_attr("run_dir", str(run.dir))
        trial.set_user_attr("test", _floats(run.metrics))
        value = _best(run.history, self.metric, maximize=trial.study.direction.name == "MAXIMIZE")
        if not math.isfinite(value):
            trial.set_user_attr("error", f"{self.metric} was {value} in every epoch")
        _write_hparams(self.folder, trial.number, values, self.metric, value)
        return value


def _best(history: list[dict[str, Any]], metric: str, *, maximize: bool) -> float:
    """The best per-epoch value of ``metric`` (the epoch whose weights the run keeps)."""
    values = [r[metric] for r in history if metric in r and "train/loss" in r]
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return math.nan
    return max(finite) if maximize else min(finite)


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def _free_cuda_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # an out-of-memory trial must not starve the next one


def _write_hparams(
    folder: Path, number: int, values: dict[str, Any], metric: str, value: float
) -> None:
    """TensorBoard's HParams view: one entry per trial in ``<study>/tensorboard``."""
    from torch.utils.tensorboard import SummaryWriter

    hparams = {
        k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()
    }
    with SummaryWriter(str(folder / "tensorboard" / f"trial-{number:04d}")) as writer:
        writer.add_hparams(hparams, {f"hparam/{metric}": value}, run_name=".")


def _finish(
    study: Any, raw: dict[str, Any], folder: Path, metric: str, direction: str
) -> StudyResult:
    from optuna.trial import TrialState

    from torchlab.tune.outputs import save_plots, save_trials_table

    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    save_trials_table(study, folder / "trials.csv")
    plots = save_plots(study, folder / "plots")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return StudyResult(
            folder, study.study_name, metric, direction, None, {}, None, counts, plots
        )
    best = study.best_trial
    config = ready_to_run(raw, best.params)
    best_path = folder / "best.yaml"
    header = (
        f"# Best of study '{study.study_name}': trial {best.number}, {metric}={best.value:.6g}\n"
        f"# Train it with: torchlab train {best_path}\n"
    )
    best_path.write_text(header + config.to_yaml())
    load_config(best_path)  # the written recipe must load as written
    return StudyResult(
        folder,
        study.study_name,
        metric,
        direction,
        best.value,
        best.params,
        best_path,
        counts,
        plots,
    )
