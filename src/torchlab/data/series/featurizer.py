"""What forecasting beyond the end of the data needs, saved as ``featurizer.json``.

Per series: its id, last timestamp, the last ``lookback + largest lag`` raw rows, the
scalers fitted on its training part and its MASE scale; plus the frequency, the window and
feature settings. :meth:`SeriesFeaturizer.forecast_inputs` rebuilds a model input from
these through the same layout as training, so a forecast sees exactly what training saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from torchlab.data.featurizers import FEATURIZERS
from torchlab.data.series.layout import Layout, matrices
from torchlab.data.series.windows import Features, Scaler, calendar, future_index
from torchlab.errors import DataError


@dataclass
class SeriesTail:
    """The end of one series: enough raw rows for one more window."""

    id: str
    index: list[str]  # timestamps of the rows kept
    target: list[list[float]]
    past: list[list[float]]
    future: list[list[float]]
    scalers: dict[str, dict[str, list[float]]]  # target / past / future

    def scaler(self, name: str) -> Scaler:
        return Scaler.from_dict(self.scalers[name])


@FEATURIZERS.register("series")
@dataclass
class SeriesFeaturizer:
    """Turns the saved end of each series (and future covariates) into model inputs."""

    kind: ClassVar[str] = "series"
    freq: str
    lookback: int
    horizon: int
    season: int
    scaler: str
    features: dict[str, Any]
    layout: dict[str, Any]
    target_names: list[str]
    past_names: list[str]
    future_names: list[str]
    tails: list[SeriesTail]

    @classmethod
    def fit(cls, data: Any, *, scaler: str, features: Features) -> SeriesFeaturizer:
        """Keep the last rows of every series of a :class:`~.bundle.SeriesData`."""
        keep = data.window.lookback + data.layout.history
        tails = []
        for p in data.prepared:
            s, end = p.series, p.cuts.end
            rows = slice(max(0, end - keep), end)
            tails.append(
                SeriesTail(
                    s.id, [str(t) for t in s.index[rows]], s.target[rows].tolist(),
                    s.past[rows].tolist(), s.future[rows].tolist(),
                    {n: sc.to_dict() for n, sc in (
                        ("target", p.target_scaler), ("past", p.past_scaler), ("future", p.future_scaler),
                    )},
                )
            )  # fmt: skip
        sset = data.sset
        return cls(
            sset.freq, data.window.lookback, data.window.horizon, data.season, scaler,
            features.model_dump(), dict(data.layout.__dict__), list(sset.target_names),
            list(sset.past_names), list(sset.future_names), tails,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k != "tails"}
        return {"kind": self.kind, **state, "tails": [t.__dict__ for t in self.tails]}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> SeriesFeaturizer:
        state = {k: v for k, v in state.items() if k != "kind"}
        state["tails"] = [SeriesTail(**t) for t in state["tails"]]
        return cls(**state)

    def load_inputs(self, paths: list[Path]) -> tuple[torch.Tensor, list[str]]:
        raise DataError(
            "A forecasting run forecasts from the end of its own data: run "
            "'torchlab predict RUN_DIR --horizon N' (with a CSV of future covariates when the "
            "model uses them)."
        )

    def future_index(self, tail: SeriesTail, steps: int) -> pd.DatetimeIndex:
        return future_index(pd.Timestamp(tail.index[-1]), self.freq, steps)

    def forecast_inputs(
        self,
        future: pd.DataFrame | None = None,
        id_column: str | None = None,
        time_column: str = "timestamp",
    ) -> dict[str, torch.Tensor]:
        """One input per series for the ``horizon`` steps after its last timestamp.

        Args:
            future: Known-future covariates over the horizon (a row per series and
                timestamp); needed only when the model was trained with some.
            id_column, time_column: The columns of ``future`` naming series and timestamps.
        """
        layout = Layout(**{**self.layout, "lags": tuple(self.layout["lags"])})
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("past", "future", "loc", "scale")}
        for tail in self.tails:
            ahead = self.future_index(tail, self.horizon)
            known = self.future_values(tail, ahead, future, id_column, time_column)
            index = pd.DatetimeIndex([*pd.to_datetime(tail.index), *ahead])
            target_scaler = tail.scaler("target")
            blank = np.zeros((self.horizon, len(self.target_names)))  # read by no lag
            target = target_scaler.transform(np.concatenate([np.asarray(tail.target), blank]))
            target[len(tail.target) :] = 0.0
            past = tail.scaler("past").transform(
                np.concatenate([np.asarray(tail.past).reshape(len(tail.index), -1),
                                np.zeros((self.horizon, len(self.past_names)))])
            )  # fmt: skip
            fut = tail.scaler("future").transform(
                np.concatenate([np.asarray(tail.future).reshape(len(tail.index), -1), known])
            )
            cal = (
                calendar(index, self.freq)
                if self.features["calendar"]
                else np.zeros((len(index), 0))
            )
            past_in, future_in = matrices(layout, target, past, fut, cal)
            end = len(tail.index)
            rows["past"].append(torch.from_numpy(past_in[end - self.lookback : end]))
            rows["future"].append(torch.from_numpy(future_in[end:]))
            rows["loc"].append(torch.tensor(target_scaler.loc, dtype=torch.float32))
            rows["scale"].append(torch.tensor(target_scaler.scale, dtype=torch.float32))
        return {k: torch.stack(v) for k, v in rows.items()}

    def future_values(
        self, tail: SeriesTail, ahead: pd.DatetimeIndex, future: pd.DataFrame | None,
        id_column: str | None, time_column: str,
    ) -> np.ndarray:  # fmt: skip
        """The known-future covariates of one series over ``ahead`` (H, F)."""
        if not self.future_names:
            return np.zeros((len(ahead), 0))
        if future is None:
            raise DataError(
                f"This model uses the known-future covariates {', '.join(self.future_names)}: "
                f"pass a CSV with columns {time_column}"
                f"{', ' + id_column if id_column else ''}, {', '.join(self.future_names)} "
                "covering the forecast horizon."
            )
        missing = [c for c in (time_column, *self.future_names) if c not in future.columns]
        if missing:
            raise DataError(
                f"The future covariates file has no column {', '.join(map(repr, missing))}; "
                f"it needs {time_column} and {', '.join(self.future_names)}."
            )
        rows = future
        if id_column and id_column in future.columns:
            rows = future[future[id_column].astype(str) == tail.id]
        rows = rows.assign(**{time_column: pd.to_datetime(rows[time_column])}).set_index(
            time_column
        )
        absent = ahead.difference(rows.index)
        if len(absent):
            shown = ", ".join(str(t) for t in absent[:5])
            raise DataError(
                f"The future covariates of series '{tail.id}' lack the timestamps {shown}; "
                "give a row for every forecast step."
            )
        return rows.loc[ahead, list(self.future_names)].to_numpy(dtype=np.float64)
