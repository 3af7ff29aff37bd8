"""Reading and checking series tables: timestamps, targets, ids and covariates.

Problems are reported, never silently repaired: unsorted or duplicate timestamps, gaps in
the frequency grid and NaN values each raise a :class:`~torchlab.errors.DataError` that
names the series, the column and the offending timestamps. Gaps and NaN are filled only
when ``fill`` says how.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from torchlab.data.tables import rows_shown
from torchlab.errors import DataError
from torchlab.notices import notice

Fill = Literal["none", "ffill", "interpolate", "zero"]
SHOWN = 5  # offending timestamps listed in a message


@dataclass
class Series:
    """One series on a regular time grid.

    Attributes:
        id: The value of the id column ("0" for a file with one series).
        index: Timestamps, regular at the set's frequency.
        target: Target values, (N, T).
        past: Past-only covariates (known up to now), (N, P).
        future: Known-future covariates (promotions, holidays), (N, F).
    """

    id: str
    index: pd.DatetimeIndex
    target: np.ndarray
    past: np.ndarray
    future: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class SeriesSet:
    """Every series of a source, with the names of their columns and their frequency."""

    series: list[Series]
    freq: str
    target_names: tuple[str, ...]
    past_names: tuple[str, ...] = ()
    future_names: tuple[str, ...] = ()
    name: str = "the data"
    # Values that data.source.fill filled in (gaps and blanks), by series and column.
    filled: dict[str, dict[str, int]] = field(default_factory=dict)


def stamps(values: pd.Index | list[pd.Timestamp]) -> str:
    """The first few timestamps of ``values`` for a message, with a count of the rest."""
    values = [pd.Timestamp(v) for v in values]
    text = ", ".join(str(v.date() if v == v.normalize() else v) for v in values[:SHOWN])
    return text + (f" (and {len(values) - SHOWN} more)" if len(values) > SHOWN else "")


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame; a missing or unreadable file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Series file '{path}' does not exist; check data.source.path.")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:
        raise DataError(
            f"Series file '{path}' cannot be read as {path.suffix or 'CSV'} ({exc}); "
            "give a CSV or Parquet file."
        ) from None


def read_series(
    frame: pd.DataFrame,
    *,
    time_column: str,
    targets: list[str],
    id_column: str | None = None,
    past_covariates: list[str] = (),  # type: ignore[assignment]
    future_covariates: list[str] = (),  # type: ignore[assignment]
    freq: str | None = None,
    fill: Fill = "none",
    name: str = "the data",
) -> SeriesSet:
    """Check a table and turn it into regular series, one per id.

    Args:
        frame: The table, one row per (series, timestamp).
        time_column: The column of timestamps.
        targets: The column(s) to forecast.
        id_column: The column naming each series when the table holds several.
        past_covariates: Columns known only up to the forecast origin.
        future_covariates: Columns known ahead (calendar, promotions, prices set in advance).
        freq: A pandas frequency (``D``, ``W-SUN``, ``MS``, ``YS``); inferred when None.
        fill: How gaps and NaN are filled: ``none`` (report them), ``ffill``,
            ``interpolate`` (linear) or ``zero``.
        name: What the data is called in messages (a file name).
    """
    columns = [time_column, *targets, *past_covariates, *future_covariates]
    columns += [id_column] if id_column else []
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{name} has no column {', '.join(map(repr, missing))}; its columns are "
            f"{', '.join(map(str, frame.columns))}. Fix data.source."
        )
    if not targets:
        raise DataError(f"No target column is named for {name}; set data.source.targets.")
    times = parse_times(frame[time_column], time_column, name)
    frame = frame.reset_index(drop=True)
    frame = frame.assign(**{time_column: times.to_numpy(), ROW: range(len(frame))})
    groups = [("0", frame)] if id_column is None else list(frame.groupby(id_column, sort=True))
    parts = [(str(key), part.set_index(time_column)) for key, part in groups]

    def label(key: str) -> str:
        return name if id_column is None else f"series '{key}' of {name}"

    # Every problem of every series in one message, not one per run.
    problems = [p for key, part in parts for p in order_problems(part, label(key))]
    unique = [part.index.unique().sort_values() for _, part in parts]
    try:
        freq = freq or infer_freq(unique, name)
    except DataError as exc:
        raise DataError("; ".join([*problems, str(exc).rstrip(".")]) + ".") from None
    problems += [
        p
        for (key, _), index in zip(parts, unique, strict=True)
        for p in grid_problems(index, freq, fill, label(key))
    ]
    if problems:
        raise DataError("; ".join(problems) + ".")
    series, filled_in = [], {}
    for key, part in parts:
        part = on_grid(part, freq)
        columns = {"target": targets, "past": past_covariates, "future": future_covariates}
        values = {
            group: numeric(part, list(cols), fill, label(key)) for group, cols in columns.items()
        }
        series.append(Series(key, part.index, values["target"], values["past"], values["future"]))
        used = [*targets, *past_covariates, *future_covariates]
        if counts := {c: n for c, n in part[used].isna().sum().items() if n}:
            filled_in[label(key)] = {str(c): int(n) for c, n in counts.items()}
    if filled_in:
        shown = "; ".join(
            f"{where}: " + ", ".join(f"'{c}' {n}" for c, n in counts.items())
            for where, counts in filled_in.items()
        )
        notice(f"Filled missing values with data.source.fill={fill}: {shown}.")
    return SeriesSet(
        series, freq, tuple(targets), tuple(past_covariates), tuple(future_covariates), name,
        filled_in,
    )  # fmt: skip


def parse_times(values: pd.Series, column: str, name: str) -> pd.Series:
    times = pd.to_datetime(values, errors="coerce")
    bad = values[times.isna()]
    if len(bad):
        values = ", ".join(f"{v!r}" for v in bad.iloc[:SHOWN])
        raise DataError(
            f"Column '{column}' of {name} holds values that are not timestamps at "
            f"{rows_shown(list(range(len(values)))[:0] or [int(i) for i in bad.index])} ({values}); "
            "fix or remove those rows."
        )
    if getattr(times.dt, "tz", None) is not None:
        times = times.dt.tz_convert(None)  # one clock: UTC, without a zone
    return times


# The column that keeps each row's position in the file while the rows are regrouped.
ROW = "__row__"


def order_problems(part: pd.DataFrame, where: str) -> list[str]:
    """Duplicate and unsorted timestamps of one series, with their rows (counted from 0,
    as prediction ids are; the CSV line is the row + 2)."""
    problems = []
    duplicated = part.index.duplicated(keep=False)
    if duplicated.any():
        rows = part[ROW][duplicated].tolist()
        problems.append(
            f"{where} has duplicate timestamps {stamps(part.index[duplicated].unique())} "
            f"at {rows_shown(rows)}: keep one row per timestamp"
        )
    steps = np.diff(part.index.asi8)
    if (steps < 0).any():
        late = part.index[1:][steps < 0]
        problems.append(
            f"{where} is not sorted by time: {stamps(late)} come after later timestamps "
            f"(at {rows_shown(part[ROW].iloc[1:][steps < 0].tolist())}): sort the rows by time"
        )
    return problems


def infer_freq(indexes: list[pd.DatetimeIndex], name: str) -> str:
    """The most common frequency pandas infers over short runs of the timestamps."""
    found: Counter[str] = Counter()
    for index in indexes:
        whole = guess_freq(index)
        if whole:
            found[whole] += len(index)
            continue
        # Every run of seven timestamps that holds no gap votes for its frequency (at most
        # 500 runs, spread over the series).
        starts = np.unique(np.linspace(0, max(0, len(index) - 7), num=500).astype(int))
        for start in starts:
            chunk = index[start : start + 7]
            guess = guess_freq(chunk)
            if guess:
                found[guess] += 1
    if not found:
        raise DataError(
            f"The frequency of {name} cannot be inferred from its timestamps; "
            "set data.source.freq (e.g. D, W-SUN, MS, YS)."
        )
    return found.most_common(1)[0][0]


def guess_freq(index: pd.DatetimeIndex) -> str | None:
    """pandas' inferred frequency as a string (None when irregular or too short)."""
    if len(index) < 3:
        return None
    try:
        with pd.option_context("future.infer_freq_returns_offset", True):
            offset = pd.infer_freq(index)
    except KeyError:  # an older pandas without the option returns a string already
        return pd.infer_freq(index)
    return None if offset is None else getattr(offset, "freqstr", str(offset))


def grid_problems(index: pd.DatetimeIndex, freq: str, fill: Fill, where: str) -> list[str]:
    """Off-grid timestamps and (unless filled) gaps of one series' sorted timestamps."""
    try:
        grid = pd.date_range(index[0], index[-1], freq=freq)
    except ValueError as exc:
        raise DataError(
            f"Frequency '{freq}' of {where} is not a pandas frequency ({exc})."
        ) from None
    problems = []
    if len(off := index.difference(grid)):
        problems.append(
            f"{where} has timestamps off its '{freq}' grid: {stamps(off)}; fix them or set "
            "data.source.freq"
        )
    if len(gaps := grid.difference(index)) and fill == "none":
        problems.append(
            f"{where} has {len(gaps)} gap{'s' if len(gaps) > 1 else ''} at {stamps(gaps)} "
            f"(frequency '{freq}'); add those rows or set data.source.fill to ffill, "
            "interpolate or zero"
        )
    return problems


def on_grid(part: pd.DataFrame, freq: str) -> pd.DataFrame:
    """The series reindexed onto its regular grid (gaps become NaN, filled later)."""
    return part.reindex(pd.date_range(part.index[0], part.index[-1], freq=freq))


def numeric(part: pd.DataFrame, columns: list[str], fill: Fill, where: str) -> np.ndarray:
    """The columns as floats (N, C), NaN filled as configured or reported."""
    out = np.zeros((len(part), len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        values = pd.to_numeric(part[column], errors="coerce")
        text = part[column][values.isna() & part[column].notna()]
        if len(text):
            raise DataError(
                f"Column '{column}' of {where} holds non-numbers at {stamps(text.index)} "
                f"(e.g. {text.iloc[0]!r}); fix those values."
            )
        values = filled(values, fill)
        if values.isna().any():
            at = values.index[values.isna()]
            hint = (
                "set data.source.fill to ffill, interpolate or zero"
                if fill == "none"
                else f"fill '{fill}' cannot fill values at the start; trim those rows"
            )
            raise DataError(f"Column '{column}' of {where} is NaN at {stamps(at)}; {hint}.")
        out[:, j] = values.to_numpy(dtype=np.float64)
    return out


def filled(values: pd.Series, fill: Fill) -> pd.Series:
    if fill == "ffill":
        return values.ffill()
    if fill == "interpolate":
        return values.interpolate(method="linear", limit_area="inside")
    if fill == "zero":
        return values.fillna(0.0)
    return values
