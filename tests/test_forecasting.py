"""Forecasting end to end: metrics, baselines against statsmodels, recipes, predict --horizon, backtests."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import torchlab
from torchlab.baselines import run_baseline
from torchlab.config import Component
from torchlab.data.base import SourceContext
from torchlab.errors import ConfigError, DataError, RunError
from torchlab.registry import DATASETS, LOSSES
from torchlab.tasks.forecasting import forecast_scores

CO2 = {
    "name": "co2", "fill": "interpolate", "window": {"lookback": 36, "horizon": 24},
    "split": {"val_size": 48, "test_start": "2000-01-01", "test_end": "2001-12-01"},
}  # fmt: skip
QUICK = {"trainer.max_epochs": 1, "trainer.progress": "none"}


def co2_bundle(**split: object):  # type: ignore[no-untyped-def]
    settings = {**CO2, "split": {**CO2["split"], **split}}
    return DATASETS.build(
        Component(**settings), "data.source", SourceContext(0.1, 0.2, False, 0, "continuous")
    )


def test_metrics_match_their_formulas() -> None:
    f = torch.tensor([[[2.0], [4.0]]], dtype=torch.float64)  # (N=1, H=2, T=1)
    y = torch.tensor([[[1.0], [5.0]]], dtype=torch.float64)
    scores = forecast_scores(f, y, torch.tensor([[0.5]], dtype=torch.float64))
    assert scores["mae"] == pytest.approx(1.0)
    assert scores["rmse"] == pytest.approx(1.0)
    assert scores["mape"] == pytest.approx(100 * (1 / 1 + 1 / 5) / 2)
    assert scores["smape"] == pytest.approx(100 * (2 * 1 / 3 + 2 * 1 / 9) / 2)
    assert scores["mase"] == pytest.approx(2.0)


def test_pinball_loss_is_minimised_by_the_quantile() -> None:
    loss = LOSSES.build(Component(name="quantile", quantiles=[0.9]), "task.loss")
    y = torch.arange(100.0).reshape(1, 100, 1)
    values = {q: float(loss(torch.full((1, 100, 1), q), y)) for q in (50.0, 89.0, 99.0)}
    assert min(values, key=values.get) == 89.0  # the 0.9-quantile of 0..99
    mean_point = LOSSES.build(
        Component(name="quantile", quantiles=[0.1, 0.5, 0.9], point="mse"), "task.loss"
    )
    y = torch.tensor([0.0, 0.0, 0.0, 10.0]).reshape(1, 4, 1)  # mean 2.5, median 0
    middles = {
        m: float(mean_point(torch.tensor([-1.0, m, 11.0]).expand(1, 4, 1, 3), y))
        for m in (0.0, 2.5)
    }
    assert middles[2.5] < middles[0.0]  # the middle output is pulled to the mean
    with pytest.raises(ConfigError, match="increasing levels"):
        LOSSES.build(Component(name="quantile", quantiles=[0.9, 0.1]), "task.loss")


@pytest.mark.slow
def test_baselines_match_statsmodels_run_directly_on_the_same_window() -> None:
    from statsmodels.tsa.arima.model import ARIMA
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    bundle = co2_bundle()
    component = Component(
        name="forecasting", methods=["seasonal_naive", "ets", "ets_damped", "arima"], season=12
    )
    result = run_baseline(component, bundle)
    rows = {r["name"]: r for r in result.table}
    s = bundle.series.prepared[0].series
    history = pd.Series(s.target[:, 0], index=s.index)[:"1999-12"]
    actual = s.target[len(history) : len(history) + 24, 0]
    scale = np.abs(history.values[12:] - history.values[:-12]).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = {
            "ets": ExponentialSmoothing(history.values, trend="add", seasonal="add", seasonal_periods=12).fit().forecast(24),
            "ets_damped": ExponentialSmoothing(history.values, trend="add", damped_trend=True, seasonal="add",
                                               seasonal_periods=12).fit().forecast(24),
            "sarima(1,1,1)x(0,1,1,12)": ARIMA(history.values, order=(1, 1, 1), seasonal_order=(0, 1, 1, 12)).fit().forecast(24),
            "seasonal_naive": np.resize(history.values[-12:], 24),
        }  # fmt: skip
    for name, forecast in direct.items():
        expected = np.abs(forecast - actual).mean() / scale
        assert rows[name]["test/mase"] == pytest.approx(expected, rel=1e-6), name
    # The published figures on this split (statsmodels docs' co2 example).
    assert rows["seasonal_naive"]["test/mase"] == pytest.approx(1.450, abs=1e-3)
    assert rows["ets"]["test/mase"] == pytest.approx(0.182, abs=1e-3)
    assert rows["ets_damped"]["test/mase"] == pytest.approx(0.161, abs=1e-3)
    assert result.best["name"] == "ets_damped"


def test_baselines_score_every_test_window() -> None:
    bundle = co2_bundle(test_start="1998-01-01", val_size=24)  # two 24-month test windows
    windows = bundle.series.windows["test"]
    assert [o for _, o in windows] == [478, 502]
    run_baseline(Component(name="forecasting", methods=["naive"]), bundle)
    naive = bundle.series.cache["baselines"]["naive"]
    target = bundle.series.prepared[0].series.target[:, 0]
    np.testing.assert_allclose(naive[:, :, 0], [[target[477]] * 24, [target[501]] * 24])


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe, overrides",
    [
        ("co2", {"baseline.methods": ["naive", "seasonal_naive", "ets"]}),
        ("sunspots", {"baseline.methods": ["naive", "seasonal_naive", "arima"]}),
        (
            "demand",
            {
                "data.source.stores": 2,
                "data.source.items": 2,
                "data.source.days": 200,
                "baseline.methods": ["naive", "seasonal_naive"],
            },
        ),
        ("stock", {"data.source.days": 400, "baseline.methods": ["zero", "naive"]}),
    ],
)
def test_recipe_trains_and_reports_beside_the_baselines(
    recipe: str, overrides: dict, tmp_path: Path
) -> None:
    run = torchlab.train(recipe, {**QUICK, **overrides}, output_dir=tmp_path)
    summary = run.summary
    for metric in ("mae", "rmse", "mape", "smape", "mase", "coverage"):
        assert np.isfinite(summary["test"][f"test/{metric}"])
    names = [row["name"] for row in summary["baselines"]]
    assert len(names) == len(overrides.get("baseline.methods", names))
    assert all(np.isfinite(row["test/mase"]) for row in summary["baselines"])
    assert summary["baseline"]["test/mase"] == min(row["test/mase"] for row in summary["baselines"])
    html = (run.dir / "report.html").read_text()
    assert "Model vs classical forecasters" in html and "forecast, interval and actuals" in html
    assert json.loads((run.dir / "featurizer.json").read_text())["kind"] == "series"


@pytest.fixture(scope="module")
def co2_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    overrides = {**QUICK, "baseline.methods": ["naive"]}
    return torchlab.train("co2", overrides, output_dir=tmp_path_factory.mktemp("runs"))


@pytest.mark.slow
def test_predict_horizon_writes_forecasts_after_the_data(co2_run, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("predict", str(co2_run.dir), "--horizon", "6", "--output", "forecast.csv")
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(tmp_path / "forecast.csv")
    assert list(frame.columns) == ["timestamp", "forecast_co2", "lower_co2", "upper_co2"]
    assert list(frame["timestamp"]) == [f"2002-{m:02d}-01" for m in range(1, 7)]
    assert (frame["lower_co2"] <= frame["forecast_co2"]).all()
    assert (frame["forecast_co2"] <= frame["upper_co2"]).all()
    assert frame["forecast_co2"].between(360, 385).all()  # ppm around 2002
    with pytest.raises(RunError, match="already exists"):
        torchlab.predict(co2_run.dir, [], output=tmp_path / "forecast.csv", horizon=6)
    with pytest.raises(DataError, match="--horizon N"):  # input files mean nothing here
        torchlab.predict(co2_run.dir, [tmp_path / "forecast.csv"])


@pytest.mark.slow
def test_predict_horizon_longer_than_the_model_is_refused(co2_run) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RunError, match="at most 24 steps"):
        torchlab.predict(co2_run.dir, [], horizon=25)


@pytest.mark.slow
def test_predict_horizon_on_another_kind_of_run_is_refused(tmp_path: Path) -> None:
    run = torchlab.train("iris", QUICK, output_dir=tmp_path)
    with pytest.raises(RunError, match="forecasting run"):
        torchlab.predict(run.dir, [], horizon=3)


@pytest.mark.slow
def test_backtest_tests_successive_origins(tmp_path: Path) -> None:
    overrides = {**QUICK, "baseline.methods": ["naive", "seasonal_naive"],
                 "data.source.split": {"val_size": 24, "test_size": 24}}  # fmt: skip
    result = torchlab.backtest("co2", overrides, folds=2, output_dir=tmp_path)
    periods = [fold["test"] for fold in result.folds]
    assert periods[0].startswith("1998-01-01") and periods[1].startswith("2000-01-01")
    assert [row["forecaster"] for row in result.table] == [
        "mlp-forecaster (torchlab)",
        "naive",
        "seasonal_naive",
    ]
    assert all(row["folds"] == 2 for row in result.table)
    first, second = (f["rows"][1]["mase"] for f in result.folds)
    assert result.table[1]["mase"] == pytest.approx((first + second) / 2)
    assert (result.dir / "backtest.csv").is_file()
