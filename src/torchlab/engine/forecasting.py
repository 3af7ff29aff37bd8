"""Forecasting verbs: forecast beyond the end of the data, and rolling-origin backtests.

>>> import torchlab
>>> frame = torchlab.forecast("runs/co2/2026-11-25T10-00-00", horizon=12)
>>> result = torchlab.backtest("co2", folds=3)
>>> result.table   # mean test metrics over the folds, model and classical methods
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchlab.errors import RunError


def forecast(
    run: Any,
    horizon: int,
    *,
    future: str | Path | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
) -> Any:
    """Forecast ``horizon`` steps after the last timestamp of a forecasting run's data.

    Args:
        run: A run directory (or :class:`~torchlab.run.Run`) of a forecasting run.
        horizon: Steps to forecast, at most the model's trained horizon.
        future: A CSV/Parquet of the known-future covariates over the horizon, for models
            trained with some (a row per series and timestamp).
        output: A CSV to write; an existing file is kept unless ``overwrite``.

    Returns:
        A pandas DataFrame: ``series`` (several series only), ``timestamp``, and per target
        ``forecast_<target>`` plus, for quantile models, ``lower_<target>`` / ``upper_<target>``.
    """
    import pandas as pd
    import torch

    from torchlab.data.series.frame import read_table
    from torchlab.run import Run
    from torchlab.tasks import build_task

    run = run if isinstance(run, Run) else Run(run)
    featurizer = run.featurizer
    if getattr(featurizer, "kind", None) != "series":
        raise RunError(
            f"--horizon forecasts beyond the data of a forecasting run; '{run.dir}' is a "
            f"'{run.config.task.name}' run: give it input files instead."
        )
    if not 0 < horizon <= featurizer.horizon:
        raise RunError(
            f"The model of '{run.dir}' forecasts at most {featurizer.horizon} steps; ask for 1 to "
            f"{featurizer.horizon}, or train with a longer data.source.window.horizon."
        )
    if output is not None and Path(output).exists() and not overwrite:
        raise RunError(
            f"Output file '{output}' already exists; choose another name or pass --overwrite."
        )
    source = run.config.data.source.params
    table = read_table(future) if future is not None else None
    inputs = featurizer.forecast_inputs(
        table, source.get("id_column"), source.get("time_column", "timestamp")
    )
    model, task = run.load_model(), build_task(run.config.task, run.spec)
    with torch.inference_mode():
        values = task.original(model(inputs), inputs)  # each (S, H, T)
    frames = []
    for s, tail in enumerate(featurizer.tails):
        part = {"timestamp": featurizer.future_index(tail, horizon)}
        if len(featurizer.tails) > 1:
            part = {"series": tail.id, **part}
        for t, target in enumerate(featurizer.target_names):
            for kind, array in values.items():
                part[f"{kind}_{target}"] = array[s, :horizon, t].double().numpy()
        frames.append(pd.DataFrame(part))
    frame = pd.concat(frames, ignore_index=True)
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(output, index=False)
    return frame


@dataclass
class BacktestResult:
    """The runs of a rolling-origin backtest and their test metrics.

    Attributes:
        dir: The backtest folder (``backtest.json``, ``backtest.csv`` and one run per fold).
        folds: Per fold, oldest first: its run directory, test period and metrics.
        table: Per forecaster (the model, then each classical method): metrics averaged
            over the folds.
    """

    dir: Path
    folds: list[dict[str, Any]] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)


def backtest(
    recipe: str | Path,
    overrides: list[str] | dict[str, Any] = (),
    *,
    folds: int = 3,
    output_dir: str | Path | None = None,
) -> BacktestResult:
    """Train and test a forecasting recipe at ``folds`` successive origins.

    Fold k (k = folds - 1 .. 0) moves the test part k test lengths earlier and drops every
    later value, so each fold trains only on data before its own test part (expanding
    window); the classical methods are scored on the same windows.
    """
    from torchlab.config import load_config
    from torchlab.engine.fit import train
    from torchlab.kinds import TrainRequest

    if folds < 1:
        raise RunError(f"--folds must be at least 1; received {folds}.")
    config = load_config(recipe, overrides)
    if config.task.name != "forecasting":
        raise RunError(
            f"Backtesting needs a forecasting recipe; '{recipe}' has task '{config.task.name}'."
        )
    root = (
        Path(output_dir or config.output_dir)
        / f"{config.name}-backtest"
        / time.strftime("%Y-%m-%dT%H-%M-%S")
    )
    root.mkdir(parents=True, exist_ok=False)
    result = BacktestResult(root)
    for fold in reversed(range(folds)):
        key = "data.source.split.backtest_fold"
        extra = (
            {**overrides, key: fold}
            if isinstance(overrides, dict)
            else [*overrides, f"{key}={fold}"]
        )
        run = train(TrainRequest(recipe, extra, output_dir=root))
        summary = run.summary
        data = json.loads((run.dir / "data.json").read_text())
        rows = [{"forecaster": f"{config.model.name} (torchlab)", **_metrics(summary["test"])}]
        rows += [
            {"forecaster": r["name"], **_metrics(r)}
            for r in summary.get("baselines", [])
            if "error" not in r
        ]
        result.folds.append(
            {"fold": fold, "run": str(run.dir), "test": data.get("test", ""), "rows": rows}
        )
    result.table = _average([row for f in result.folds for row in f["rows"]])
    _write(result)
    return result


def _metrics(values: dict[str, Any]) -> dict[str, float]:
    names = ("mae", "rmse", "mape", "smape", "mase", "coverage", "interval_coverage",
             "quantile_coverage", "interval_width")  # fmt: skip
    return {n: float(values[f"test/{n}"]) for n in names if f"test/{n}" in values}


def _average(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.DataFrame(rows)
    means = frame.groupby("forecaster", sort=False).mean(numeric_only=True)
    counts = frame.groupby("forecaster", sort=False).size()
    return [
        {"forecaster": name, "folds": int(counts[name]), **row.to_dict()}
        for name, row in means.iterrows()
    ]


def _write(result: BacktestResult) -> None:
    import pandas as pd

    from torchlab.files import write_json

    write_json(result.dir / "backtest.json", {"folds": result.folds, "mean": result.table})
    pd.DataFrame(result.table).to_csv(result.dir / "backtest.csv", index=False)
