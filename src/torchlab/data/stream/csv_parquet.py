"""A folder (or glob) of CSV files streamed as Parquet: converted once, then reused.

``pyarrow.csv``'s streaming reader infers column types from each file's first block, so
a column of codes may read as numbers in one file and text in the next. The types are
decided instead by a first pass over the first file, all of it read as text, and every
file is then converted with those types; a later file whose values do not fit them stops
with one line naming it and the column. Blanks and pandas' missing-value markers (``NA``,
``null``...) are missing, a UTF-8 BOM and blank lines are skipped, as the in-memory reader
(``pandas.read_csv``) has them.

The Parquet copy goes into ``.torchlab-parquet/KEY/`` beside the CSV files (never over
them), ``KEY`` a hash of the files' names, sizes and modification times: it is reused
while they are unchanged and made again, the old copy removed, when one changes.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from torchlab.data.stream.parquet import (
    CSV_SUFFIXES,
    find_parquet,
    first_line,
    hidden,
    parquet_files,
)
from torchlab.data.tables import check_unique, checked_table_file
from torchlab.errors import DataError
from torchlab.notices import notice

CACHE = ".torchlab-parquet"
ROW_GROUP = 65_536
# What pandas.read_csv reads as missing by default (pandas' STR_NA_VALUES).
NULLS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
         "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]  # fmt: skip
# The types a column may get, narrowest first, as pandas would parse it; else text.
CANDIDATES = (pa.int64(), pa.float64(), pa.bool_())


def dataset_files(path: str) -> list[Path]:
    """The Parquet files ``data.source.path`` names or, when it names CSV files and no
    Parquet files, those of their Parquet copy."""
    if not find_parquet(path) and (csvs := csv_files(path)):
        return parquet_files(str(parquet_copy(csvs)))
    return parquet_files(path)


def csv_files(path: str) -> list[Path]:
    """The CSV/TSV files ``data.source.path`` names (a file, a folder searched below, names
    starting with ``.`` or ``_`` left out, or a glob), sorted."""
    where = Path(path).expanduser()
    if where.is_file():
        return [where] if where.suffix.lower() in CSV_SUFFIXES else []
    if where.is_dir():
        found = [f for f in where.rglob("*") if not hidden(f.relative_to(where))]
    else:
        found = [Path(f) for f in glob.glob(str(where), recursive=True)]
    return sorted(f for f in found if f.suffix.lower() in CSV_SUFFIXES and f.is_file())


def parquet_copy(files: list[Path]) -> Path:
    """The folder of the Parquet copy of ``files``, made now unless an unchanged one exists."""
    base = Path(os.path.commonpath([f.parent for f in files]))
    names = [f.relative_to(base).as_posix() for f in files]
    stats = [(name, f.stat().st_size, f.stat().st_mtime_ns) for name, f in zip(names, files, strict=True)]  # fmt: skip
    key = hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]
    cache, what = base / CACHE, f"{len(files)} CSV file{'s' * (len(files) > 1)} in '{base}'"
    done = cache / key
    if done.is_dir():
        notice(f"Reading the Parquet copy of the {what} made earlier ('{done}').")
        return done
    started = time.perf_counter()
    work = cache / f"{key}.tmp-{os.getpid()}"
    try:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        convert(files, [work / f"{name}.parquet" for name in names])
        work.rename(done)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        if done.is_dir():  # another process (a DDP rank) made the same copy first
            return done
        raise DataError(
            f"Cannot write the Parquet copy of the {what} to '{cache}' ({first_line(exc)}); "
            "make the folder writable, or convert the files to Parquet yourself."
        ) from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    for old in cache.iterdir():  # copies of CSV files since changed
        if old != done and ".tmp-" not in old.name:
            shutil.rmtree(old, ignore_errors=True)
    seconds = time.perf_counter() - started
    notice(
        f"Converted the {what} to Parquet once ({seconds:.1f} s), in '{done}'; later runs "
        "reuse it until a CSV file changes."
    )
    return done


def convert(files: list[Path], outputs: list[Path]) -> None:
    """Write each CSV file as Parquet, all with the column types of the first."""
    names = header(files[0])
    types = column_types(files[0], names)
    for path, output in zip(files, outputs, strict=True):
        if set(theirs := header(path)) != set(names):
            missing = [n for n in names if n not in theirs] or [n for n in theirs if n not in names]
            has = "lacks" if missing[0] in names else "has"
            raise DataError(
                f"CSV file '{path}' {has} the column '{missing[0]}', unlike '{files[0].name}'; "
                "every file of a dataset needs the same columns: fix it or move it out."
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(batches(path, types, files[0]), output, types)


def header(path: Path) -> list[str]:
    """A file's column names, checked as the in-memory reader checks them."""
    path, _, sep = checked_table_file(path, False, None)
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            names = next(csv.reader(file, delimiter=sep), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(
            f"Cannot read '{path}' as UTF-8 CSV ({first_line(exc)}); save it as UTF-8."
        ) from None
    if not names:
        raise DataError(f"Data file '{path}' is empty; add a header line and rows.")
    check_unique(names, path)
    return names


def options(path: Path, types: dict[str, pa.DataType] | None) -> dict[str, object]:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    return {
        "parse_options": pacsv.ParseOptions(delimiter=sep),
        "convert_options": pacsv.ConvertOptions(
            column_types=types, null_values=NULLS, strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    }  # fmt: skip


def column_types(path: Path, names: list[str]) -> dict[str, pa.DataType]:
    """The narrowest type each column's values all fit in the whole of ``path``."""
    fits = {name: list(CANDIDATES) for name in names}
    seen = dict.fromkeys(names, False)
    for batch in batches(path, dict.fromkeys(names, pa.string()), path):
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            seen[name] |= column.null_count < len(column)
            fits[name] = [kind for kind in fits[name] if castable(column, kind)]
    return {
        name: (fits[name][0] if fits[name] else pa.string()) if seen[name] else pa.float64()
        for name in names
    }  # a column of blanks only is numbers, as pandas reads it


def castable(column: pa.Array, kind: pa.DataType) -> bool:
    try:
        column.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def batches(path: Path, types: dict[str, pa.DataType], first: Path) -> Iterator[pa.RecordBatch]:
    """The record batches of a CSV file read with ``types``; a value that does not fit its
    column's type raises naming the file, the column and ``first``, which set the type."""
    try:
        with pacsv.open_csv(path, **options(path, types)) as reader:  # type: ignore[arg-type]
            yield from reader
    except pa.ArrowInvalid as exc:
        raise misfit(path, first, types, str(exc)) from None
    except (OSError, pa.ArrowException) as exc:
        raise DataError(
            f"Cannot read '{path}' as CSV ({first_line(exc)}); check its format."
        ) from None


def misfit(path: Path, first: Path, types: dict[str, pa.DataType], message: str) -> DataError:
    found = re.search(
        r"column #(\d+): (?:Row #\d+: )?CSV conversion error to \w+: invalid value '(.*)'", message
    )
    if found is None:
        return DataError(f"Cannot read '{path}' as CSV ({first_line(Exception(message))}).")
    name = header(path)[int(found.group(1))]
    return DataError(
        f"CSV file '{path}' holds '{found.group(2)}' in column '{name}', which the values of "
        f"'{first.name}' make {types[name]}; every file of a dataset needs the same column "
        "types: fix the value, or convert the files to Parquet with the types you want."
    )


def write_parquet(
    source: Iterator[pa.RecordBatch], output: Path, types: dict[str, pa.DataType]
) -> None:
    """Batches as one Parquet file of row groups of ``ROW_GROUP`` rows."""
    schema = pa.schema(list(types.items()))
    pending = schema.empty_table()
    with pq.ParquetWriter(output, schema) as writer:
        for batch in source:
            pending = pa.concat_tables(
                [pending, pa.Table.from_batches([batch.select(schema.names)])]
            )
            while pending.num_rows >= ROW_GROUP:
                writer.write_table(pending.slice(0, ROW_GROUP))
                pending = pending.slice(ROW_GROUP)
        if pending.num_rows:
            writer.write_table(pending)
