"""Predictions over inputs of any size: ``torchlab predict RUN INPUTS -o OUT.parquet``.

The inputs are read a chunk of rows at a time (:mod:`torchlab.data.chunks`: CSV and
Parquet files, folders and globs of Parquet files for a table run; image files and folders,
or folders of shards, for an image run). Each chunk goes through the run's own featurizer and model exactly as
:func:`~torchlab.engine.predict.predict` takes a whole input in memory, and is written as
its own Parquet part, so memory holds one chunk whatever the input's size. The parts are
resumable and shared among ``torchrun`` ranks (:mod:`torchlab.engine.parts`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torchlab.data.chunks import (
    Chunk,
    TableChunk,
    files_fingerprint,
    image_chunks,
    table_chunks,
    table_files,
)
from torchlab.data.tables import Source
from torchlab.data.tabular import warn_imputed, warn_unseen
from torchlab.data.vision.files import EncodedImage, ImageReadError, image_name, read_image
from torchlab.distributed import world_from_env
from torchlab.engine.parts import Job, Parts
from torchlab.engine.predict import (
    load_predictor,
    no_id_column,
    notice_skip_ignored,
    notice_skipped,
    opened,
    prediction_frame,
    with_errors,
)
from torchlab.errors import ConfigError, DataError, RunError
from torchlab.exporters.runtime import Predictor
from torchlab.memory import keep_freed_memory
from torchlab.progress import RowProgress

# Rows per chunk by input kind: a chunk of images is held as float pixels, so fewer.
DEFAULT_CHUNK_ROWS = {"tabular": 16_384, "image": 256}


@dataclass(frozen=True)
class BatchPrediction:
    """What a batch prediction did, as this process saw it.

    Attributes:
        output: The Parquet file of predictions (written by rank 0).
        manifest: The job's manifest beside it; None on ranks other than 0.
        written: Rows in ``output``; None on ranks other than 0.
        rows: Rows this process predicted in this job (chunks resumed are not counted).
        chunks: Chunks of the inputs in all.
        resumed: Chunks of this process found written by an earlier job, and skipped.
        seconds: Seconds this process spent reading, predicting and writing its chunks.
    """

    output: Path
    manifest: Path | None
    written: int | None
    rows: int
    chunks: int
    resumed: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Reading:
    """A streamed input: its files, its chunks, their rows when known, how a chunk becomes
    a table of predictions, and what to tell the user once every chunk is done."""

    files: list[Path]
    chunks: Iterable[Chunk]
    total: int | None
    score: Callable[[Any], Any]
    finish: Callable[[], None]


def batch_predict(
    run: Any,
    inputs: Sequence[str | Path],
    output: str | Path,
    *,
    chunk_rows: int | None = None,
    overwrite: bool = False,
    on_error: str = "fail",
    id_column: str | None = None,
    trust_code: bool = False,
) -> BatchPrediction:
    """Predict for inputs of any size, writing Parquet a chunk at a time (resumable).

    Args:
        run: A run or export directory, or a :class:`~torchlab.run.Run`.
        inputs: CSV/TSV/Parquet files, folders or globs of Parquet files (table runs), or
            image files and folders, or folders of shards written by ``torchlab shard``
            (image runs; the ids are the samples' keys).
        output: The ``.parquet`` file to write; ``OUT.parts/`` holds the chunks meanwhile
            and ``OUT.manifest.json`` describes the job once it is done.
        chunk_rows: Rows per chunk (default: 16,384 rows of a table, 256 images).
        overwrite: Replace an existing output, and start again instead of resuming.
        on_error: ``fail`` or ``skip`` an image that cannot be read (as ``predict``).
        id_column: A column of the input tables whose values become the ids.
        trust_code: Let the run or export folder import or unpickle code.
    """
    keep_freed_memory()
    output = Path(output)
    check_options(output, overwrite, on_error, chunk_rows)
    run = opened(run, trust_code)
    predictor = load_predictor(run, trust_code=trust_code)
    kind = predictor.featurizer.kind
    if kind not in DEFAULT_CHUNK_ROWS:
        raise ConfigError(
            f"Parquet output is written a chunk at a time for table and image runs; this run "
            f"reads {kind} inputs, so write CSV instead (-o predictions.csv)."
        )
    chunk_rows = chunk_rows or DEFAULT_CHUNK_ROWS[kind]
    if kind == "tabular":
        reading = table_reading(predictor, inputs, chunk_rows, on_error, id_column)
    else:
        reading = image_reading(predictor, inputs, chunk_rows, on_error)
    world = world_from_env()
    parts = Parts(
        output, Job(job_fingerprint(reading.files, run, on_error, id_column), chunk_rows), world
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    done = parts.open(resume=not overwrite)
    chunks, resumed, progress = score_chunks(
        reading, parts, done, show=None if world.is_main else False
    )
    reading.finish()
    facts = {
        "chunks": chunks,
        "rows": progress.rows,
        "seconds": round(progress.seconds, 3),
        "resumed": resumed,
    }
    parts.record(finished=True, **facts)
    result = BatchPrediction(output, None, None, progress.rows, chunks, resumed, progress.seconds)
    if not world.is_main:
        return result
    ranks = parts.wait_for_ranks()
    written = parts.join(chunks)
    parts.finish(job_manifest(parts, ranks, written))
    return replace(result, manifest=parts.manifest, written=written)


def check_options(output: Path, overwrite: bool, on_error: str, chunk_rows: int | None) -> None:
    if output.exists() and not overwrite:
        raise RunError(
            f"Output file '{output}' already exists; choose another name or pass --overwrite."
        )
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error (--on-error) must be fail or skip; received {on_error!r}.")
    if chunk_rows is not None and chunk_rows < 1:
        raise ConfigError(f"chunk_rows (--chunk-rows) must be at least 1; received {chunk_rows}.")


def job_fingerprint(files: list[Path], run: Any, on_error: str, id_column: str | None) -> str:
    """What a resumed job must share with the one it continues, besides its chunk size."""
    where = Path(getattr(run, "dir", run)).resolve()
    what = {
        "files": files_fingerprint(files),
        "run": str(where),
        "on_error": on_error,
        "id": id_column,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def score_chunks(
    reading: Reading, parts: Parts, done: set[int], show: bool | None
) -> tuple[int, int, RowProgress]:
    """Predict and write this rank's chunks not yet written; the chunks in all, those
    resumed, and the pass's progress (rows, seconds)."""
    total = None
    if reading.total is not None:  # rows of this rank's chunks still to do: an ETA
        chunks = list(reading.chunks)
        total = sum(c.rows or 0 for c in chunks if parts.owns(c.index) and c.index not in done)
        reading = Reading(reading.files, chunks, total, reading.score, reading.finish)
    count = resumed = 0
    with RowProgress("predict", total, show=show) as progress:
        for chunk in reading.chunks:
            count += 1
            if not parts.owns(chunk.index):
                continue
            if chunk.index in done:
                resumed += 1
                continue
            frame = reading.score(chunk.read())
            parts.write(chunk.index, frame)
            progress.advance(len(frame))
    return count, resumed, progress


def job_manifest(parts: Parts, ranks: list[dict[str, Any]], written: int) -> dict[str, Any]:
    """The finished job: its output, inputs, chunks, rows, and each rank's rows per second."""
    seconds = max(r["seconds"] for r in ranks)
    rows = sum(r["rows"] for r in ranks)
    return {
        "output": parts.output.name,
        "inputs": parts.job.inputs,
        "chunk_rows": parts.job.chunk_rows,
        "chunks": ranks[0]["chunks"],
        "rows": written,
        "predicted_rows": rows,
        "resumed_chunks": sum(r["resumed"] for r in ranks),
        "seconds": seconds,
        "rows_per_second": round(rows / seconds, 1) if seconds > 0 else None,
        "world": parts.world.size,
        "ranks": [
            {
                "rank": r["rank"],
                "rows": r["rows"],
                "seconds": r["seconds"],
                "rows_per_second": round(r["rows"] / r["seconds"], 1) if r["seconds"] else None,
            }
            for r in ranks
        ],
    }


# Tables


def table_reading(
    predictor: Predictor,
    inputs: Sequence[str | Path],
    chunk_rows: int,
    on_error: str,
    id_column: str | None,
) -> Reading:
    """Chunks of table files, predicted with the run's featurizer as ``predict`` does."""
    featurizer = predictor.featurizer
    notice_skip_ignored(featurizer, on_error)
    files = table_files(inputs, sep=featurizer.sep)
    for file in files:  # missing columns fail before any chunk is read
        source = Source(file.name)
        if id_column is not None and id_column not in file.columns:
            raise no_id_column(file.path, id_column, file.columns)
        featurizer.transform(empty_frame(file.columns), source, warn=False)
    features = [c.name for c in featurizer.columns]
    raw = [id_column] if id_column is not None and id_column not in features else []
    chunks = table_chunks(files, chunk_rows, [*features, *raw], text_columns=raw)
    notes = TableNotes(featurizer, {f.name: f.columns for f in files})

    def score(chunk: TableChunk) -> Any:
        frame, source = chunk.frame, chunk.source
        inputs = featurizer.transform(frame, source, warn=False)
        notes.add(chunk, inputs)
        if id_column is not None:
            ids = frame[id_column].astype(str).tolist()
        else:
            ids = [f"{source.name}:{row}" for row in frame.index]
        return prediction_frame(predictor, predictor(inputs), ids)

    known = all(f.rows is not None for f in files)
    total = sum(f.rows or 0 for f in files) if known else None
    return Reading([f.path for f in files], chunks, total, score, notes.emit)


def empty_frame(columns: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})


class TableNotes:
    """The columns unused, the blanks filled and the categories unseen in each file, told
    once per file at the end, as ``predict`` tells them for a whole file."""

    SHOWN = 10  # unseen values listed per column

    def __init__(self, featurizer: Any, columns: dict[str, list[str]]) -> None:
        self.featurizer, self.columns = featurizer, columns
        self.sources: dict[str, Source] = {}
        self.blanks: dict[str, Counter[str]] = defaultdict(Counter)
        self.unseen: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))

    def add(self, chunk: TableChunk, inputs: Any) -> None:
        """Count what ``chunk`` told, given its model ``inputs`` (N, F)."""
        name, frame = chunk.source.name, chunk.frame
        self.sources[name] = chunk.source
        for column, imputed in self.featurizer.imputed(frame).items():
            self.blanks[name][column] += imputed["count"]
        start = 0
        for column in self.featurizer.columns:
            width, start = column.width, start + column.width
            if column.kind != "categorical":
                continue
            # A category unseen in training is the only way to all zeros (blanks are filled).
            unseen = (inputs[:, start - width : start] == 0).all(1).numpy()
            if unseen.any():
                text, _ = column.codes(frame[column.name][unseen])
                kept = self.unseen[name][column.name] | set(text.unique())
                self.unseen[name][column.name] = set(sorted(kept)[: self.SHOWN])

    def emit(self) -> None:
        fills = {c.name: c.fill for c in self.featurizer.columns}
        for name, source in self.sources.items():
            self.featurizer.warn_unused(self.columns[name], source)
            for column in self.featurizer.columns:
                if values := self.unseen[name].get(column.name):
                    warn_unseen(column.name, values, source)
            blanks = self.blanks[name]
            warn_imputed({c: {"count": n, "fill": fills[c]} for c, n in blanks.items()}, source)


# Images


def image_reading(
    predictor: Predictor, inputs: Sequence[str | Path], chunk_rows: int, on_error: str
) -> Reading:
    """Chunks of image files or shards, read and predicted as ``predict`` reads and predicts
    image files."""
    import pandas as pd

    files, chunks = image_chunks(inputs, chunk_rows)
    total = sum(c.rows or 0 for c in chunks)
    skipped: dict[str, str] = {}

    def score(images: list[Path | EncodedImage]) -> Any:
        features, ids, bad = read_image_chunk(predictor.featurizer, images, on_error)
        frame = (
            prediction_frame(predictor, predictor(features), ids)
            if ids
            else pd.DataFrame({"id": []})
        )
        skipped.update(bad)
        return with_errors(frame, bad) if on_error == "skip" else frame

    def finish() -> None:
        notice_skipped(skipped, total)

    return Reading(files, chunks, total, score, finish)


def read_image_chunk(
    featurizer: Any, images: list[Path | EncodedImage], on_error: str
) -> tuple[Any, list[str], dict[str, str]]:
    """Model inputs and ids of a chunk's readable images, and the others with why."""
    try:
        features, ids = featurizer.load_inputs(images, on_error=on_error)
    except DataError:
        if on_error != "skip":
            raise
        # Not one image of this chunk can be read (the featurizer wants one at least).
        channels = featurizer.channels
        return None, [], {image_name(i): why_unreadable(i, channels) for i in images}
    return features, ids, dict(featurizer.skipped)


def why_unreadable(path: Path | EncodedImage, channels: int) -> str:
    try:
        read_image(path, channels)
    except ImageReadError as exc:
        return exc.reason
    return "cannot be read"
