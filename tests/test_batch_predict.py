"""``torchlab predict RUN INPUTS -o OUT.parquet``: inputs of any size predicted a chunk at a
time, equal row for row to the in-memory predict, resumable, and split among ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import torchlab
from torchlab.errors import DataError, RunError


def houses(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "area": rng.uniform(30, 200, rows).round(1),
            "rooms": rng.integers(1, 7, rows).astype(float),
            "district": rng.choice(["Nord", "Süd", "Zentrum"], rows).astype(object),
        }
    )
    frame["pricey"] = np.where(frame["area"] + 20 * frame["rooms"] > 150, "yes", "no")
    return frame


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("table-run")
    houses(120).to_csv(folder / "houses.csv", index=False)
    source = {"name": "csv", "path": str(folder / "houses.csv"), "target": "pricey"}
    overrides = {"data.source": source, "trainer.max_epochs": 1, "trainer.progress": "none"}
    return torchlab.train("iris", {**overrides, "baseline": None}, output_dir=folder).dir


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("image-run")
    overrides = {"trainer.max_epochs": 1, "trainer.progress": "none", "baseline": None}
    return torchlab.train("digits", overrides, output_dir=folder).dir


def new_rows(rows: int, seed: int = 1) -> pd.DataFrame:
    """Rows to predict as users send them: blanks, a district never seen in training, a
    column the model does not use, and their own ids."""
    frame = houses(rows, seed).drop(columns="pricey")
    frame.loc[[0, 5], "area"] = None
    frame.loc[3, "district"] = None
    frame.loc[7, "district"] = "Hafen"
    frame.insert(0, "listing", [f"{i:04d}" for i in range(rows)])
    return frame


def notices(call) -> list[str]:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return sorted({str(w.message) for w in caught if "torchlab" in type(w.message).__module__})


def test_a_csv_streamed_in_chunks_equals_the_in_memory_predict(table_run, tmp_path) -> None:
    new_rows(23).to_csv(tmp_path / "new.csv", index=False, encoding="utf-8-sig")  # Excel's BOM
    (tmp_path / "new.csv").write_text((tmp_path / "new.csv").read_text() + "\n")  # a blank line
    inputs, out = [str(tmp_path / "new.csv")], tmp_path / "out.parquet"

    told_whole = notices(lambda: torchlab.predict(table_run, inputs))
    told_chunked = notices(lambda: torchlab.batch_predict(table_run, inputs, out, chunk_rows=5))
    assert told_chunked == told_whole and len(told_whole) == 3  # blanks, unseen, unused column
    whole = torchlab.predict(table_run, inputs, id_column="listing", overwrite=True)
    done = torchlab.batch_predict(
        table_run, inputs, out, chunk_rows=5, id_column="listing", overwrite=True
    )

    streamed = pd.read_parquet(out)
    pd.testing.assert_frame_equal(streamed, whole, check_dtype=False)
    assert streamed["id"].iloc[0] == "0000"  # the user's ids as written, not the number 0
    assert pq.ParquetFile(out).metadata.num_row_groups == 5  # 23 rows, 5 a chunk
    assert (done.written, done.rows, done.chunks, done.resumed) == (23, 23, 5, 0)
    manifest = json.loads((tmp_path / "out.parquet.manifest.json").read_text())
    assert manifest["rows"] == 23 and manifest["rows_per_second"] > 0
    assert not (tmp_path / "out.parquet.parts").exists()

    with pytest.raises(RunError, match="already exists; choose another name or pass --overwrite"):
        torchlab.batch_predict(table_run, inputs, out)


def test_a_folder_or_glob_of_parquet_files(table_run, tmp_path) -> None:
    rows = new_rows(30).drop(columns="listing")
    folder = tmp_path / "dataset"
    (folder / "day=2").mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(rows[:12]), folder / "a.parquet", row_group_size=5)
    pq.write_table(pa.Table.from_pandas(rows[12:]), folder / "day=2" / "b.parquet")
    (folder / "_SUCCESS").write_text("")  # what Spark leaves beside its files
    whole = pd.concat(
        [torchlab.predict(table_run, [folder / "a.parquet"]),
         torchlab.predict(table_run, [folder / "day=2" / "b.parquet"])],
        ignore_index=True,
    )  # fmt: skip
    whole["id"] = whole["id"].str.replace("b.parquet", "day=2/b.parquet")

    done = torchlab.batch_predict(table_run, [folder], tmp_path / "out.parquet", chunk_rows=7)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), whole, check_dtype=False)  # fmt: skip
    assert done.chunks == 2 + 3  # no chunk spans two files

    pattern = str(folder / "*.parquet")
    torchlab.batch_predict(table_run, [pattern], tmp_path / "glob.parquet", chunk_rows=7)
    assert len(pd.read_parquet(tmp_path / "glob.parquet")) == 12


def test_a_file_read_to_its_end_holds_no_row_group(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from torchlab.data.chunks import table_chunks, table_files

    rows = new_rows(30).drop(columns="listing")
    for name in ("a", "b"):
        pq.write_table(pa.Table.from_pandas(rows), tmp_path / f"{name}.parquet", row_group_size=10)
    files = table_files([tmp_path])
    read = []
    for chunk in table_chunks(files, 7, list(rows.columns)):
        read.append(chunk.read().frame)
        # A row group is kept only while the next chunk of its file needs it.
        assert sum(len(f._groups) for f in files) <= 1
    pd.testing.assert_frame_equal(
        pd.concat(read, ignore_index=True),
        pd.concat([rows, rows], ignore_index=True),
        check_dtype=False,
    )
    assert all(not f._groups for f in files)  # a long job over many files holds none at the end


def test_a_corrupt_or_different_parquet_file_is_named(table_run, tmp_path) -> None:
    folder = tmp_path / "dataset"
    folder.mkdir()
    pq.write_table(pa.Table.from_pandas(new_rows(10)), folder / "a.parquet")
    (folder / "b.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"Cannot read '.*b\.parquet' as a Parquet file"):
        torchlab.batch_predict(table_run, [folder], tmp_path / "out.parquet")

    pq.write_table(pa.Table.from_pandas(new_rows(10).drop(columns="rooms")), folder / "b.parquet")
    with pytest.raises(DataError, match=r"b\.parquet lacks the column.*'rooms'"):
        torchlab.batch_predict(table_run, [folder], tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def write_digits(folder: Path, count: int) -> list[Path]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder.mkdir()
    files = []
    for i in range(count):
        files.append(folder / f"{i:02d}-{digits.target[i]}.png")
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(files[-1])
    return files


def test_an_image_folder_with_a_bad_file(image_run, tmp_path) -> None:
    folder = tmp_path / "photos"
    write_digits(folder, 9)
    (folder / "04-bad.png").write_text("not an image")  # a text file named .png
    whole = torchlab.predict(image_run, [folder], on_error="skip")

    with pytest.raises(DataError, match=r"04-bad\.png"):
        torchlab.batch_predict(image_run, [folder], tmp_path / "failed.parquet", chunk_rows=4)
    out = tmp_path / "out.parquet"
    done = torchlab.batch_predict(image_run, [folder], out, chunk_rows=4, on_error="skip")
    streamed = pd.read_parquet(out)
    assert done.written == 10 and sorted(streamed["id"]) == sorted(whole["id"])
    by_id = streamed.set_index("id").loc[whole["id"]].reset_index()
    pd.testing.assert_frame_equal(by_id, whole, check_dtype=False)
    assert streamed.set_index("id").loc[str(folder / "04-bad.png"), "error"]

    single = torchlab.batch_predict(image_run, [folder], tmp_path / "1.parquet", chunk_rows=1, on_error="skip")  # fmt: skip
    assert single.chunks == 10 and len(pd.read_parquet(tmp_path / "1.parquet")) == 10


def test_shards_are_predicted_as_their_image_folder(image_run, tmp_path) -> None:
    from torchlab.data.stream.shards import write_shards

    folder = tmp_path / "photos"
    folder.mkdir()
    write_digits(folder / "one", 7)
    write_digits(folder / "two", 6)
    (folder / "two" / "bad.png").write_text("not an image")
    whole = torchlab.predict(image_run, [folder], on_error="skip")
    whole["id"] = [Path(i).relative_to(folder).with_suffix("").as_posix() for i in whole["id"]]
    shards = tmp_path / "shards"
    listing = write_shards(folder, shards, "2KB")

    with pytest.raises(DataError, match=r"Image 'two/bad' .*--on-error skip"):
        torchlab.batch_predict(image_run, [shards], tmp_path / "failed.parquet", chunk_rows=3)
    out = tmp_path / "out.parquet"
    done = torchlab.batch_predict(image_run, [shards], out, chunk_rows=3, on_error="skip")
    streamed = pd.read_parquet(out).set_index("id").loc[whole["id"]].reset_index()
    same = whole.columns.drop("error")  # the reasons name a file, or bytes
    pd.testing.assert_frame_equal(streamed[same], whole[same], check_dtype=False)
    assert streamed.set_index("id").loc["two/bad", "error"].startswith("cannot be read (no image")
    in_memory = torchlab.predict(image_run, [shards], on_error="skip").set_index("id")
    pd.testing.assert_frame_equal(in_memory.loc[whole["id"]].reset_index()[same], whole[same])
    assert (
        done.chunks
        == sum(-(-s["samples"] // 3) for s in listing["shards"])
        > len(listing["shards"])
    )


def cli(*args: str) -> int:
    """The command line's entry point in this process."""
    from torchlab.cli import main

    try:
        main(list(args))
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


def as_rank(monkeypatch: pytest.MonkeyPatch, rank: int, world: int) -> None:
    """The environment torchrun gives rank ``rank`` of ``world`` (no process group is
    needed: ranks share only the output folder)."""
    for name, value in {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": world}.items():
        monkeypatch.setenv(name, str(value))


def wait_for_manifest(path: Path, process: subprocess.Popen[str]) -> dict:  # type: ignore[type-arg]
    """The rank's manifest once it says the rank has finished its chunks."""
    while process.poll() is None:
        if path.is_file() and (state := json.loads(path.read_text()))["finished"]:
            return state
        time.sleep(0.05)
    raise AssertionError(process.communicate())


@pytest.mark.slow  # a process of the command line, killed
def test_ranks_split_the_chunks_and_a_killed_job_resumes(
    table_run, tmp_path, monkeypatch, capsys
) -> None:
    inputs = tmp_path / "new.parquet"
    pq.write_table(pa.Table.from_pandas(new_rows(30), preserve_index=False), inputs, row_group_size=7)  # fmt: skip
    parts = tmp_path / "out.parquet.parts"
    args = ["predict", str(table_run), str(inputs), "-o", "out.parquet", "--chunk-rows", "4"]

    # Rank 0 of 2 writes chunks 0, 2, 4, 6, then waits for rank 1, which never comes: kill -9.
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2"}
    alone = subprocess.Popen([sys.executable, "-m", "torchlab", *args], cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    state = wait_for_manifest(parts / "rank-0.json", alone)
    os.kill(alone.pid, signal.SIGKILL)
    alone.wait()
    assert state["done"] == [0, 2, 4, 6] and not (tmp_path / "out.parquet").exists()
    (parts / "chunk-000001.tmp").write_bytes(b"half a chunk")  # a write cut short

    monkeypatch.chdir(tmp_path)
    for changed, message in [
        (["--chunk-rows", "5"], "holds chunks of 4 rows, not 5; resume with --chunk-rows 4"),
        (["--chunk-rows", "4", "--id-column", "listing"], "holds chunks of another job"),
    ]:
        assert cli(*args[:-2], *changed) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1

    as_rank(monkeypatch, 1, 2)
    assert cli(*args) == 0
    assert "Predicted this rank's chunks of out.parquet (14 predicted" in capsys.readouterr().out
    as_rank(monkeypatch, 0, 2)
    assert cli(*args) == 0
    assert "Wrote 30 predictions to out.parquet (0 predicted" in capsys.readouterr().out

    streamed = pd.read_parquet(tmp_path / "out.parquet")
    monkeypatch.delenv("WORLD_SIZE")
    whole = torchlab.predict(table_run, [inputs])
    assert streamed["id"].is_unique and len(streamed) == 30  # every row once
    pd.testing.assert_frame_equal(streamed, whole, check_dtype=False)
    manifest = json.loads((tmp_path / "out.parquet.manifest.json").read_text())
    assert manifest["world"] == 2 and [r["rows"] for r in manifest["ranks"]] == [0, 14]
    assert manifest["resumed_chunks"] == 4 and not parts.exists()
