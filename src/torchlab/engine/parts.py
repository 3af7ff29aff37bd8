"""A Parquet output written a chunk at a time, resumable and shared by ``torchrun`` ranks.

Beside ``OUT.parquet``, while it is being made::

    OUT.parquet.parts/chunk-000000.parquet   one file per chunk, written whole or not at all
    OUT.parquet.parts/rank-0.json            each rank's manifest: the job, its chunks done

Rank r writes chunks r, r + world, ... A job run again with the same inputs and chunk size
skips the chunks already written, whatever the number of ranks; other inputs or another
chunk size refuse to resume. When every rank has finished, rank 0 joins the chunks into
``OUT.parquet`` (one row group each, through a temporary file renamed at the end), writes
``OUT.parquet.manifest.json`` and removes the parts folder.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torchlab.distributed import World
from torchlab.errors import RunError

POLL_SECONDS = 0.2  # how often rank 0 looks for the other ranks' manifests


@dataclass(frozen=True)
class Job:
    """What a resumed job must share with the one it continues.

    Attributes:
        inputs: A fingerprint of the input files, the run and the options that change rows.
        chunk_rows: Rows per chunk.
    """

    inputs: str
    chunk_rows: int


class Parts:
    """The parts folder of ``output`` as one rank of ``world`` sees it."""

    def __init__(self, output: Path, job: Job, world: World) -> None:
        self.output, self.job, self.world = output, job, world
        self.folder = output.with_name(output.name + ".parts")
        self.manifest = output.with_name(output.name + ".manifest.json")
        self.done: list[int] = []  # chunks of this rank written, in this job or before it

    def owns(self, index: int) -> bool:
        return index % self.world.size == self.world.rank

    def chunk_file(self, index: int) -> Path:
        return self.folder / f"chunk-{index:06d}.parquet"

    def rank_file(self, rank: int) -> Path:
        return self.folder / f"rank-{rank}.json"

    def open(self, resume: bool) -> set[int]:
        """Start this rank's share; returns the chunks already written that it skips.

        ``resume=False`` (``--overwrite``) deletes this rank's chunks of an earlier job instead.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        written = {int(p.stem.partition("-")[2]) for p in self.folder.glob("chunk-*.parquet")}
        mine = {index for index in written if self.owns(index)}
        if resume:
            self.check_same_job()
        else:  # this rank's chunks, and the manifests of ranks beyond this world, go
            for index in mine:
                self.chunk_file(index).unlink()
            mine = set()
            if self.world.is_main:
                for file in self.folder.glob("rank-*.json"):
                    if int(file.stem.partition("-")[2]) >= self.world.size:
                        file.unlink()
        self.done = sorted(mine)
        self.record(finished=False)
        return mine

    def check_same_job(self) -> None:
        """Refuse to mix chunks of another job (other inputs or chunk size) into this one."""
        for file in sorted(self.folder.glob("rank-*.json")):
            earlier = json.loads(file.read_text())
            if earlier["chunk_rows"] != self.job.chunk_rows:
                raise RunError(
                    f"'{self.folder}' holds chunks of {earlier['chunk_rows']} rows, not "
                    f"{self.job.chunk_rows}; resume with --chunk-rows {earlier['chunk_rows']}, "
                    "or pass --overwrite to start again."
                )
            if earlier["inputs"] != self.job.inputs:
                raise RunError(
                    f"'{self.folder}' holds chunks of another job (other input files, run, "
                    "--id-column or --on-error); rerun that job to resume it, or pass "
                    "--overwrite to start again."
                )

    def write(self, index: int, frame: Any) -> None:
        """Chunk ``index``'s rows, whole or not at all (a killed write leaves a temporary file)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.chunk_file(index)
        temporary = path.with_suffix(".tmp")
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), temporary)
        os.replace(temporary, path)
        self.done.append(index)

    def record(self, finished: bool, **facts: Any) -> None:
        """This rank's manifest: the job, its chunks written, and ``facts`` (rows, seconds)."""
        state = {
            **asdict(self.job),
            "rank": self.world.rank,
            "world": self.world.size,
            "done": sorted(self.done),
            "finished": finished,
            **facts,
        }
        write_json(self.rank_file(self.world.rank), state)

    def wait_for_ranks(self) -> list[dict[str, Any]]:
        """Every rank's manifest once all have finished this job (rank 0 joins the chunks then).

        Ranks share nothing but the folder, so this polls it; torchrun stops the job when a
        rank fails, and a rank started by hand is waited for.
        """
        while True:
            states = [read_json(self.rank_file(rank)) for rank in range(self.world.size)]
            if all(s and s["finished"] and s["inputs"] == self.job.inputs for s in states):
                return states  # type: ignore[return-value]
            time.sleep(POLL_SECONDS)

    def join(self, chunks: int) -> int:
        """Write ``OUT.parquet`` from chunks ``0..chunks-1``, one row group each; its rows."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = [self.chunk_file(index) for index in range(chunks)]
        if missing := [f.name for f in files if not f.is_file()]:
            raise RunError(
                f"'{self.folder}' lacks {', '.join(missing[:5])}; run the same command again "
                "to write the missing chunks."
            )
        # A chunk of unreadable images only has no prediction columns: nulls fill them.
        schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
        temporary, rows = self.folder / "joined.parquet.tmp", 0
        with pq.ParquetWriter(temporary, schema) as writer:
            for file in files:
                table = conformed(pq.read_table(file), schema)
                writer.write_table(table, row_group_size=max(table.num_rows, 1))
                rows += table.num_rows
        os.replace(temporary, self.output)
        return rows

    def finish(self, manifest: dict[str, Any]) -> None:
        """Write the job's manifest beside the output and remove the parts."""
        write_json(self.manifest, manifest)
        shutil.rmtree(self.folder)


def conformed(table: Any, schema: Any) -> Any:
    """``table`` with ``schema``'s columns, in its order; columns it lacks are null."""
    import pyarrow as pa

    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def write_json(path: Path, state: dict[str, Any]) -> None:
    """``state`` as JSON at ``path``, replaced whole (a reader never sees half a file)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state, indent=1))
    os.replace(temporary, path)


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None
