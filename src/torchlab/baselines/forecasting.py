"""Classical forecasters beside every forecasting run, on exactly the model's test windows.

For each test window (a series and an origin) every method is fitted on that series' raw
values before the origin and forecasts the horizon; scores use the task's own metric code
in original units, with the same MASE scale. Methods: ``naive`` (last value), ``drift``
(random walk with drift), ``zero`` (for returns: no price change), ``mean`` (the
historical mean), ``seasonal_naive`` (last season repeated), ``ets`` / ``ets_damped``
(statsmodels ExponentialSmoothing, additive trend and season, the second with a damped
trend) and ``arima`` (statsmodels ARIMA with ``order`` and ``seasonal_order``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from torchlab.baselines import BaselineResult
from torchlab.registry import BASELINES

Method = Literal["naive", "zero", "mean", "drift", "seasonal_naive", "ets", "ets_damped", "arima"]


@dataclass(frozen=True)
class ForecastBaselines:
    """The methods to run and their settings (``season`` None: the source's season)."""

    methods: tuple[str, ...]
    season: int | None
    order: tuple[int, int, int]
    seasonal_order: tuple[int, int, int]

    def evaluate(self, bundle: Any) -> BaselineResult | None:
        """Score every method on the test windows; the best one (by MASE) leads.

        The forecasts are kept in ``bundle.series.cache["baselines"]`` for the report's plots.
        """
        from torchlab.tasks.forecasting import forecast_scores

        if not bundle.series.windows["test"]:
            return None
        season = self.season or bundle.series.season
        histories, actual, mase = test_windows(bundle)
        horizon = bundle.series.window.horizon
        rows, forecasts = [], {}
        for method in self.methods:
            name = label(method, self, season)
            started = time.perf_counter()
            try:
                forecast = forecast_all(method, self, histories, horizon, season)
            except Exception as exc:  # e.g. too short for a seasonal model: shown, not fatal
                rows.append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
                continue
            scores = forecast_scores(*(torch.from_numpy(a) for a in (forecast, actual, mase)))
            forecasts[name] = forecast
            seconds = round(time.perf_counter() - started, 3)
            rows.append(
                {"name": name, **{f"test/{k}": v for k, v in scores.items()}, "seconds": seconds}
            )
        bundle.series.cache["baselines"] = forecasts
        scored = [r for r in rows if "test/mase" in r and np.isfinite(r["test/mase"])]
        if not scored:
            return BaselineResult(None, rows)
        best = min(scored, key=lambda r: r["test/mase"])
        return BaselineResult({k: v for k, v in best.items() if k != "seconds"}, rows)


@BASELINES.register("forecasting")
def forecasting(
    kind: str,
    /,
    *,
    methods: list[Method] = ["naive", "seasonal_naive", "ets", "ets_damped", "arima"],  # noqa: B006
    season: int | None = None,
    order: tuple[int, int, int] = (1, 1, 1),
    seasonal_order: tuple[int, int, int] = (0, 1, 1),
) -> ForecastBaselines:
    """Classical forecasters for series sources.

    Args:
        methods: naive, zero, mean, drift, seasonal_naive, ets, ets_damped, arima.
        season: The seasonal period (default: the source's, e.g. 12 for monthly data).
        order: ARIMA (p, d, q).
        seasonal_order: Seasonal (P, D, Q) at ``season``; (0, 0, 0) for plain ARIMA.
    """
    return ForecastBaselines(tuple(methods), season, tuple(order), tuple(seasonal_order))  # type: ignore[arg-type]


def naive(
    history: np.ndarray, horizon: int, season: int, settings: ForecastBaselines
) -> np.ndarray:
    return np.repeat(history[-1], horizon)


def zero(history: np.ndarray, horizon: int, season: int, settings: ForecastBaselines) -> np.ndarray:
    """0 at every step: for returns, the random-walk (no change in price) forecast."""
    return np.zeros(horizon)


def mean(history: np.ndarray, horizon: int, season: int, settings: ForecastBaselines) -> np.ndarray:
    return np.repeat(history.mean(), horizon)


def drift(
    history: np.ndarray, horizon: int, season: int, settings: ForecastBaselines
) -> np.ndarray:
    slope = (history[-1] - history[0]) / max(1, len(history) - 1)
    return history[-1] + slope * np.arange(1, horizon + 1)


def seasonal_naive(
    history: np.ndarray, horizon: int, season: int, settings: ForecastBaselines
) -> np.ndarray:
    """The last full season, repeated as often as the horizon needs."""
    return np.resize(history[-season:], horizon)


def ets(
    history: np.ndarray,
    horizon: int,
    season: int,
    settings: ForecastBaselines,
    damped: bool = False,
) -> np.ndarray:
    """Holt-Winters with additive trend and (when two seasons exist) additive season."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    seasonal = "add" if season > 1 and len(history) >= 2 * season else None
    model = ExponentialSmoothing(
        history, trend="add", damped_trend=damped, seasonal=seasonal,
        seasonal_periods=season if seasonal else None,
    )  # fmt: skip
    return model.fit().forecast(horizon)


def arima(
    history: np.ndarray, horizon: int, season: int, settings: ForecastBaselines
) -> np.ndarray:
    from statsmodels.tsa.arima.model import ARIMA

    seasonal = (
        (*settings.seasonal_order, season)
        if any(settings.seasonal_order) and season > 1
        else (0, 0, 0, 0)
    )
    return ARIMA(history, order=settings.order, seasonal_order=seasonal).fit().forecast(horizon)


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "naive": naive, "zero": zero, "mean": mean, "drift": drift, "seasonal_naive": seasonal_naive, "ets": ets,
    "ets_damped": lambda h, n, s, c: ets(h, n, s, c, damped=True), "arima": arima,
}  # fmt: skip


def label(method: str, settings: ForecastBaselines, season: int) -> str:
    if method != "arima":
        return method
    p, d, q = settings.order
    if any(settings.seasonal_order) and season > 1:
        big_p, big_d, big_q = settings.seasonal_order
        return f"sarima({p},{d},{q})x({big_p},{big_d},{big_q},{season})"
    return f"arima({p},{d},{q})"


def test_windows(bundle: Any) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per test window: the raw history before its origin; actuals (N, H, T); MASE scales (N, T)."""
    data = bundle.series
    horizon = data.window.horizon
    histories, actuals, scales = [], [], []
    for s, origin in data.windows["test"]:
        p = data.prepared[s]
        histories.append(p.series.target[:origin])
        actuals.append(p.series.target[origin : origin + horizon])
        scales.append(p.mase)
    return histories, np.asarray(actuals), np.asarray(scales)


def forecast_all(method: str, settings: ForecastBaselines, histories: list[np.ndarray], horizon: int,
                 season: int) -> np.ndarray:  # fmt: skip
    """Forecasts (N, H, T) of one method for every test window and target."""
    fn = METHODS[method]
    out = np.empty((len(histories), horizon, histories[0].shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' convergence chatter on short series
        for i, history in enumerate(histories):
            for t in range(history.shape[1]):
                out[i, :, t] = fn(history[:, t], horizon, season, settings)
    return out
