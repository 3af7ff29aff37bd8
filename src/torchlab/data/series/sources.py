"""Series sources: a user's CSV/Parquet, the ``statsmodels.datasets`` series, generated demand.

Every source takes the same window, split, scaler, feature and fill settings, so
``data.source.window.lookback=36`` means the same everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from torchlab.data.base import SourceContext
from torchlab.data.series.bundle import SeriesBundle, build_bundle
from torchlab.data.series.frame import Fill, read_series, read_table
from torchlab.data.series.windows import Features, ScalerName, TimeSplit, Windowing
from torchlab.errors import DataError
from torchlab.registry import DATASETS


def _bundle(
    frame: pd.DataFrame, context: SourceContext, name: str, **settings: object
) -> SeriesBundle:
    reading = {k: settings.pop(k) for k in list(settings) if k not in _WINDOWING}
    sset = read_series(frame, name=name, **reading)  # type: ignore[arg-type]
    return build_bundle(sset, context, **settings)  # type: ignore[arg-type]


_WINDOWING = ("window", "split", "scaler", "features", "season")
# Defaults (frozen settings, safe to share between calls).
WINDOW, SPLIT, FEATURES = Windowing(), TimeSplit(), Features()
DEMAND_WINDOW = Windowing(lookback=28, horizon=14)
DEMAND_SPLIT = TimeSplit(val_size=56, test_size=56)
DEMAND_FEATURES = Features(calendar=True, lags=[7, 14])
PRICE_WINDOW = Windowing(lookback=20, horizon=5)


@DATASETS.register("series")
def series(
    context: SourceContext,
    /,
    *,
    path: str,
    time_column: str = "timestamp",
    targets: list[str] = ["value"],  # noqa: B006 - validated, never mutated
    id_column: str | None = None,
    past_covariates: list[str] = [],  # noqa: B006
    future_covariates: list[str] = [],  # noqa: B006
    freq: str | None = None,
    fill: Fill = "none",
    window: Windowing = WINDOW,
    split: TimeSplit = SPLIT,
    scaler: ScalerName = "standard",
    features: Features = FEATURES,
    season: int | None = None,
) -> SeriesBundle:
    """A CSV or Parquet file of one or many series (one row per series and timestamp).

    Args:
        path: The file.
        time_column: Its timestamp column.
        targets: The column(s) to forecast.
        id_column: The column naming each series, when the file holds several.
        past_covariates: Columns known only up to the forecast origin (e.g. footfall).
        future_covariates: Columns known ahead (promotions, holidays).
        freq: A pandas frequency; inferred from the timestamps when None.
        fill: How gaps and NaN are filled: none (report them), ffill, interpolate or zero.
        window: lookback, horizon, stride (training), eval_stride (validation/test).
        split: Where validation and test start (timestamps or step counts).
        scaler: standard, minmax, robust or none; fitted per series on the training part.
        features: calendar (sin/cos of the calendar position) and lags (lagged targets).
        season: The seasonal period for MASE and seasonal baselines (default by frequency).
    """
    return _bundle(
        read_table(path), context, Path(path).name, time_column=time_column, targets=targets,
        id_column=id_column, past_covariates=past_covariates, future_covariates=future_covariates,
        freq=freq, fill=fill, window=window, split=split, scaler=scaler, features=features, season=season,
    )  # fmt: skip


def statsmodels_frame(name: str) -> tuple[pd.DataFrame, str, list[str]]:
    """A ``statsmodels.datasets`` series as (table with a ``timestamp`` column, freq, targets)."""
    import statsmodels.api as sm

    datasets = sm.datasets
    if name == "co2":  # weekly Mauna Loa readings -> monthly means (NaN where a month has none)
        weekly = datasets.co2.load_pandas().data["co2"]
        monthly = weekly.resample("MS").mean()
        return monthly.rename_axis("timestamp").reset_index(), "MS", ["co2"]
    if name == "sunspots":
        data = datasets.sunspots.load_pandas().data
        years = pd.to_datetime(data["YEAR"].astype(int).astype(str), format="%Y")
        return (
            pd.DataFrame({"timestamp": years, "sunspots": data["SUNACTIVITY"]}),
            "YS",
            ["sunspots"],
        )
    if name == "nile":
        data = datasets.nile.load_pandas().data
        years = pd.to_datetime(data["year"].astype(int).astype(str), format="%Y")
        return pd.DataFrame({"timestamp": years, "volume": data["volume"]}), "YS", ["volume"]
    if name == "elnino":  # one row per year, one column per month -> one monthly series
        data = datasets.elnino.load_pandas().data
        long = data.melt(id_vars="YEAR", var_name="month", value_name="temperature")
        long["timestamp"] = pd.to_datetime(
            long["YEAR"].astype(int).astype(str) + "-" + long["month"], format="%Y-%b"
        )
        return long.sort_values("timestamp")[["timestamp", "temperature"]], "MS", ["temperature"]
    data = datasets.macrodata.load_pandas().data  # quarterly US macro-economics
    quarters = pd.PeriodIndex.from_fields(
        year=data["year"].astype(int), quarter=data["quarter"].astype(int), freq="Q"
    ).to_timestamp()
    return data.drop(columns=["year", "quarter"]).assign(timestamp=quarters), "QS", ["realgdp"]


def _statsmodels(name: str):  # type: ignore[no-untyped-def]
    def source(
        context: SourceContext,
        /,
        *,
        targets: list[str] | None = None,
        past_covariates: list[str] = [],  # noqa: B006
        future_covariates: list[str] = [],  # noqa: B006
        fill: Fill = "none",
        window: Windowing = WINDOW,
        split: TimeSplit = SPLIT,
        scaler: ScalerName = "standard",
        features: Features = FEATURES,
        season: int | None = None,
    ) -> SeriesBundle:
        frame, freq, default = statsmodels_frame(name)
        return _bundle(
            frame, context, f"statsmodels' {name}", time_column="timestamp", targets=targets or default,
            past_covariates=past_covariates, future_covariates=future_covariates, freq=freq, fill=fill,
            window=window, split=split, scaler=scaler, features=features, season=season,
        )  # fmt: skip

    source.__name__ = name
    source.__doc__ = f"statsmodels' ``{name}`` series (offline); settings as for ``series``."
    return source


for _name in ("co2", "sunspots", "nile", "elnino", "macrodata"):
    DATASETS.register(_name)(_statsmodels(_name))


def demand_frame(stores: int, items: int, days: int, seed: int) -> pd.DataFrame:
    """Daily unit sales of ``stores x items`` products with weekly seasonality and promotions.

    Each series has its own level, weekly profile (weekends sell more), slow trend and yearly
    swing; on promotion days (known ahead, about 10% of days, in runs of 1-4) sales rise by
    30-80%. Counts are Poisson around that mean.
    """
    rng = np.random.default_rng(seed)
    index = pd.date_range("2022-01-03", periods=days, freq="D")
    t = np.arange(days)
    rows = []
    for store in range(stores):
        for item in range(items):
            level = rng.uniform(20, 120)
            weekly = 1 + rng.uniform(0.1, 0.5) * np.array([-0.3, -0.4, -0.2, 0.0, 0.3, 0.9, 0.7])
            yearly = 1 + rng.uniform(0.0, 0.2) * np.sin(2 * np.pi * (t / 365.25 + rng.uniform()))
            trend = 1 + rng.uniform(-0.2, 0.4) * t / days
            promo = np.zeros(days)
            for start in np.flatnonzero(rng.random(days) < 0.035):
                promo[start : start + rng.integers(1, 5)] = 1.0
            lift = 1 + rng.uniform(0.3, 0.8) * promo
            mean = level * weekly[index.day_of_week] * yearly * trend * lift
            rows.append(
                pd.DataFrame(
                    {"date": index, "series": f"s{store}-i{item}", "sales": rng.poisson(mean),
                     "promo": promo}
                )
            )  # fmt: skip
    return pd.concat(rows, ignore_index=True)


@DATASETS.register("demand-synthetic")
def demand_synthetic(
    context: SourceContext,
    /,
    *,
    stores: int = 4,
    items: int = 5,
    days: int = 730,
    seed: int = 7,
    window: Windowing = DEMAND_WINDOW,
    split: TimeSplit = DEMAND_SPLIT,
    scaler: ScalerName = "standard",
    features: Features = DEMAND_FEATURES,
    season: int | None = 7,
) -> SeriesBundle:
    """Retail demand: related daily series with a known-future ``promo`` covariate.

    Args:
        stores, items: Series are every (store, item) pair.
        days: Days of history per series.
        seed: The generator's seed (fixed: the same data every run).
    """
    return _bundle(
        demand_frame(stores, items, days, seed), context, "demand-synthetic",
        time_column="date", targets=["sales"], id_column="series", future_covariates=["promo"],
        freq="D", fill="none", window=window, split=split, scaler=scaler, features=features, season=season,
    )  # fmt: skip


def price_frame(days: int, seed: int, start: float = 100.0) -> pd.DataFrame:
    """A business-daily closing price: geometric Brownian motion (about 8%/year drift, 25% vol)."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.08 / 252, 0.25 / np.sqrt(252), days)
    index = pd.bdate_range("2019-01-01", periods=days)
    return pd.DataFrame({"date": index, "close": np.round(start * np.exp(np.cumsum(returns)), 4)})


@DATASETS.register("prices")
def prices(
    context: SourceContext,
    /,
    *,
    path: str | None = None,
    time_column: str = "date",
    price_column: str = "close",
    returns: Literal["log", "simple"] = "log",
    freq: str | None = "B",
    fill: Fill = "none",
    days: int = 1000,
    seed: int = 11,
    window: Windowing = PRICE_WINDOW,
    split: TimeSplit = SPLIT,
    scaler: ScalerName = "standard",
    features: Features = FEATURES,
    season: int | None = 1,
) -> SeriesBundle:
    """Daily returns of a price series: a user's CSV (``path``) or a generated random walk.

    Prices are not stationary, so the forecast target is the return from one close to the
    next (``log``: ln(p_t / p_t-1), ``simple``: p_t / p_t-1 - 1). Market holidays are gaps on
    the business-day grid: set ``fill: ffill`` (no trade: a zero return) or ``freq``.

    Args:
        path: A CSV/Parquet of prices; None generates ``days`` business days with ``seed``.
        time_column, price_column: The columns of the file.
        returns: log or simple returns.
    """
    frame = price_frame(days, seed) if path is None else read_table(path)
    name = "generated prices" if path is None else Path(path).name
    for column in (time_column, price_column):
        if column not in frame.columns:
            raise DataError(
                f"{name} has no column '{column}'; its columns are {', '.join(map(str, frame.columns))}. "
                "Set data.source.time_column / price_column."
            )
    sset = read_series(
        frame, time_column=time_column, targets=[price_column], freq=freq, fill=fill, name=name
    )
    price = sset.series[0].target[:, 0]
    if (price <= 0).any():
        raise DataError(
            f"{name} holds prices <= 0 at {sset.series[0].index[price <= 0][0]}; returns need positive prices."
        )
    ratio = price[1:] / price[:-1]
    change = np.log(ratio) if returns == "log" else ratio - 1
    table = pd.DataFrame({time_column: sset.series[0].index[1:], "return": change})
    return _bundle(
        table, context, name, time_column=time_column, targets=["return"], freq=sset.freq,
        fill="none", window=window, split=split, scaler=scaler, features=features, season=season,
    )  # fmt: skip
