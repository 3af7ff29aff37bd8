"""Splitting series by time, scaling them and cutting them into windows.

Each series is cut at two positions, ``val_start`` and ``test_start``: train is before
``val_start``, validation between them, test from ``test_start`` to the end. A window is an
origin ``o``: its inputs are the ``lookback`` steps before ``o`` and its targets the
``horizon`` steps from ``o``. Training windows lie wholly in the training part (inputs and
targets); validation and test windows keep all their targets inside their own part and read
only earlier values as inputs, as a forecast made at ``o`` would.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from torchlab.data.base import SourceContext
from torchlab.errors import DataError

ScalerName = Literal["standard", "minmax", "robust", "none"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Windowing(_Settings):
    """How series become windows: ``lookback`` inputs, ``horizon`` targets, steps between."""

    lookback: int = Field(24, gt=0)
    horizon: int = Field(12, gt=0)
    stride: int = Field(1, gt=0)  # between training windows
    eval_stride: int | None = Field(None, gt=0)  # between val/test windows; default: horizon


class TimeSplit(_Settings):
    """Where validation and test begin, by timestamp or by a number of steps per series.

    ``test_end`` drops later data. ``backtest_fold`` k moves the test part k test lengths
    earlier and drops everything after it (rolling-origin evaluation). Without timestamps or
    sizes the fractions ``data.split.val`` / ``data.split.test`` of each series are used.
    """

    val_start: str | None = None
    test_start: str | None = None
    test_end: str | None = None
    val_size: int | None = Field(None, ge=0)
    test_size: int | None = Field(None, gt=0)
    backtest_fold: int = Field(0, ge=0)

    @field_validator("val_start", "test_start", "test_end", mode="before")
    @classmethod
    def _date_as_text(cls, value: object) -> object:
        """YAML reads an unquoted ``2000-01-01`` (in a file or an override) as a date."""
        return value.isoformat() if isinstance(value, datetime.date) else value


class Features(_Settings):
    """Extra model inputs: calendar position (sin/cos) and lagged targets."""

    calendar: bool = False
    lags: list[int] = []


@dataclass(frozen=True)
class Cuts:
    """Positions of one series: ``[0, val) train, [val, test) validation, [test, end) test``."""

    val: int
    test: int
    end: int


def position(index: pd.DatetimeIndex, when: str, key: str) -> int:
    try:
        stamp = pd.Timestamp(when)
    except ValueError:
        raise DataError(f"data.source.split.{key} '{when}' is not a timestamp.") from None
    return int(index.searchsorted(stamp))


def cut(
    index: pd.DatetimeIndex, split: TimeSplit, context: SourceContext, need: int, where: str
) -> Cuts:
    """The split positions of one series; ``need`` is the shortest usable training part."""
    end = len(index)
    if split.test_end is not None:
        end = int(index.searchsorted(pd.Timestamp(split.test_end), side="right"))
    if split.test_start is not None:
        test = position(index, split.test_start, "test_start")
    elif split.test_size is not None:
        test = end - split.test_size
    else:
        test = end - round(context.test * end)
    shift = split.backtest_fold * (end - test)
    end, test = end - shift, test - shift
    if split.val_start is not None:
        val = position(index, split.val_start, "val_start") - shift
    elif split.val_size is not None:
        val = test - split.val_size
    else:
        val = test - round(context.val * test)
    if not 0 <= val <= test <= end or val < need:
        raise DataError(
            f"{where} leaves {max(val, 0)} training steps before validation ({end} steps in all, "
            f"test from step {test}); it needs at least {need} (lookback + horizon + largest lag). "
            "Shorten the lookback, the horizon or the validation/test parts, or use fewer backtest folds."
        )
    return Cuts(val, test, end)


def origins(cuts: Cuts, window: Windowing, history: int) -> dict[str, list[int]]:
    """Window origins per split; ``history`` steps must exist before each origin."""
    horizon, every = window.horizon, window.eval_stride or window.horizon
    return {
        "train": list(range(history, cuts.val - horizon + 1, window.stride)),
        "val": list(range(max(cuts.val, history), cuts.test - horizon + 1, every)),
        "test": list(range(max(cuts.test, history), cuts.end - horizon + 1, every)),
    }


@dataclass(frozen=True)
class Scaler:
    """``(x - loc) / scale`` per column; the inverse ``x * scale + loc`` is exact."""

    loc: np.ndarray  # (C,)
    scale: np.ndarray  # (C,)

    @classmethod
    def fit(cls, values: np.ndarray, name: ScalerName) -> Scaler:
        """Fit scikit-learn's scaler of that name on ``values`` (N, C) of the training part."""
        from sklearn import preprocessing

        width = values.shape[1]
        if name == "none" or width == 0:
            return cls(np.zeros(width), np.ones(width))
        if name == "standard":
            fitted = preprocessing.StandardScaler().fit(values)
            loc, scale = fitted.mean_, fitted.scale_
        elif name == "minmax":
            fitted = preprocessing.MinMaxScaler().fit(values)
            loc, scale = fitted.data_min_, fitted.data_range_
        else:
            fitted = preprocessing.RobustScaler().fit(values)
            loc, scale = fitted.center_, fitted.scale_
        scale = np.where(np.asarray(scale) > 0, scale, 1.0)  # a constant column stays put
        return cls(np.asarray(loc, dtype=np.float64), np.asarray(scale, dtype=np.float64))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.loc) / self.scale

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return values * self.scale + self.loc

    def to_dict(self) -> dict[str, list[float]]:
        return {"loc": self.loc.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, state: dict[str, list[float]]) -> Scaler:
        return cls(np.asarray(state["loc"], float), np.asarray(state["scale"], float))


# Calendar components by frequency: (name, period, value of a timestamp index).
_CALENDAR = {
    "hour": (24, lambda i: i.hour),
    "dayofweek": (7, lambda i: i.day_of_week),
    "dayofyear": (366, lambda i: i.day_of_year - 1),
    "week": (53, lambda i: i.isocalendar().week.to_numpy() - 1),
    "month": (12, lambda i: i.month - 1),
    "quarter": (4, lambda i: i.quarter - 1),
}


def calendar_parts(freq: str) -> list[str]:
    """The calendar positions that vary at ``freq`` and repeat within a year or less."""
    code = pd.tseries.frequencies.to_offset(freq).rule_code.split("-")[0].upper()
    if code.startswith(("Y", "A")):
        return []
    if code.startswith("Q"):
        return ["quarter"]
    if code.startswith("M"):
        return ["month"]
    if code.startswith("W"):
        return ["week", "month"]
    if code in ("D", "B", "C"):
        return ["dayofweek", "dayofyear"]
    return ["hour", "dayofweek"]


def calendar_columns(freq: str) -> list[str]:
    """The names of :func:`calendar`'s columns, in its order: ``month_sin``, ``month_cos``, ..."""
    return [f"{part}_{wave}" for part in calendar_parts(freq) for wave in ("sin", "cos")]


def calendar(index: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """Sin/cos of each calendar position, (N, 2 * parts): smooth across year ends."""
    columns = []
    for part in calendar_parts(freq):
        period, value = _CALENDAR[part]
        angle = 2 * np.pi * np.asarray(value(index), dtype=np.float64) / period
        columns += [np.sin(angle), np.cos(angle)]
    return np.stack(columns, axis=1) if columns else np.zeros((len(index), 0))


def future_index(last: pd.Timestamp, freq: str, steps: int) -> pd.DatetimeIndex:
    """The ``steps`` timestamps after ``last`` on the ``freq`` grid."""
    return pd.date_range(last, periods=steps + 1, freq=freq)[1:]
