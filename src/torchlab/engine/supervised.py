"""The ``supervised`` run kind: a model trained on a labelled dataset (every config that no
other kind claims)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from torchlab.config import RunConfig, validate_supervised
from torchlab.errors import ConfigError, RunError
from torchlab.kinds import DEFAULT_KIND, TrainRequest
from torchlab.registry import RUN_KINDS
from torchlab.run import Run


@RUN_KINDS.register(DEFAULT_KIND)
class Supervised:
    """Train, evaluate, export and report supervised runs (see :mod:`torchlab.kinds`)."""

    name: ClassVar[str] = DEFAULT_KIND
    schema = RunConfig

    @staticmethod
    def claims(raw: dict[str, Any]) -> bool:
        return True  # the default kind: tried after every other

    def validate(self, raw: dict[str, Any]) -> RunConfig:
        return validate_supervised(raw)

    def train(self, request: TrainRequest) -> Run:
        from torchlab.engine.fit import train

        return train(request)

    def evaluate(self, run: Run, split: str, episodes: int | None) -> dict[str, Any]:
        """Metrics of the run's best weights on one split (``train``, ``val`` or ``test``)."""
        from torchlab.engine.experiment import loaders, rebuilt
        from torchlab.training.loop import evaluate as evaluate_loader
        from torchlab.training.precision import Precision

        if split not in ("train", "val", "test"):
            raise ConfigError(f"Split '{split}' does not exist; use train, val or test.")
        warn_of_changed_data(run)
        experiment = rebuilt(run)
        data = loaders(experiment)
        if split not in data:
            raise RunError(f"Run '{run.dir}' has an empty {split} split; evaluate another split.")
        metrics = experiment.task.metrics(experiment.task.report_metrics)
        return evaluate_loader(
            experiment.model,
            experiment.task,
            data[split],
            metrics=metrics.to(experiment.device),
            prefix=split,
            precision=Precision(experiment.config.trainer.precision, experiment.device),
            device=experiment.device,
        )

    def load_model(self, run: Run) -> Any:
        from torchlab.engine.experiment import load_trained

        return load_trained(run)

    def exportable(self, run: Run) -> Any:
        """The run's best weights as its task's deployment record says (a detector on
        batch tensors, a forecaster on windows), else as they are, with the run's
        calibration; refused for decoding tasks and in formats the task cannot use."""
        from dataclasses import replace

        from torchlab.engine.calibration import calibrated_exportable, read_calibration
        from torchlab.engine.experiment import load_trained
        from torchlab.exporters.sources import graph_exportable, refuse_decoding, refusing
        from torchlab.registry import TASKS

        task = run.config.task.name
        deployment = TASKS.get(task, "task.name").builder.deployment
        refuse_decoding(task, deployment.decodes)
        build = deployment.resolve("exportable") or graph_exportable
        exportable = build(run, load_trained(run, calibrated=False))
        exportable = calibrated_exportable(exportable, read_calibration(run.dir))
        for format, reason in deployment.refuses.items():
            exportable = refusing(exportable, format, reason)
        return replace(exportable, featurizer=run.featurizer)

    def write_report(self, run: Run) -> Path:
        """Rebuild the report: the test split is predicted again by the best weights."""
        from torchlab.engine.experiment import loaders, rebuilt
        from torchlab.report.html import write_reports

        experiment = rebuilt(run)
        return write_reports(run, experiment, loaders(experiment))[0]


def warn_of_changed_data(run: Run) -> None:
    """Say so before a run is evaluated against data that changed since it was trained."""
    from torchlab.data.fingerprint import changes
    from torchlab.notices import notice
    from torchlab.run import read_json

    data = run.dir / "data.json"
    recorded = read_json(data).get("files", {}) if data.is_file() else {}
    for change in changes(recorded):
        notice(f"{change}; the metrics are of the data as it is now, not as it was trained on.")
