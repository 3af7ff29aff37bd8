"""Users' inputs read a chunk of rows at a time, so scoring them never holds a whole table
or folder in memory.

Chunks are numbered from 0 in reading order across the inputs, and no chunk spans two
files; the numbering depends only on the inputs and the chunk size, so a resumed or
sharded job finds each chunk again. Parquet files are planned from their footers (rows
and columns; no data is read until a chunk is wanted); CSV files are parsed in order, each
chunk as ``pandas.read_csv`` parses the whole file, chunks not wanted included; image
files are listed, then read a chunk at a time by the caller; image shards are planned from
their ``dataset.json`` and read a chunk of images' bytes at a time.
"""

from __future__ import annotations

import functools
import glob
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from torchlab.data.tables import Source, check_unique, checked_table_file, unreadable_table
from torchlab.data.vision.files import EncodedImage, image_files
from torchlab.errors import DataError

PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Chunk:
    """One chunk of the inputs: its number, its rows when known before reading it (Parquet,
    images; None for CSV), and how to read it."""

    index: int
    rows: int | None
    read: Callable[[], Any]


@dataclass(frozen=True)
class TableChunk:
    """Rows of one table file, indexed by their row number in it (from 0)."""

    frame: pd.DataFrame
    source: Source


@dataclass
class TableFile:
    """One input table: its file, the name its rows' ids carry, its columns, and its rows
    (known for Parquet from the footer; None for text)."""

    path: Path
    name: str
    parquet: bool
    sep: str
    columns: list[str]
    rows: int | None
    reader: Any = None  # pyarrow.parquet.ParquetFile of a Parquet file
    _groups: dict[int, Any] = field(default_factory=dict)  # row groups read last, by number

    def _group(self, group: int, columns: list[str]) -> Any:
        if group in self._groups:
            return self._groups[group]
        return self.reader.read_row_group(group, columns=columns)

    def read_rows(self, start: int, stop: int, columns: list[str]) -> pd.DataFrame:
        """Rows ``start:stop`` of a Parquet file; a row group spanning several chunks is read
        once for them."""
        metadata, first, pieces = self.reader.metadata, 0, []
        wanted = {}
        for group in range(metadata.num_row_groups):
            size = metadata.row_group(group).num_rows
            if first < stop and start < first + size:
                wanted[group] = first
            first += size
        try:
            self._groups = {g: self._group(g, columns) for g in wanted}
        except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise unreadable_table(self.path, True, self.sep, exc) from None
        for group, offset in wanted.items():
            table = self._groups[group]
            low, high = max(start - offset, 0), min(stop - offset, table.num_rows)
            pieces.append(table.slice(low, high - low).to_pandas())
        # Keep only a group the next chunk reads too: a file done holds nothing (a job over
        # many files otherwise kept each one's last row group to the end).
        self._groups = {g: t for g, t in self._groups.items() if wanted[g] + t.num_rows > stop}
        frame = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
        frame.index = pd.RangeIndex(start, stop)
        return frame


def table_files(paths: Sequence[str | Path], sep: str | None = None) -> list[TableFile]:
    """The tables named: CSV/TSV or Parquet files, folders of Parquet files (searched below,
    leaving out names starting with ``.`` or ``_``) and globs such as ``data/*.parquet``."""
    if not paths:
        raise DataError("No input files were given; name at least one CSV or Parquet file.")
    return [open_table(path, name, sep) for given in paths for path, name in expanded(given)]


def expanded(given: str | Path) -> list[tuple[Path, str]]:
    """The files a path, a folder or a glob names, each with the name its ids carry."""
    path = Path(given).expanduser()
    if not path.exists() and glob.has_magic(str(given)):
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        if not (files := [p for p in found if p.is_file()]):
            raise DataError(f"No files match '{given}'; check the pattern.")
        return [(p, p.name) for p in files]
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.suffix.lower() in PARQUET_SUFFIXES
            and p.is_file()
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        )
        if not files:
            raise DataError(
                f"Folder '{path}' holds no .parquet files; name a table or a folder of them."
            )
        return [(p, p.relative_to(path).as_posix()) for p in files]
    return [(path, path.name)]


def open_table(path: Path, name: str, sep: str | None) -> TableFile:
    """A table's columns and (Parquet) rows, from its header or footer alone."""
    import pyarrow.parquet as pq

    path, parquet, sep = checked_table_file(path, None, sep)
    try:
        if parquet:
            reader = pq.ParquetFile(path)
            columns, rows = reader.schema_arrow.names, reader.metadata.num_rows
        else:
            reader, rows = None, None
            columns = pd.read_csv(path, sep=sep, header=None, nrows=1).iloc[0].tolist()
    except pd.errors.EmptyDataError:
        columns, rows = [], 0
    except (ValueError, OSError) as exc:  # pandas' ParserError and pyarrow's errors
        raise unreadable_table(path, parquet, sep, exc) from None
    if rows == 0:
        raise DataError(f"Data file '{path}' has no data rows; add rows below the header line.")
    check_unique([str(c) for c in columns], path)
    return TableFile(path, name, parquet, sep, [str(c) for c in columns], rows, reader)


def table_chunks(
    files: list[TableFile], chunk_rows: int, columns: list[str], text_columns: Sequence[str] = ()
) -> Iterator[Chunk]:
    """Chunks of ``chunk_rows`` rows of each file in turn, holding the ``columns`` it has
    (``text_columns`` of CSV files as their raw text: ids such as ``007``)."""
    index = 0
    for file in files:
        wanted = [c for c in file.columns if c in columns]
        if file.parquet:
            for start in range(0, file.rows or 0, chunk_rows):
                stop = min(start + chunk_rows, file.rows or 0)
                yield Chunk(index, stop - start, parquet_reader(file, start, stop, wanted))
                index += 1
            continue
        first, source = index, Source(file.name, 2)  # data row 0 is line 2
        for frame in csv_frames(file, chunk_rows, wanted, text_columns):
            yield Chunk(index, None, lambda chunk=TableChunk(frame, source): chunk)
            index += 1
        if index == first:
            raise DataError(
                f"Data file '{file.path}' has no data rows; add rows below the header line."
            )


def parquet_reader(
    file: TableFile, start: int, stop: int, columns: list[str]
) -> Callable[[], TableChunk]:
    return lambda: TableChunk(file.read_rows(start, stop, columns), Source(file.name))


def csv_frames(
    file: TableFile, chunk_rows: int, columns: list[str], text_columns: Sequence[str]
) -> Iterator[pd.DataFrame]:
    """The rows of a text file, ``chunk_rows`` at a time, indexed by row number (from 0)."""
    raw = {c: str for c in text_columns if c in columns}
    try:
        reader = pd.read_csv(
            file.path, sep=file.sep, chunksize=chunk_rows, usecols=columns, converters=raw
        )
        with reader:
            yield from reader
    except (ValueError, OSError) as exc:  # pandas' ParserError is a ValueError
        raise unreadable_table(file.path, False, file.sep, exc) from None


def image_chunks(paths: Sequence[str | Path], chunk_rows: int) -> tuple[list[Path], list[Chunk]]:
    """The files of the images named (folders expanded as ``torchlab predict`` does, and
    folders of shards written by ``torchlab shard``), and chunks of ``chunk_rows`` images;
    reading a chunk gives its files, or its images' bytes for shards."""
    shards = [Path(p).expanduser() for p in paths if is_shards(p)]
    if shards and len(shards) < len(paths):
        raise DataError(
            f"'{shards[0]}' holds shards and the other inputs are images; predict shards and "
            "image files in two runs."
        )
    if shards:
        return shard_chunks(shards, chunk_rows)
    files = image_files(paths)
    starts = range(0, len(files), chunk_rows)
    return (
        files,
        [  # type: ignore[return-value]
            Chunk(i, min(chunk_rows, len(files) - s), lambda s=s: files[s : s + chunk_rows])
            for i, s in enumerate(starts)
        ],
    )


def is_shards(path: str | Path) -> bool:
    """Whether ``path`` is a folder of shards (it holds their ``dataset.json``)."""
    from torchlab.data.stream.shards import INDEX

    return (Path(path).expanduser() / INDEX).is_file()


def shard_chunks(folders: list[Path], chunk_rows: int) -> tuple[list[Path], list[Chunk]]:
    """Chunks of the samples of each shard in turn (none spans two shards), planned from
    ``dataset.json``; reading one indexes its shard's tar headers (once for its chunks) and
    gives its images' bytes, named by their keys (``FOLDER/KEY`` when several folders)."""
    from torchlab.data.stream.shards import INDEX, Shards, image_member, read_listing, read_member

    files: list[Path] = []
    chunks: list[Chunk] = []
    for folder in folders:
        listing = read_listing(folder)
        shards = Shards(folder, tuple(s["file"] for s in listing["shards"]),
                        tuple(int(s["samples"]) for s in listing["shards"]), 0, 0.0, 0.0)  # fmt: skip
        prefix = f"{folder.name}/" if len(folders) > 1 else ""
        indexed = functools.lru_cache(maxsize=1)(shards.index)  # consecutive chunks share it

        def read(shard: int, start: int, stop: int, index: Any = indexed, prefix: str = prefix,
                 shards: Shards = shards) -> list[EncodedImage]:  # fmt: skip
            found = []
            with (shards.folder / shards.files[shard]).open("rb") as file:
                for key, members in index(shard)[start:stop]:
                    image = image_member(members)
                    found.append(
                        EncodedImage(prefix + key, read_member(file, image) if image else b"")
                    )
            return found

        files += [folder / INDEX, *(folder / name for name in shards.files)]
        for shard, samples in enumerate(shards.samples):
            for start in range(0, samples, chunk_rows):
                stop = min(start + chunk_rows, samples)
                chunks.append(
                    Chunk(len(chunks), stop - start, functools.partial(read, shard, start, stop))
                )
    return files, chunks


def files_fingerprint(files: Sequence[Path]) -> str:
    """What identifies a set of input files without reading them: paths, sizes and times."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
