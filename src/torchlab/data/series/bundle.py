"""From checked series to a :class:`SeriesBundle` of windows, ready for loaders.

A window's inputs are a dict: ``past`` (lookback, past_width), ``future`` (horizon,
future_width), and per target the series' ``loc`` and ``scale`` (to invert scaling) and
``mase`` (the in-sample seasonal-naive error that scales MASE). Its target is the scaled
horizon (horizon, T). Carrying the inverse with each window lets one task score many
series, each in its own units.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from torchlab.data.base import Batch, DataBundle, DataSpec, SourceContext
from torchlab.data.series.frame import Series, SeriesSet
from torchlab.data.series.layout import Layout, matrices
from torchlab.data.series.windows import (
    Cuts,
    Features,
    Scaler,
    ScalerName,
    TimeSplit,
    Windowing,
    calendar,
    cut,
    origins,
)

SPLITS = ("train", "val", "test")


def default_season(freq: str) -> int:
    """The usual seasonal period of a frequency (1: none)."""
    code = pd.tseries.frequencies.to_offset(freq).rule_code.split("-")[0].upper()
    for prefix, season in (("Q", 4), ("MS", 12), ("ME", 12), ("M", 12), ("W", 52)):
        if code.startswith(prefix):
            return season
    return {"D": 7, "B": 5, "H": 24, "h": 24}.get(code, 1)


def seasonal_naive_error(values: np.ndarray, season: int) -> np.ndarray:
    """Mean absolute error of the in-sample seasonal-naive forecast, per column (MASE scale).

    Hyndman & Koehler (2006), https://doi.org/10.1016/j.ijforecast.2006.03.001.
    """
    season = season if len(values) > season else 1
    error = np.abs(values[season:] - values[:-season]).mean(axis=0)
    return np.where(error > 0, error, 1.0)


@dataclass
class Prepared:
    """One series scaled, with its input matrices and split positions."""

    series: Series
    cuts: Cuts
    target_scaler: Scaler
    past_scaler: Scaler
    future_scaler: Scaler
    past_in: np.ndarray  # (N, past_width)
    future_in: np.ndarray  # (N, future_width)
    target: np.ndarray  # (N, T) scaled
    mase: np.ndarray  # (T,)


def prepare(
    s: Series,
    cuts: Cuts,
    layout: Layout,
    freq: str,
    scaler: ScalerName,
    features: Features,
    season: int,
) -> Prepared:
    """Scale with training-part statistics only and build the input matrices."""
    train = slice(0, cuts.val)
    scalers = [Scaler.fit(v[train], scaler) for v in (s.target, s.past, s.future)]
    target, past, future = (
        sc.transform(v) for sc, v in zip(scalers, (s.target, s.past, s.future), strict=True)
    )
    cal = calendar(s.index, freq) if features.calendar else np.zeros((len(s), 0))
    past_in, future_in = matrices(layout, target, past, future, cal)
    mase = seasonal_naive_error(s.target[: cuts.test], season)  # everything before the test
    return Prepared(s, cuts, *scalers, past_in, future_in, target.astype(np.float32), mase)


class WindowDataset(Dataset):
    """The windows of one split, gathered once into tensors and served whole batches at a time."""

    def __init__(self, prepared: list[Prepared], windows: list[tuple[int, int]], window: Windowing):
        self.windows = windows
        lookback, horizon = window.lookback, window.horizon
        parts: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("past", "future", "loc", "scale", "mase", "y")
        }
        for s, p in enumerate(prepared):
            starts = np.asarray([o for i, o in windows if i == s], dtype=np.int64)
            back = starts[:, None] + np.arange(-lookback, 0)  # (W, L) row numbers
            ahead = starts[:, None] + np.arange(horizon)  # (W, H)
            count = len(starts)
            parts["past"].append(torch.from_numpy(p.past_in[back]))  # (W, L, Fp)
            parts["future"].append(torch.from_numpy(p.future_in[ahead]))  # (W, H, Ff)
            parts["y"].append(torch.from_numpy(p.target[ahead]))  # (W, H, T)
            for key, values in (
                ("loc", p.target_scaler.loc),
                ("scale", p.target_scaler.scale),
                ("mase", p.mase),
            ):
                parts[key].append(torch.tensor(values, dtype=torch.float32).expand(count, -1))
        order = np.argsort([s for s, _ in windows], kind="stable")  # back to the windows' order
        inverse = torch.from_numpy(np.argsort(order, kind="stable"))
        self.tensors = {k: torch.cat(v)[inverse] for k, v in parts.items()}

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        batch = self.__getitems__([i])
        return {k: v[0] for k, v in batch.inputs.items()}, batch.target[0]

    def __getitems__(self, indices: list[int]) -> Batch:
        """A whole batch by indexing (``DataLoader`` calls this instead of per-item access)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        inputs = {k: v[index] for k, v in self.tensors.items() if k != "y"}
        return Batch(inputs, self.tensors["y"][index])


def collate_windows(items: Batch | list[tuple[dict[str, torch.Tensor], torch.Tensor]]) -> Batch:
    """Stack window items into a :class:`Batch` (a batch gathered whole passes through)."""
    if isinstance(items, Batch):
        return items
    inputs = {key: torch.stack([x[key] for x, _ in items]) for key in items[0][0]}
    return Batch(inputs, torch.stack([y for _, y in items]))


@dataclass
class SeriesData:
    """What baselines, reports and backtests need beyond the windows: the raw series."""

    sset: SeriesSet
    prepared: list[Prepared]
    windows: dict[str, list[tuple[int, int]]]
    window: Windowing
    season: int
    layout: Layout
    cache: dict[str, Any] = field(default_factory=dict)  # e.g. baseline forecasts for the report


@dataclass
class SeriesBundle(DataBundle):
    """A :class:`DataBundle` of forecasting windows that also carries the raw series."""

    series: SeriesData | None = None


def build_bundle(
    sset: SeriesSet,
    context: SourceContext,
    *,
    window: Windowing,
    split: TimeSplit,
    scaler: ScalerName,
    features: Features,
    season: int | None,
) -> SeriesBundle:
    """Split, scale and window every series of ``sset``."""
    from torchlab.data.series.featurizer import SeriesFeaturizer

    layout = Layout(
        len(sset.target_names), tuple(sorted(set(features.lags))), len(sset.past_names),
        len(sset.future_names), 0, window.horizon,
    )  # fmt: skip
    if features.calendar:
        width = calendar(sset.series[0].index[:1], sset.freq).shape[1]
        layout = dataclasses.replace(layout, calendar=width)
    season = season or default_season(sset.freq)
    history = window.lookback + layout.history
    prepared, windows = [], {name: [] for name in SPLITS}
    for i, s in enumerate(sset.series):
        where = sset.name if len(sset.series) == 1 else f"series '{s.id}' of {sset.name}"
        cuts = cut(s.index, split, context, history + window.horizon, where)
        prepared.append(prepare(s, cuts, layout, sset.freq, scaler, features, season))
        for name, found in origins(cuts, window, history).items():
            windows[name] += [(i, o) for o in found]
    spec = DataSpec(
        (window.lookback, layout.past_width), "continuous", target_names=sset.target_names,
        horizon=window.horizon, future_width=layout.future_width,
    )  # fmt: skip
    data = SeriesData(sset, prepared, windows, window, season, layout)
    splits = {name: WindowDataset(prepared, windows[name], window) for name in SPLITS}
    return SeriesBundle(
        **splits, spec=spec,
        featurizer=SeriesFeaturizer.fit(data, scaler=scaler, features=features),
        summary=summary(data), collate=collate_windows, series=data,
    )  # fmt: skip


def rolling_windows(data: SeriesData, split: str) -> WindowDataset:
    """The windows of ``split`` at every origin (stride 1), whatever the split's own stride:
    a rolling-origin backtest of the trained model over that part of each series."""
    history = data.window.lookback + data.layout.history
    single = data.window.model_copy(update={"eval_stride": 1})
    windows = [
        (i, o) for i, p in enumerate(data.prepared) for o in origins(p.cuts, single, history)[split]
    ]
    return WindowDataset(data.prepared, windows, data.window)


def summary(data: SeriesData) -> dict[str, Any]:
    """Facts for the report: windows per split, the split dates, frequency and season."""
    first = data.prepared[0]
    index = first.series.index
    cuts = first.cuts
    return {
        "sizes": {name: len(w) for name, w in data.windows.items()},
        "series": len(data.prepared),
        "frequency": data.sset.freq,
        "season": data.season,
        "lookback": data.window.lookback,
        "horizon": data.window.horizon,
        "train": f"{index[0]} .. {index[cuts.val - 1]}" if cuts.val else "",
        "val": f"{index[cuts.val]} .. {index[cuts.test - 1]}" if cuts.test > cuts.val else "",
        "test": f"{index[cuts.test]} .. {index[cuts.end - 1]}" if cuts.end > cuts.test else "",
        "targets": list(data.sset.target_names),
        "past_covariates": list(data.sset.past_names),
        "future_covariates": list(data.sset.future_names),
        **({"filled": data.sset.filled} if data.sset.filled else {}),
    }
