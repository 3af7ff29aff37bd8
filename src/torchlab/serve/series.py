"""Series requests: a forecasting run forecasts its horizon after a history the caller sends.

``{"series": [{"timestamps": [...], "history": {column: [...]}, "future": {...}}]}``: per
item the recent history (timestamps, every target, the past and known-future covariates
the run was trained with) and, for models with known-future covariates, their values over
the horizon. The run's own scalers of that series and the featurizer's
:meth:`~torchlab.data.series.featurizer.SeriesFeaturizer.forecast_inputs` (what
``torchlab predict RUN --horizon`` runs) build the model input, so a served forecast is the
command's forecast for the same history.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import torch
from pydantic import ConfigDict, Field

from torchlab.data.series.windows import future_index
from torchlab.errors import DataError
from torchlab.serve.requests import REQUEST_KINDS, Finite, Later, Limits, RequestKind, concat


def columns_model(name: str, columns: list[str]) -> type[pydantic.BaseModel]:
    """A body part with one required list of finite numbers per column (extra ones refused)."""
    fields: dict[str, Any] = {
        f"c{i}": (list[Finite], Field(..., alias=column)) for i, column in enumerate(columns)
    }
    return pydantic.create_model(
        name, __config__=ConfigDict(extra="forbid", populate_by_name=False), **fields
    )


@REQUEST_KINDS.register("series")
def series(predictor: Any, limits: Limits) -> RequestKind:
    """``{"series": [{"id", "timestamps", "history", "future"}, ...]}``: one forecast each."""
    featurizer = predictor.featurizer
    history_columns = [*featurizer.target_names, *featurizer.past_names, *featurizer.future_names]
    future_model = (
        columns_model("Future", list(featurizer.future_names)) if featurizer.future_names else None
    )
    item = pydantic.create_model(
        "SeriesHistory",
        __config__=ConfigDict(extra="forbid"),
        id=(str | None, None),
        timestamps=(list[datetime], Field(..., min_length=1)),
        history=(columns_model("History", history_columns), ...),
        future=(future_model | None if future_model else None, None),  # type: ignore[operator]
    )
    body = pydantic.create_model(
        "SeriesRequest",
        __config__=ConfigDict(extra="forbid"),
        series=(list[item], Field(..., min_length=1, max_length=limits.max_rows)),  # type: ignore[valid-type]
    )

    def inputs(request: Any) -> dict[str, torch.Tensor]:
        return concat([item_inputs(featurizer, i, part) for i, part in enumerate(request.series)])

    def decode(request: Any) -> Later:
        return Later(lambda: inputs(request))  # histories go through pandas: a thread

    def records(outputs: torch.Tensor, inputs: Any, request: Any) -> list[dict[str, Any]]:
        values = predictor.task.original(outputs, inputs)  # each (B, H, T)
        if not all(torch.isfinite(array).all() for array in values.values()):
            raise DataError(
                "Field 'series.history': the forecast overflows for this history; send values "
                "within the range seen in training."
            )
        answers = []
        for b, part in enumerate(request.series):
            last = pd.Timestamp(part.timestamps[-1])
            ahead = future_index(last, featurizer.freq, featurizer.horizon)
            answer: dict[str, Any] = {"timestamps": [t.isoformat() for t in ahead]}
            for kind, array in values.items():
                answer[kind] = {
                    target: array[b, :, t].double().tolist()
                    for t, target in enumerate(featurizer.target_names)
                }
            answers.append(answer)
        return answers

    def example(rows: int) -> dict[str, torch.Tensor]:
        tail = featurizer.tails[0]
        zeros = np.zeros((featurizer.horizon, len(featurizer.future_names)))
        return concat([tail_inputs(featurizer, tail, zeros)] * rows)

    return RequestKind(body, decode, records=records, example=example)


def tail_of(featurizer: Any, series_id: str | None, index: int) -> Any:
    """The run's saved end of the series ``series_id`` (its scalers), or of its only series."""
    tails = featurizer.tails
    if series_id is None:
        if len(tails) == 1:
            return tails[0]
        shown = ", ".join(repr(t.id) for t in tails[:5])
        raise DataError(
            f"Field 'series.{index}.id' is required: this model forecasts {len(tails)} series "
            f"({shown}{', ...' if len(tails) > 5 else ''}); name the one this history belongs to."
        )
    for tail in tails:
        if tail.id == series_id:
            return tail
    raise DataError(
        f"Field 'series.{index}.id' names the series '{series_id}', which the model was not "
        f"trained on; use one of {', '.join(repr(t.id) for t in tails[:5])}."
    )


def item_inputs(featurizer: Any, index: int, part: Any) -> dict[str, torch.Tensor]:
    """One history -> the model input of its forecast, with the run's scalers of its series."""
    where = f"series.{index}"
    stamps = check_timestamps(featurizer, part.timestamps, where)
    history = part.history.model_dump(by_alias=True)
    for column, values in history.items():
        if len(values) != len(stamps):
            raise DataError(
                f"Field '{where}.history.{column}' has {len(values)} values for "
                f"{len(stamps)} timestamps; send one value per timestamp."
            )
    keep = featurizer.lookback + max(featurizer.layout["lags"], default=0)
    saved = tail_of(featurizer, part.id, index)
    table = pd.DataFrame(history, index=stamps).iloc[-keep:]

    def block(names: list[str]) -> list[list[float]]:
        return table[list(names)].to_numpy(dtype=np.float64).reshape(len(table), -1).tolist()

    tail = dataclasses.replace(
        saved,
        index=[str(t) for t in table.index],
        target=block(featurizer.target_names),
        past=block(featurizer.past_names),
        future=block(featurizer.future_names),
    )
    with np.errstate(over="ignore", invalid="ignore"):  # reported below
        inputs = tail_inputs(featurizer, tail, future_values(featurizer, part, where))
    if not all(torch.isfinite(value).all() for value in inputs.values()):
        raise DataError(
            f"Field '{where}.history' holds values too large to represent after scaling; send "
            "values within the range seen in training."
        )
    return inputs


def check_timestamps(featurizer: Any, times: list[datetime], where: str) -> pd.DatetimeIndex:
    """Enough consecutive steps at the run's frequency, oldest first, with room for the
    forecast's own timestamps."""
    try:
        stamps = pd.DatetimeIndex(times)
        future_index(stamps[-1], featurizer.freq, featurizer.horizon)
    except (ValueError, TypeError, OverflowError):  # mixed time zones, out of pandas' range
        raise DataError(
            f"Field '{where}.timestamps' mixes time zones or lies outside the years 1677-2262; "
            "send timestamps of one time zone (or none) within that range."
        ) from None
    need = featurizer.lookback + max(featurizer.layout["lags"], default=0)
    if len(stamps) < need:
        raise DataError(
            f"Field '{where}.timestamps' holds {len(stamps)} steps; the model reads the last "
            f"{need}: send at least {need} steps of history."
        )
    if not stamps.is_monotonic_increasing or not stamps.is_unique:
        at = int(np.flatnonzero(np.diff(stamps.asi8) <= 0)[0]) + 1
        raise DataError(
            f"Field '{where}.timestamps' is not in increasing order at position {at} "
            f"({stamps[at]} after {stamps[at - 1]}); send the history oldest first."
        )
    grid = pd.date_range(stamps[0], periods=len(stamps), freq=featurizer.freq)
    if not grid.equals(stamps):
        at = int(np.flatnonzero(grid != stamps)[0])
        raise DataError(
            f"Field '{where}.timestamps' skips a step at position {at} ({stamps[at]}, expected "
            f"{grid[at]}); send consecutive steps at the model's frequency '{featurizer.freq}'."
        )
    return stamps


def future_values(featurizer: Any, part: Any, where: str) -> np.ndarray:
    """The known-future covariates over the horizon (H, F)."""
    names, horizon = list(featurizer.future_names), featurizer.horizon
    if not names:
        if part.future is not None:
            raise DataError(
                f"Field '{where}.future' is not used: this model has no known-future covariates."
            )
        return np.zeros((horizon, 0))
    if part.future is None:
        raise DataError(
            f"Field '{where}.future' is required: send {', '.join(names)} for the {horizon} "
            "forecast steps."
        )
    future = part.future.model_dump(by_alias=True)
    for column, values in future.items():
        if len(values) != horizon:
            raise DataError(
                f"Field '{where}.future.{column}' has {len(values)} values; send one per "
                f"forecast step ({horizon})."
            )
    return np.asarray([future[n] for n in names], dtype=np.float64).T


def tail_inputs(featurizer: Any, tail: Any, future: np.ndarray) -> dict[str, torch.Tensor]:
    """The model input after ``tail`` through the featurizer's own forecasting path."""
    ahead = featurizer.future_index(tail, featurizer.horizon)
    frame = pd.DataFrame(future, columns=list(featurizer.future_names)).assign(timestamp=ahead)
    one = dataclasses.replace(featurizer, tails=[tail])
    return one.forecast_inputs(frame if featurizer.future_names else None, None, "timestamp")
