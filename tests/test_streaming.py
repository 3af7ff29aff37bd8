"""Streamed Parquet tables: every row once per epoch across ranks and workers, splits that
never depend on read order, statistics equal to the in-memory featurizer's, exact resume,
and bad files named."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import run_cli
from torchlab.config import Component
from torchlab.data import build_loader
from torchlab.data.base import DataBundle, SourceContext
from torchlab.data.stream import stats
from torchlab.data.stream.parquet import split_codes
from torchlab.data.stream.shards import write_shards
from torchlab.data.tabular import TabularFeaturizer
from torchlab.distributed import World
from torchlab.errors import DataError
from torchlab.registry import DATASETS

CPU = torch.device("cpu")


def table(rows: int, seed: int = 0) -> pd.DataFrame:
    """Mixed columns as users' tables hold them: blanks, text, flags, a key and a row id."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "row": np.arange(rows, dtype=np.int64),
        "size": rng.normal(10.0, 3.0, rows),
        "count": rng.integers(0, 50, rows),
        "city": rng.choice(["paris", "oslo", "rome", None], rows),
        "member": rng.choice([True, False], rows),
        "customer": rng.integers(0, rows // 4, rows).astype(str),
        "label": rng.choice(["no", "yes"], rows),
        "amount": rng.gamma(2.0, 5.0, rows),
    })  # fmt: skip
    frame.loc[rng.random(rows) < 0.1, "size"] = np.nan
    return frame


def write(frame: pd.DataFrame, folder: Path, files: int, group: int) -> Path:
    """``frame`` as ``files`` Parquet files of row groups of ``group`` rows."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        chunk = pa.Table.from_pandas(frame.iloc[part], preserve_index=False)
        pq.write_table(chunk, folder / f"part-{i:03d}.parquet", row_group_size=group)
    return folder


def streamed(
    path: Path, *, target: str = "label", kind: str = "categorical", **settings
) -> DataBundle:
    source = {"name": "parquet", "path": str(path), "target": target, "streaming": True}
    context = SourceContext(0.2, 0.2, False, 0, kind)  # type: ignore[arg-type]
    return DATASETS.build(Component.model_validate({**source, **settings}), "data.source", context)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(table(3000), tmp_path_factory.mktemp("table") / "data", files=3, group=170)


@pytest.fixture(scope="module")
def bundle(dataset: Path) -> DataBundle:
    return streamed(dataset, drop=["customer", "amount"], buffer=400)


def row_ids(bundle: DataBundle, inputs: torch.Tensor) -> list[int]:
    """The ``row`` column recovered from standardised inputs (it is the first feature)."""
    column = bundle.featurizer.columns[0]
    assert column.name == "row"
    return np.rint(inputs[:, 0].double().numpy() * column.std + column.mean).astype(int).tolist()


def epoch_rows(bundle: DataBundle, split: str, *, world: World, shuffle: bool, epoch: int = 0,
               start: int = 0, workers: int = 2) -> list[list[int]]:  # fmt: skip
    loader = build_loader(
        bundle.split(split), batch_size=32, shuffle=shuffle, seed=0, device=CPU,
        num_workers=workers, world=world,
    )  # fmt: skip
    return [row_ids(bundle, batch.inputs) for batch in loader.epoch(epoch, start)]


def test_each_row_is_read_once_an_epoch_across_two_ranks_of_two_workers(
    bundle: DataBundle,
) -> None:
    codes = split_codes(pa.table({"r": range(3000)}), 0, key=None, seed=0, val=0.2, test=0.2)
    for split, code in (("train", 0), ("val", 1)):
        wanted = set(np.flatnonzero(codes == code).tolist())
        shuffle = split == "train"
        per_rank = [
            [row for batch in epoch_rows(bundle, split, world=World(rank, rank, 2), shuffle=shuffle)
             for row in batch]
            for rank in range(2)
        ]  # fmt: skip
        seen = Counter(row for rows in per_rank for row in rows)
        assert set(seen) == wanted
        if shuffle:  # ranks take equal steps: the short one repeats at most one row
            assert len(per_rank[0]) == len(per_rank[1]) == -(-len(wanted) // 2)
            assert sum(seen.values()) - len(wanted) == len(wanted) % 2
        else:
            assert sum(seen.values()) == len(wanted)


def flat(batches: list[list[int]]) -> list[int]:
    return [row for batch in batches for row in batch]


def test_an_epoch_resumed_at_any_batch_continues_with_the_same_batches(
    bundle: DataBundle,
) -> None:
    world = World(1, 1, 2)
    whole = epoch_rows(bundle, "train", world=world, shuffle=True, epoch=3)
    for start in (1, 6, len(whole) - 1):
        assert (
            epoch_rows(bundle, "train", world=world, shuffle=True, epoch=3, start=start)
            == (whole[start:])
        )
    one, two = (flat(epoch_rows(bundle, "train", world=World(), shuffle=True, epoch=e))
                for e in (3, 4))  # fmt: skip
    assert one != two and sorted(one) == sorted(two)
    assert one != sorted(one)  # rows are shuffled within windows too


def test_splits_do_not_depend_on_how_the_rows_are_stored(tmp_path: Path) -> None:
    frame = table(1200)

    def split_rows(folder: Path, **settings) -> dict[str, set[int]]:
        found = streamed(folder, **{"drop": ["amount"], **settings})
        return {
            name: {r for batch in epoch_rows(found, name, world=World(), shuffle=False,
                                              workers=0) for r in batch}
            for name in ("train", "val", "test")
        }  # fmt: skip

    few = write(frame, tmp_path / "few", files=1, group=1000)
    many = write(frame, tmp_path / "many", files=4, group=64)
    by_row = split_rows(few)
    assert by_row == split_rows(many)
    assert sum(map(len, by_row.values())) == 1200 and not by_row["train"] & by_row["test"]
    by_key = split_rows(few, key="customer", drop=["amount", "customer"])
    assert by_key == split_rows(many, key="customer", drop=["amount", "customer"])
    customers = {s: set(frame.loc[sorted(rows), "customer"]) for s, rows in by_key.items()}
    assert not customers["train"] & customers["val"] and not customers["train"] & customers["test"]


def in_memory(folder: Path, drop: list[str], target: str, kind: str = "categorical"):
    """The in-memory featurizer fitted on the streamed training rows."""
    frame = pd.concat([pq.read_table(f).to_pandas() for f in sorted(folder.glob("*.parquet"))])
    frame = frame.reset_index(drop=True)
    codes = split_codes(pa.Table.from_pandas(frame), 0, key=None, seed=0, val=0.2, test=0.2)
    train = frame[codes == 0].drop(columns=[*drop, target])
    return TabularFeaturizer.fit(train, categorical=["city", "member", "customer"]), frame[
        codes == 0
    ]


def assert_same_columns(streamed: TabularFeaturizer, memory: TabularFeaturizer) -> None:
    assert [c.name for c in streamed.columns] == [c.name for c in memory.columns]
    for ours, theirs in zip(streamed.columns, memory.columns, strict=True):
        assert (ours.kind, ours.categories, ours.fill) == (
            theirs.kind,
            theirs.categories,
            theirs.fill,
        )
        assert ours.mean == pytest.approx(theirs.mean, rel=1e-10, abs=1e-12)
        assert ours.std == pytest.approx(theirs.std, rel=1e-10)


def test_statistics_equal_the_in_memory_featurizer(
    dataset: Path, bundle: DataBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory, _ = in_memory(dataset, ["customer", "amount"], "label")
    assert_same_columns(bundle.featurizer, memory)
    assert bundle.summary["imputed"]["size"]["count"] > 0
    # Medians found by narrowing histogram bins over more passes, as for large columns.
    monkeypatch.setattr(stats, "COLLECT", 4)
    regression = streamed(dataset, target="amount", kind="continuous", drop=["label"])
    memory, train = in_memory(dataset, ["label"], "amount")
    assert_same_columns(regression.featurizer, memory)
    assert regression.spec.target_mean[0] == pytest.approx(train["amount"].mean(), rel=1e-10)
    assert regression.spec.target_std[0] == pytest.approx(train["amount"].std(ddof=0), rel=1e-10)


def test_categories_beyond_the_cap_are_counted_as_other(dataset: Path) -> None:
    capped = streamed(dataset, drop=["amount"], max_categories=20)
    customer = next(c for c in capped.featurizer.columns if c.name == "customer")
    assert len(customer.categories) == 20
    assert capped.summary["other_categories"]["customer"] > 0


def test_a_corrupt_file_and_a_file_of_another_schema_are_named(tmp_path: Path) -> None:
    folder = write(table(300), tmp_path / "bad", files=2, group=100)
    good = (folder / "part-001.parquet").read_bytes()
    (folder / "part-001.parquet").write_bytes(good[: len(good) // 2])  # cut short in a copy
    with pytest.raises(DataError, match=r"part-001\.parquet.*corrupt"):
        streamed(folder)
    other = table(300).astype({"count": str})
    pq.write_table(pa.Table.from_pandas(other, preserve_index=False), folder / "part-001.parquet")
    with pytest.raises(
        DataError, match=r"part-001\.parquet' holds column 'count' as \w*string, not int64"
    ):
        streamed(folder)


@pytest.mark.slow  # a training process
def test_a_corrupt_row_group_stops_training_with_one_line(tmp_path: Path) -> None:
    folder = write(table(400), tmp_path / "data", files=1, group=100)
    raw = bytearray((folder / "part-000.parquet").read_bytes())
    raw[200:3000] = bytes(2800)  # the first row groups' pages, zeroed; the footer is intact
    (folder / "part-000.parquet").write_bytes(bytes(raw))
    source = {"name": "parquet", "path": "data", "target": "label", "streaming": True}
    config = {"extends": "iris", "name": "bad", "data": {"source": source}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("train", "bad.yaml", "trainer.max_epochs=1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "part-000.parquet" in last, result.stderr
    assert "Traceback" not in result.stderr


CONFIG = {
    "name": "streamed",
    "data": {
        "source": {"name": "parquet", "path": "data", "target": "label", "streaming": True,
                   "drop": ["customer"], "buffer": 300},
        "batch_size": 64,
        "num_workers": 2,
    },
    "task": {"name": "classification"},
    "model": {"name": "mlp", "hidden": [32], "dropout": 0.3},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "trainer": {
        "max_epochs": 2,
        "checkpoint_every_n_steps": 7,
        "progress": "plain",
        "callbacks": [{"name": "torchlab.testing:KillAtStep", "step": 0, "marker": "MARKER"}],
    },
}  # fmt: skip


def train(folder: Path, kill_step: int) -> Path:
    write(table(2000), folder / "data", files=2, group=150)
    config = json.loads(json.dumps(CONFIG).replace("MARKER", str(folder / "killed")))
    config["trainer"]["callbacks"][0]["step"] = kill_step
    (folder / "streamed.yaml").write_text(yaml.safe_dump(config))
    if not kill_step:
        (folder / "killed").touch()
    return folder


@pytest.mark.slow  # three training processes
def test_a_killed_streaming_run_resumes_bit_identical(tmp_path: Path) -> None:
    reference = train(tmp_path / "reference", kill_step=0)
    done = run_cli("train", "streamed.yaml", "--output-dir", "runs", cwd=reference)
    assert done.returncode == 0, done.stderr
    killed = train(tmp_path / "killed", kill_step=31)  # 22 steps an epoch; checkpoint at 28
    first = run_cli("train", "streamed.yaml", "--output-dir", "runs", cwd=killed)
    assert first.returncode == -signal.SIGKILL, first.stderr
    (run,) = (killed / "runs" / "streamed").iterdir()
    resumed = run_cli("train", "--resume", str(run), cwd=killed)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "run.json").read_text())["resumed_from"].endswith("e0001b000006")
    (ref,) = (reference / "runs" / "streamed").iterdir()
    ours, theirs = load_file(run / "model.safetensors"), load_file(ref / "model.safetensors")
    assert all(ours[k].equal(theirs[k]) for k in theirs)
    assert (run / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()


# --- image shards ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 flat 6x6 images, image i of grey level 4*i, in 3 classes, one file broken, as
    shards of a few kilobytes written by the CLI."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    for i in range(60):
        folder = root / "folder" / ("abc"[i % 3])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 6, 3), 4 * i, np.uint8)).save(folder / f"img.{i}.png")
    (root / "folder" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    assert write_shards(root / "folder", root / "shards", "1KB")["samples"] == 61
    return root / "shards"


@pytest.mark.slow  # two CLI processes
def test_the_shard_command_writes_shards_and_refuses_a_bad_size(shards: Path) -> None:
    folder = shards.parent / "folder"
    done = run_cli("shard", str(folder), "again", "--shard-size", "1KB", cwd=shards.parent)
    assert done.returncode == 0, done.stderr
    assert "61 samples" in done.stdout
    again = json.loads((shards.parent / "again" / "dataset.json").read_text())
    assert again == json.loads((shards / "dataset.json").read_text())
    bad = run_cli("shard", str(folder), "more", "--shard-size", "lots", cwd=shards.parent)
    assert bad.returncode == 2 and bad.stderr.startswith("error: Shard size 'lots'"), bad.stderr


def image_bundle(path: Path, **settings) -> DataBundle:
    source = {"name": "image-shards", "path": str(path), "size": 6, "normalize": "imagenet"}
    context = SourceContext(0.2, 0.2, False, 0, "categorical")
    return DATASETS.build(Component.model_validate({**source, **settings}), "data.source", context)


def image_ids(bundle: DataBundle, batch) -> list[int]:
    """Each image's number, recovered from its normalised grey level."""
    grey = batch.inputs[:, 0, 0, 0].double() * bundle.featurizer.std[0] + bundle.featurizer.mean[0]
    return np.rint(grey.numpy() * 255 / 4).astype(int).tolist()


def test_image_shards_serve_each_image_once_and_count_the_bad_one(shards: Path) -> None:
    listing = json.loads((shards / "dataset.json").read_text())
    assert listing["classes"] == ["a", "b", "c"] and len(listing["shards"]) > 3
    bundle = image_bundle(shards, augment="none")
    seen, skipped = Counter(), []
    for split in ("train", "val", "test"):
        for rank in range(2):
            loader = build_loader(
                bundle.split(split), batch_size=4, shuffle=False, seed=0, device=CPU,
                num_workers=2, world=World(rank, rank, 2),
            )  # fmt: skip
            for batch in loader.epoch(0):
                seen.update(image_ids(bundle, batch))
                skipped += [bad.path for bad in batch.skipped]
    assert sorted(seen) == list(range(60)) and set(seen.values()) == {1}
    assert len(skipped) == 1 and skipped[0].endswith("b/broken")


def test_an_image_epoch_resumed_mid_way_repeats_its_augmented_batches(shards: Path) -> None:
    bundle = image_bundle(shards, buffer=8)
    loader = build_loader(bundle.train, batch_size=4, shuffle=True, seed=0, device=CPU,
                          num_workers=2)  # fmt: skip
    whole = [batch.inputs for batch in loader.epoch(1)]
    again = [batch.inputs for batch in loader.epoch(1, start=3)]
    assert len(again) == len(whole) - 3
    assert all(a.equal(b) for a, b in zip(again, whole[3:], strict=True))


def test_a_truncated_shard_and_a_bad_image_under_on_error_fail_are_named(
    shards: Path, tmp_path: Path
) -> None:
    import shutil

    with pytest.raises(DataError, match=r"b/broken.*on_error=skip"):
        bundle = image_bundle(shards, on_error="fail")
        for split in ("train", "val", "test"):
            for _ in build_loader(bundle.split(split), batch_size=64, shuffle=False, seed=0,
                                  device=CPU, num_workers=0).epoch(0):  # fmt: skip
                pass
    copy = Path(shutil.copytree(shards, tmp_path / "shards"))
    last = sorted(copy.glob("shard-*.tar"))[1]
    last.write_bytes(last.read_bytes()[:1500])
    with pytest.raises(DataError, match=rf"Shard '.*{last.name}' .*truncated"):
        image_bundle(copy)


# --- segmentation shards -----------------------------------------------------------------


@pytest.fixture(scope="module")
def mask_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 flat 8x8 images, image i of grey level 8*i, each with a mask whose left half is
    class i % 3, and one mask holding a class that does not exist, as shards of a few
    kilobytes."""
    from PIL import Image

    root = tmp_path_factory.mktemp("masks")
    folder = root / "folder"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    (folder / "classes.txt").write_text("background\nround\nsquare\n")
    for i in range(25):
        Image.fromarray(np.full((8, 8, 3), 8 * i, np.uint8)).save(folder / "images" / f"{i}.png")
        labels = np.zeros((8, 8), np.uint8)
        labels[:, :4] = i % 3 if i < 24 else 7  # image 24's class 7 does not exist
        Image.fromarray(labels, "L").save(folder / "masks" / f"{i}.png")
    assert write_shards(folder, root / "shards", "1KB")["task"] == "segmentation"
    return root / "shards"


def mask_bundle(path: Path, **settings) -> DataBundle:
    source = {"name": "image-shards", "path": str(path), **settings}
    context = SourceContext(0.2, 0.2, False, 0, "categorical")
    return DATASETS.build(Component.model_validate(source), "data.source", context)


def test_segmentation_shards_serve_each_image_and_mask_once_and_count_the_bad_one(
    mask_shards: Path,
) -> None:
    listing = json.loads((mask_shards / "dataset.json").read_text())
    assert listing["task"] == "segmentation" and len(listing["shards"]) > 3
    bundle = mask_bundle(mask_shards, augment="none")
    assert bundle.spec.input_shape == (3, 8, 8)
    assert bundle.spec.class_names == ("background", "round", "square")
    seen, skipped = Counter(), []
    for split in ("train", "val", "test"):
        for rank in range(2):
            loader = build_loader(
                bundle.split(split), batch_size=4, shuffle=split == "train", seed=0,
                device=CPU, num_workers=2, world=World(rank, rank, 2),
            )  # fmt: skip
            for batch in loader.epoch(0):
                ids = np.rint(batch.inputs[:, 0, 0, 0].numpy() * 255 / 8).astype(int).tolist()
                assert batch.target.shape == (len(ids), 8, 8)
                for i, mask in zip(ids, batch.target, strict=True):
                    assert (mask[:, :4] == i % 3).all() and (mask[:, 4:] == 0).all()
                seen.update(ids)
                skipped += [(bad.path, bad.reason) for bad in batch.skipped]
    # Training pads its ranks to equal steps: at most one image is seen twice.
    assert sorted(seen) == list(range(24)) and sum(seen.values()) - 24 <= 1
    ((where, reason),) = skipped
    assert where.endswith(":images/24") and "class index 7 but there are 3 classes" in reason


def test_a_segmentation_epoch_resumed_mid_way_repeats_its_augmented_batches(
    mask_shards: Path,
) -> None:
    bundle = mask_bundle(mask_shards, size=6, buffer=4)
    loader = build_loader(bundle.train, batch_size=2, shuffle=True, seed=0, device=CPU,
                          num_workers=2)  # fmt: skip
    whole = list(loader.epoch(1))
    again = list(loader.epoch(1, start=3))
    assert len(again) == len(whole) - 3 and whole[0].inputs.shape[-2:] == (6, 6)
    for a, b in zip(again, whole[3:], strict=True):
        assert a.inputs.equal(b.inputs) and a.target.equal(b.target)
    with pytest.raises(DataError, match=r"segmentation samples, which take no data.source.mixup"):
        mask_bundle(mask_shards, mixup=0.2)


@pytest.mark.slow  # a training process
def test_a_unet_trains_an_epoch_on_segmentation_shards(mask_shards: Path) -> None:
    config = {
        "name": "seg-shards",
        "data": {"source": {"name": "image-shards", "path": str(mask_shards), "augment": "light"},
                 "batch_size": 4, "num_workers": 2},
        "task": "segmentation",
        "model": {"name": "unet", "depth": 2, "channels": 4},
        "optim": {"name": "adamw", "lr": 0.01},
        "trainer": {"max_epochs": 1, "progress": "plain"},
    }  # fmt: skip
    (mask_shards.parent / "seg.yaml").write_text(yaml.safe_dump(config))
    done = run_cli("train", "seg.yaml", "--output-dir", "runs", cwd=mask_shards.parent)
    assert done.returncode == 0, done.stderr
    (run,) = (mask_shards.parent / "runs" / "seg-shards").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert "test/mean_iou" in summary["test"]
    assert [s["file"].rsplit(":", 1)[1] for s in summary["skipped_files"]] == ["images/24"]


# --- a folder of CSV files ---------------------------------------------------------------


def write_csvs(frame: pd.DataFrame, folder: Path, files: int) -> Path:
    """``frame`` as CSV files as users have them: one saved by Excel (a BOM), one with blank
    lines, blanks and pandas' NA markers."""
    folder.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        frame.iloc[part].to_csv(folder / f"day-{i}.csv", index=False, encoding="utf-8-sig" if i == 0 else "utf-8")  # fmt: skip
    text = (folder / "day-1.csv").read_text().replace(",oslo,", ",NA,", 5)
    (folder / "day-1.csv").write_text(text.replace("\n", "\n\n", 4))
    return folder


def test_a_folder_of_csv_files_is_converted_once_and_read_as_pandas_reads_it(
    tmp_path: Path,
) -> None:
    folder = write_csvs(table(900), tmp_path / "csvs", files=3)
    with pytest.warns(UserWarning, match=r"Converted the 3 CSV files in .* to Parquet once"):
        bundle = streamed(folder, drop=["customer", "amount"])
    frame = pd.concat([pd.read_csv(f) for f in sorted(folder.glob("*.csv"))], ignore_index=True)
    codes = split_codes(pa.Table.from_pandas(frame), 0, key=None, seed=0, val=0.2, test=0.2)
    train = frame[codes == 0].drop(columns=["customer", "amount", "label"])
    assert_same_columns(bundle.featurizer, TabularFeaturizer.fit(train, categorical=["city"]))
    assert bundle.summary["imputed"]["city"]["count"] == frame["city"].isna().sum()  # all splits
    (copy,) = (folder / ".torchlab-parquet").iterdir()

    with pytest.warns(UserWarning, match="Reading the Parquet copy of the 3 CSV files"):
        streamed(folder, drop=["customer", "amount"])
    assert list((folder / ".torchlab-parquet").iterdir()) == [copy]
    changed = table(300, seed=5).astype({"count": str})
    changed.loc[7, "count"] = "many"
    changed.to_csv(folder / "day-2.csv", index=False)  # a later file of another type
    with pytest.raises(
        DataError,
        match=r"day-2\.csv' holds 'many' in column 'count', which the values of 'day-0\.csv' make int64",
    ):
        streamed(folder)
    assert list((folder / ".torchlab-parquet").iterdir()) == [copy]  # left as it was
    table(300, seed=5).to_csv(folder / "day-2.csv", index=False)
    with pytest.warns(UserWarning, match="Converted the 3 CSV files"):
        streamed(folder, drop=["customer", "amount"])
    (new,) = (folder / ".torchlab-parquet").iterdir()
    assert new != copy and sorted(p.name for p in folder.iterdir())[1:] == [
        "day-0.csv", "day-1.csv", "day-2.csv",
    ]  # fmt: skip
