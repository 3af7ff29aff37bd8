"""A Parquet dataset read piece by piece (a piece is one row group of one file).

Only file footers are read up front: the files, their row groups and the schema they must
share. Every error names the file, and the row group where one is at fault.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from torchlab.errors import DataError

SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".tsv")
SPLITS = ("train", "val", "test")


def parquet_files(path: str) -> list[Path]:
    """The Parquet files a ``data.source.path`` names (see :func:`find_parquet`); none raises."""
    if files := find_parquet(path):
        return files
    what = "folder" if Path(path).expanduser().is_dir() else "pattern"
    raise DataError(
        f"No Parquet or CSV files found for data.source.path '{path}' (a {what}, from "
        f"{Path.cwd()}); name a Parquet file, a folder of them or of CSV files, or a glob "
        "such as 'data/*.parquet'."
    )


def find_parquet(path: str) -> list[Path]:
    """The Parquet files ``path`` names: a file (not a CSV file), a folder (searched
    recursively, names starting with ``.`` or ``_`` left out) or a glob pattern; sorted, so
    row numbers never depend on the file system."""
    where = Path(path).expanduser()
    if where.is_file():
        return [] if where.suffix.lower() in CSV_SUFFIXES else [where]
    if where.is_dir():
        found = [f for f in where.rglob("*") if not hidden(f.relative_to(where))]
    else:
        found = [Path(f) for f in glob.glob(str(where), recursive=True)]
    return sorted(f for f in found if f.suffix.lower() in SUFFIXES and f.is_file())


def hidden(relative: Path) -> bool:
    """Whether a path below a dataset's folder is left out: a name starting with ``.`` or
    ``_`` (Spark's ``_SUCCESS``, a ``.torchlab-parquet`` copy of CSV files)."""
    return any(part.startswith((".", "_")) for part in relative.parts)


@dataclass(frozen=True)
class Piece:
    """Row group ``group`` of file ``file`` (an index into the scan's files), whose first row
    is row ``first`` of its file and row ``offset`` of the whole dataset."""

    file: int
    group: int
    rows: int
    offset: int
    first: int


@dataclass
class ParquetScan:
    """The files of a dataset, the pieces they hold and their common schema."""

    files: list[Path]
    schema: pa.Schema
    pieces: list[Piece]

    @classmethod
    def of(cls, files: list[Path]) -> ParquetScan:
        pieces: list[Piece] = []
        schema = None
        offset = 0
        for index, path in enumerate(files):
            metadata = open_parquet(path).metadata
            here = metadata.schema.to_arrow_schema()
            if schema is None:
                schema = here
            else:
                check_same_schema(schema, here, files[0], path)
            first = 0
            for group in range(metadata.num_row_groups):
                rows = metadata.row_group(group).num_rows
                pieces.append(Piece(index, group, rows, offset, first))
                offset, first = offset + rows, first + rows
        if not offset:
            raise DataError(
                f"The Parquet files of data.source.path ({files[0]}, ...) hold no rows; add rows."
            )
        assert schema is not None
        return cls(files, schema, pieces)

    @cached_property
    def rows(self) -> int:
        return sum(p.rows for p in self.pieces)

    def name(self, piece: Piece) -> str:
        return f"{self.files[piece.file].name} (row group {piece.group})"

    def read(self, piece: Piece, columns: list[str]) -> pa.Table:
        """The piece's ``columns``; an unreadable row group raises naming the file."""
        with named_errors(self.files[piece.file], piece.group) as file:
            return file.read_row_group(piece.group, columns=columns)

    def batches(
        self, piece: Piece, columns: list[str], size: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        """The piece's ``columns`` in record batches of at most ``size`` rows."""
        with named_errors(self.files[piece.file], piece.group) as file:
            yield from file.iter_batches(size, row_groups=[piece.group], columns=columns)


@contextmanager
def named_errors(path: Path, group: int) -> Iterator[pq.ParquetFile]:
    """The open file; a row group that cannot be read raises a :class:`DataError` naming it."""
    file = open_parquet(path)
    try:
        yield file
    except (OSError, pa.ArrowException) as exc:
        raise DataError(
            f"Cannot read row group {group} of '{path}' ({first_line(exc)}); "
            "the file is corrupt: rewrite it or remove it from the dataset."
        ) from None


def open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(
            f"Cannot read '{path}' as a Parquet file ({first_line(exc)}); it is corrupt or "
            "not Parquet: rewrite it or remove it from the dataset."
        ) from None


def check_same_schema(expected: pa.Schema, found: pa.Schema, first: Path, path: Path) -> None:
    """Raise naming ``path`` and the first column that differs from ``first``'s."""
    names, theirs = expected.names, found.names
    if missing := [n for n in names if n not in theirs]:
        differs = f"lacks the column '{missing[0]}'"
    elif extra := [n for n in theirs if n not in names]:
        differs = f"has the column '{extra[0]}', which '{first.name}' lacks"
    else:
        changed = [
            n for n in names if family(found.field(n).type) != family(expected.field(n).type)
        ]
        if not changed:
            return
        name = changed[0]
        differs = (
            f"holds column '{name}' as {found.field(name).type}, "
            f"not {expected.field(name).type} as '{first.name}' does"
        )
    raise DataError(
        f"Parquet file '{path}' {differs}; every file of a dataset needs the same columns and "
        "types, so rewrite it to match or move it out of the dataset."
    )


def family(kind: pa.DataType) -> str:
    """What a column's type means to a featurizer: text, a number, a flag or itself (so
    files written with ``string`` and ``large_string``, or int32 and int64, go together)."""
    kind = kind.value_type if pa.types.is_dictionary(kind) else kind
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    return str(kind)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: well-spread 64-bit hashes of ``values`` (uint64)."""
    z = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def split_codes(
    table: pa.Table | pa.RecordBatch,
    offset: int,
    *,
    key: str | None,
    seed: int,
    val: float,
    test: float,
) -> np.ndarray:
    """0 (train), 1 (val) or 2 (test) for each row of ``piece``: a seeded hash of the ``key``
    column's value, or of the row's number in the dataset, so a row's split never depends on
    the order rows are read in. The test part is cut first, so ``val`` never changes it."""
    if key is None:
        raw = np.arange(offset, offset + table.num_rows, dtype=np.uint64)
    else:
        column = table.column(key).to_pandas()
        raw = pd.util.hash_pandas_object(column, index=False).to_numpy(np.uint64)
    with np.errstate(over="ignore"):
        hashed = mix(raw + mix(np.array([seed], dtype=np.uint64))[0])
    where = (hashed >> np.uint64(11)).astype(np.float64) * 2.0**-53  # uniform in [0, 1)
    return np.where(where < test, 2, np.where(where < test + val, 1, 0)).astype(np.int8)
