"""Contract over the dataset registry: every built-in source builds a bundle on tiny data.

Each source reads the offline data its recipes use, or files written here the way a user's
files are (CSV, Parquet, image folders, COCO, VOC, mask folders, MNIST's own format, text
files), kept small. The bundle must have a non-empty training split, and the first training
batch through the real loader must be what its spec says: input shape, target kind and
range, vocabulary, forecast horizon.

A newly registered source fails ``test_every_built_in_source_has_a_case`` until it has one.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits, load_iris

from torchlab.config import Component
from torchlab.data.base import Batch, DataSpec, SourceContext
from torchlab.data.loaders import build_loader
from torchlab.data.vision.shapes import write_shapes
from torchlab.registry import DATASETS, TASKS

CPU = torch.device("cpu")
IGNORE = 255  # segmentation pixels no class is scored on


# --- the user's files ------------------------------------------------------------------------


def iris_csv(folder: Path) -> None:
    load_iris(as_frame=True).frame.iloc[::3].to_csv(folder / "iris.csv", index=False)


def digit_shards(folder: Path) -> None:
    """The digit images of :func:`digit_images` as WebDataset shards."""
    from torchlab.data.stream.shards import write_shards

    digit_images(folder)
    write_shards(folder / "images", folder / "shards", "4KB")


def iris_parquet(folder: Path) -> None:
    load_iris(as_frame=True).frame.iloc[::3].to_parquet(folder / "iris.parquet")


def digit_images(folder: Path) -> None:
    """``images/<digit>/<i>.png`` for digits 0 and 1, and ``images.csv`` listing them."""
    digits = load_digits()
    rows = ["path,label"]
    for label in (0, 1):
        (folder / "images" / str(label)).mkdir(parents=True)
        for i, index in enumerate(np.flatnonzero(digits.target == label)[:8]):
            pixels = (digits.images[index] * 16).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / "images" / str(label) / f"{i}.png")
            rows.append(f"images/{label}/{i}.png,{label}")
    (folder / "images.csv").write_text("\n".join(rows) + "\n")


def shapes(folder: Path) -> None:
    """The generated shapes scenes: COCO JSON, mask PNGs and ``classes.txt`` in one folder."""
    write_shapes(folder / "shapes", n=8, size=32, seed=0, max_objects=2)


def shapes_as_voc(folder: Path) -> None:
    """The shapes scenes written as Pascal VOC: one XML file per image."""
    shapes(folder)
    root = folder / "shapes"
    coco = json.loads((root / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    (root / "Annotations").mkdir()
    (root / "JPEGImages").symlink_to(root / "images")
    for image in coco["images"]:
        objects = "".join(
            f"<object><name>{names[a['category_id']]}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{x + 1:.0f}</xmin><ymin>{y + 1:.0f}</ymin><xmax>{x + w:.0f}</xmax>"
            f"<ymax>{y + h:.0f}</ymax></bndbox></object>"
            for a in coco["annotations"]
            if a["image_id"] == image["id"]
            for x, y, w, h in [a["bbox"]]
        )
        (root / "Annotations" / f"{Path(image['file_name']).stem}.xml").write_text(
            f"<annotation><filename>{image['file_name']}</filename><size><width>"
            f"{image['width']}</width><height>{image['height']}</height><depth>3</depth></size>"
            f"{objects}</annotation>"
        )


def mnist_files(folder: Path) -> None:
    """MNIST in its own idx-ubyte format, as torchvision downloads it."""
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 6)):
        for kind, array in (
            ("images-idx3", rng.integers(0, 255, (n, 28, 28))),
            ("labels-idx1", np.arange(n) % 10),
        ):
            header = struct.pack(f">I{array.ndim}I", 0x0800 + array.ndim, *array.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.astype(np.uint8).tobytes())


def daily_series(folder: Path) -> None:
    days = pd.date_range("2024-01-01", periods=120, freq="D")
    value = (
        10 + np.sin(np.arange(120) * 2 * np.pi / 7) + np.random.default_rng(0).normal(0, 0.1, 120)
    )
    pd.DataFrame({"timestamp": days, "value": value}).to_csv(folder / "series.csv", index=False)


TOPICS = {
    "sport": "the team won the match after a late goal in the final",
    "business": "the bank said profits rose as shares and markets climbed",
}


def labelled_texts() -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    return [
        (" ".join(rng.permutation(words.split())), label)
        for label, words in TOPICS.items()
        for _ in range(12)
    ]


def texts_csv(folder: Path) -> None:
    pd.DataFrame(labelled_texts(), columns=["text", "label"]).to_csv(
        folder / "texts.csv", index=False
    )


def texts_jsonl(folder: Path) -> None:
    lines = [json.dumps({"text": text, "label": label}) for text, label in labelled_texts()]
    (folder / "texts.jsonl").write_text("\n".join(lines) + "\n")


def texts_folder(folder: Path) -> None:
    for i, (text, label) in enumerate(labelled_texts()):
        (folder / "texts" / label).mkdir(parents=True, exist_ok=True)
        (folder / "texts" / label / f"{i}.txt").write_text(text)


def number_pairs(folder: Path) -> None:
    """``source,target`` pairs: number words and their digits."""
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    rows = [(f"{words[a]} {words[b]}", f"{a} {b}") for a in range(5) for b in range(5)]
    pd.DataFrame(rows, columns=["source", "target"]).to_csv(folder / "pairs.csv", index=False)


# --- cases -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceCase:
    task: str  # the task whose target kind the source is built for
    settings: dict[str, Any] = field(default_factory=dict)  # "{folder}" is the files' folder
    write: Callable[[Path], None] | None = None


SERIES_SMALL = {"window": {"lookback": 8, "horizon": 4}}
WORD_TOKENS = {"kind": "word", "vocab_size": 64, "min_frequency": 1}
TEXTS_SMALL = {"tokenizer": WORD_TOKENS, "max_length": 16}
IMAGES_SMALL = {"size": 16, "augment": "none"}

SOURCE_CASES = {
    "iris": SourceCase("classification"),
    "wine": SourceCase("classification"),
    "breast-cancer": SourceCase("binary"),
    "diabetes": SourceCase("regression"),
    "digits": SourceCase("classification", {"per_class": 4}),
    "csv": SourceCase(
        "classification", {"path": "{folder}/iris.csv", "target": "target"}, iris_csv
    ),
    "parquet": SourceCase(
        "classification", {"path": "{folder}/iris.parquet", "target": "target"}, iris_parquet
    ),
    "image-folder": SourceCase(
        "classification", {"root": "{folder}/images", **IMAGES_SMALL}, digit_images
    ),
    "image-shards": SourceCase(
        "classification", {"path": "{folder}/shards", **IMAGES_SMALL}, digit_shards
    ),
    "image-csv": SourceCase(
        "classification", {"csv": "{folder}/images.csv", **IMAGES_SMALL}, digit_images
    ),
    "torchvision": SourceCase(
        "classification",
        {"dataset": "MNIST", "root": "{folder}", "augment": "none", "size": 16},
        mnist_files,
    ),
    "coco": SourceCase("detection", {"root": "{folder}/shapes", "augment": "none"}, shapes),
    "voc": SourceCase("detection", {"root": "{folder}/shapes", "augment": "none"}, shapes_as_voc),
    "shapes-coco": SourceCase(
        "detection", {"n": 8, "image_size": 32, "root": "{folder}/generated", "augment": "none"}
    ),
    "mask-folder": SourceCase(
        "segmentation", {"root": "{folder}/shapes", "augment": "none"}, shapes
    ),
    "shapes-masks": SourceCase(
        "segmentation", {"n": 8, "image_size": 32, "root": "{folder}/generated", "augment": "none"}
    ),
    "co2": SourceCase("forecasting", {"fill": "interpolate", **SERIES_SMALL}),  # 5 months unread
    "sunspots": SourceCase("forecasting", SERIES_SMALL),
    "nile": SourceCase("forecasting", SERIES_SMALL),
    "elnino": SourceCase("forecasting", SERIES_SMALL),
    "macrodata": SourceCase("forecasting", SERIES_SMALL),
    "series": SourceCase(
        "forecasting", {"path": "{folder}/series.csv", **SERIES_SMALL}, daily_series
    ),
    "prices": SourceCase("forecasting", {"days": 200, **SERIES_SMALL}),
    "demand-synthetic": SourceCase(
        "forecasting",
        {
            "stores": 2,
            "items": 2,
            "days": 120,
            "split": {"val_size": 14, "test_size": 14},
            **SERIES_SMALL,
        },
    ),
    "bbc": SourceCase("classification", {"limit": 40, **TEXTS_SMALL}),
    "text-csv": SourceCase(
        "classification", {"path": "{folder}/texts.csv", **TEXTS_SMALL}, texts_csv
    ),
    "text-jsonl": SourceCase(
        "classification", {"path": "{folder}/texts.jsonl", **TEXTS_SMALL}, texts_jsonl
    ),
    "text-folder": SourceCase(
        "classification", {"path": "{folder}/texts", **TEXTS_SMALL}, texts_folder
    ),
    "text-pairs": SourceCase(
        "seq2seq", {"path": "{folder}/pairs.csv", "max_length": 8}, number_pairs
    ),
    "dates": SourceCase("seq2seq", {"n": 60}),
    "text-corpus": SourceCase(
        "language-model",
        {"max_documents": 10, "tokenization": "char", "vocab_size": 64, "block_size": 16},
    ),
    "skipgram": SourceCase("skipgram", {"max_documents": 10, "vocab_size": 200, "min_count": 2}),
}


def test_every_built_in_source_has_a_case() -> None:
    """Sources registered outside torchlab.data (torchlab.sklearn's in-process ``arrays``)
    are not built-in and have their own tests."""
    assert set(DATASETS.describe()["names"]) == set(SOURCE_CASES)


def build(name: str, folder: Path) -> tuple[Any, Batch]:
    """The source's bundle and the first batch of its training split."""
    case = SOURCE_CASES[name]
    if case.write is not None:
        case.write(folder)
    settings = json.loads(json.dumps(case.settings).replace("{folder}", str(folder)))
    target_kind = TASKS.get(case.task).builder.target_kind
    context = SourceContext(val=0.2, test=0.2, stratify=False, seed=0, target_kind=target_kind)
    bundle = DATASETS.build(Component(name=name, **settings), "data.source", context)
    loader = build_loader(
        bundle.train, batch_size=4, shuffle=False, seed=0, device=CPU, num_workers=0,
        pin_memory=False, collate=bundle.collate,
    )  # fmt: skip
    return bundle, next(iter(loader.epoch(0)))


@pytest.mark.filterwarnings("ignore:Filled missing values")  # co2's gaps, filled as asked
@pytest.mark.parametrize("name", sorted(SOURCE_CASES))
def test_source_builds_a_bundle_its_spec_describes(name: str, tmp_path: Path) -> None:
    bundle, batch = build(name, tmp_path)
    assert len(bundle.train) > 0
    assert len(batch) == min(4, len(bundle.train))
    assert_inputs_match(bundle.spec, batch.inputs)
    assert_target_matches(bundle.spec, batch.target, batch.inputs)


def assert_inputs_match(spec: DataSpec, inputs: Any) -> None:
    if isinstance(inputs, list):  # detection: images of the spec's shape, one by one
        assert all(image.shape == spec.input_shape for image in inputs)
    elif isinstance(inputs, dict) and "past" in inputs:  # forecasting windows
        assert inputs["past"].shape[1:] == spec.input_shape
        assert inputs["future"].shape[1:] == (spec.horizon, spec.future_width)
    elif isinstance(inputs, dict):  # padded token ids with their mask and lengths
        ids = inputs["ids"]
        assert_token_ids(spec, ids)
        assert inputs["mask"].shape == ids.shape
        assert int(inputs["lengths"].max()) == ids.shape[1]
        assert (ids[~inputs["mask"]] == spec.pad_id).all()
    elif spec.vocab_size:
        assert_token_ids(spec, inputs)
    else:
        assert inputs.is_floating_point() and inputs.shape[1:] == spec.input_shape
        assert torch.isfinite(inputs).all()


def assert_token_ids(spec: DataSpec, ids: torch.Tensor) -> None:
    """Ids the vocabulary holds, at most the spec's length (a batch pads to its longest)."""
    assert not ids.is_floating_point()
    assert ids.ndim == 2 and 0 < ids.shape[1] <= spec.input_shape[0]
    assert int(ids.min()) >= 0 and int(ids.max()) < spec.vocab_size


def assert_target_matches(spec: DataSpec, target: Any, inputs: Any) -> None:
    if spec.target_kind == "continuous":
        width = len(spec.target_names)
        shape = (spec.horizon, width) if spec.horizon else (width,)
        assert target.shape[1:] == shape and torch.isfinite(target).all()
    elif isinstance(target, list):  # detection: boxes inside their image, labels from 1
        for image, found in zip(inputs, target, strict=True):
            boxes, labels = found["boxes"], found["labels"]
            assert len(boxes) == len(labels) > 0
            assert ((labels >= 1) & (labels < spec.num_classes)).all()
            assert (boxes[:, :2] < boxes[:, 2:]).all() and (boxes >= 0).all()
            assert (boxes[:, 2] <= image.shape[2]).all() and (boxes[:, 3] <= image.shape[1]).all()
    else:
        assert spec.target_kind == "categorical" and not target.is_floating_point()
        if target.ndim == 3:  # a class per pixel of the image, or none
            assert target.shape[1:] == spec.input_shape[1:]
            target = target[target != IGNORE]
        assert int(target.min()) >= 0 and int(target.max()) < spec.num_classes
