"""Reading a user's table (CSV or Parquet) and checking its columns.

Errors name the file, the column and the line, and say how to fix the value.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from torchlab.errors import DataError
from torchlab.schema_errors import closest

BLANKS = "fix or blank out that value (blanks are imputed)"


@dataclass(frozen=True)
class Source:
    """Where rows came from: ``name`` for messages, ``first_line`` of data row 0 in a text file."""

    name: str
    first_line: int | None = None

    def where(self, row: Any) -> str:
        """``row 3 (line 5)`` for a text file (header = line 1), ``row 3`` otherwise."""
        return f"row {row} (line {row + self.first_line})" if self.first_line else f"row {row}"


def rows_shown(rows: list[int], shown: int = 10) -> str:
    """``rows 3 (line 5), 7 (line 9)``: rows of a CSV file counted from 0, as prediction
    ids count them, and their line in the file (the header is line 1)."""
    listed = ", ".join(f"{r} (line {r + 2})" for r in rows[:shown])
    more = f" and {len(rows) - shown} more" if len(rows) > shown else ""
    return f"row{'s' if len(rows) > 1 else ''} {listed}{more}"


def read_table(
    path: str | Path, *, parquet: bool | None = None, sep: str | None = None
) -> tuple[pd.DataFrame, Source]:
    """A text or Parquet file as a frame with string column names and rows numbered from 0.

    Args:
        path: The file.
        parquet: Read as Parquet or as delimited text; None decides by the file's suffix.
        sep: Field separator of a text file; None means tab for ``.tsv``, comma otherwise.
    """
    path, parquet, sep = checked_table_file(path, parquet, sep)
    try:
        frame = pd.read_parquet(path) if parquet else pd.read_csv(path, sep=sep, low_memory=False)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (ValueError, OSError) as exc:  # pandas' ParserError and pyarrow's errors are ValueErrors
        raise unreadable_table(path, parquet, sep, exc) from None
    if len(frame) == 0:
        raise DataError(f"Data file '{path}' has no data rows; add rows below the header line.")
    header = frame.columns if parquet else pd.read_csv(path, sep=sep, header=None, nrows=1).iloc[0]
    check_unique([str(c) for c in header], path)
    frame.columns = [str(c) for c in frame.columns]
    return frame.reset_index(drop=True), Source(path.name, None if parquet else 2)


def checked_table_file(
    path: str | Path, parquet: bool | None, sep: str | None
) -> tuple[Path, bool, str]:
    """The file, whether it is Parquet and its text separator, once it is known to exist and
    to be a file (and, unless Parquet, text)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"Data file '{path}' does not exist; check the path (from {Path.cwd()}).")
    if not path.is_file():
        raise DataError(f"'{path}' is a directory, not a data file; name a file inside it.")
    parquet = path.suffix.lower() in (".parquet", ".pq") if parquet is None else parquet
    with path.open("rb") as file:
        binary = b"\0" in file.read(8192)
    if binary and not parquet:
        raise DataError(
            f"'{path}' is binary, not text; read Parquet files with the parquet source."
        )
    return path, parquet, sep or ("\t" if path.suffix.lower() == ".tsv" else ",")


def unreadable_table(path: Path, parquet: bool, sep: str, exc: Exception) -> DataError:
    """The error for a table file its reader failed on, naming the file and the reader's reason."""
    what = "a Parquet file" if parquet else f"text with fields separated by {sep!r}"
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return DataError(f"Cannot read '{path}' as {what} ({reason}); check its format.")


def check_unique(names: list[str], path: Path) -> None:
    """Raise at the first column name that is used twice (pandas would rename it ``name.1``)."""
    seen: dict[str, int] = {}
    for number, name in enumerate(names, start=1):
        if name in seen:
            raise DataError(
                f"'{path}' has two columns named '{name}' (columns {seen[name]} and {number}); "
                "rename one so each column has its own name."
            )
        seen[name] = number


def require_columns(
    columns: Collection[str], names: Collection[str], src: Source, key: str
) -> None:
    """Raise naming the first of ``names`` (from ``data.source.<key>``) not in ``columns``."""
    for name in (n for n in names if n not in columns):
        hint = closest(name, columns)
        hint = f" (did you mean '{hint}'?)" if hint else ""
        sep = " or set data.source.sep" if len(columns) == 1 else ""
        raise DataError(
            f"Column '{name}' named in data.source.{key} is not in {src.name}{hint}; "
            f"use one of its columns{sep}: {', '.join(columns)}."
        )


def as_text(values: pd.Series) -> pd.Series:
    """Categories and labels as strings, blanks kept blank; 2.0 (ints with blanks) -> '2'."""
    if isinstance(values.dtype, pd.StringDtype):  # text already: no call per value
        return values.astype(object)

    def text(value: Any) -> str:
        integral = isinstance(value, (float, np.floating)) and float(value).is_integer()
        return str(int(value)) if integral else str(value)

    if pdt.is_string_dtype(values.dtype) and not pdt.is_object_dtype(values.dtype):
        return values.astype(object)  # already text: mapping each value would change nothing
    return values.astype(object).map(text, na_action="ignore")


def as_numbers(values: pd.Series, source: Source, fix: str = BLANKS) -> np.ndarray:
    """A column as float64 (NaN where blank); raises at its first non-numeric or infinite value."""
    parsed = values if pdt.is_numeric_dtype(values) else pd.to_numeric(values, errors="coerce")
    numbers = parsed.to_numpy(float, na_value=np.nan)
    bad = values.notna().to_numpy() & ~np.isfinite(numbers)
    if bad.any():
        row, count = int(np.flatnonzero(bad)[0]), int(bad.sum())
        more = f" (and {count - 1} more)" if count > 1 else ""
        raise DataError(
            f"Column '{values.name}' of {source.name} holds {shown(values.iloc[row])}, not a finite "
            f"number, at {source.where(values.index[row])}{more}; {fix}."
        )
    return numbers


def shown(value: Any) -> str:
    """A cell as a message shows it: ``'oops'``, ``inf``, ``3`` (not ``np.int64(3)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def categorical_columns(frame: pd.DataFrame, source: Source, forced: Collection[str]) -> list[str]:
    """The columns of ``frame`` to one-hot: ``forced``, bool and text ones; the rest are numbers.

    Text that is at least 90% numbers is taken for a numeric column with typos, and raises.
    """
    found = []
    for name in frame.columns:
        values = frame[name]
        if name in forced or pdt.is_bool_dtype(values):
            found.append(name)
        elif pdt.is_datetime64_any_dtype(values) or pdt.is_timedelta64_dtype(values):
            raise DataError(
                f"Column '{name}' of {source.name} holds dates or durations, which tabular "
                "sources cannot use; convert it to numbers or list it in data.source.drop."
            )
        elif not pdt.is_numeric_dtype(values):
            present = values.dropna()
            if len(present) and pd.to_numeric(present, errors="coerce").notna().mean() >= 0.9:
                hint = "or list the column in data.source.categorical if it is a category"
                as_numbers(values, source, f"{BLANKS}, {hint}")
            else:
                found.append(name)
    return found
