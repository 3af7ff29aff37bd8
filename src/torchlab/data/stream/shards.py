"""Image sets of any size as WebDataset tar shards: written by ``torchlab shard``, streamed
by the ``image-shards`` source.

A shard holds samples under the standard WebDataset keys: ``__key__``, the image under its
own extension (``jpg``, ``png``...), ``cls`` (the class index, as text) for classification
and ``mask.png`` for segmentation. ``dataset.json`` beside the shards names the classes
and counts the samples of each shard.

Reading indexes a shard's tar headers (no image is decoded), so an epoch can start at any
sample: the order and the resume of :mod:`~torchlab.data.stream.layout` hold for images as
for tables. A sample is in a split by a seeded hash of its key.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from torchlab.data.base import Batch, DataBundle, SourceContext
from torchlab.data.splits import refuse_folds
from torchlab.data.stream.layout import Segment
from torchlab.data.stream.parquet import SPLITS, first_line, split_codes
from torchlab.data.stream.samples import (
    Decoder,
    classification_setup,
    segmentation_setup,
)
from torchlab.data.stream.split import Shared, StreamedSplit, StreamPosition
from torchlab.data.vision.dataset import (
    BadImage,
    ImageCollate,
    ImageOptions,
    Item,
    SkipLog,
    SkippedImages,
)
from torchlab.data.vision.files import IMAGE_SUFFIXES, ImageReadError
from torchlab.errors import DataError
from torchlab.progress import row_progress
from torchlab.registry import DATASETS

INDEX = "dataset.json"
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def parse_size(text: str) -> int:
    """``1GB``, ``500MB``, ``2GiB`` or a number of bytes, as bytes."""
    found = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-z]*)\s*", text.lower())
    if not found or found.group(2) not in UNITS or float(found.group(1)) <= 0:
        raise DataError(f"Shard size '{text}' is not a size; give one such as 1GB, 500MB or 2GiB.")
    return int(float(found.group(1)) * UNITS[found.group(2)])


# --- writing -----------------------------------------------------------------------------


def samples_of(folder: Path) -> tuple[str, list[str], list[tuple[str, Path, int | Path]]]:
    """The task, the class names and ``(key, image, class index or mask)`` of an image
    folder: class subfolders (classification) or ``images/`` and ``masks/`` (segmentation)."""
    from torchlab.data.vision.folders import class_folders
    from torchlab.data.vision.segmentation import class_names

    def key(path: Path) -> str:  # WebDataset splits a name at its first dot: none in keys
        return str(path.relative_to(folder).with_suffix("")).replace(".", "_")

    if (folder / "images").is_dir() and (folder / "masks").is_dir():
        masks = {p.stem: p for p in (folder / "masks").iterdir() if p.suffix.lower() == ".png"}
        images = sorted(
            p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
        )
        if missing := [p for p in images if p.stem not in masks]:
            raise DataError(
                f"Image '{missing[0]}' has no mask {missing[0].stem}.png in '{folder / 'masks'}'; add it or remove the image."
            )
        names = list(class_names(folder, None))
        return "segmentation", names, [(key(p), p, masks[p.stem]) for p in images]
    classes = class_folders(folder)
    if not any(classes.values()):
        raise DataError(
            f"'{folder}' holds no class folders of images (ImageFolder layout: one folder per "
            "class) nor images/ and masks/ folders; point torchlab shard at one of those."
        )
    found = [(key(f), f, index) for index, files in enumerate(classes.values()) for f in files]
    return "classification", list(classes), found


def write_shards(
    folder: str | Path, out: str | Path, shard_size: str | int = "1GB"
) -> dict[str, Any]:
    """Write an image folder as WebDataset shards ``out/shard-000000.tar``... and
    ``out/dataset.json``; returns what ``dataset.json`` holds.

    Samples are written in a seeded random order, so every shard holds a mix of classes
    and the streamed order's shuffle starts from mixed shards.
    """
    import webdataset as wds

    folder, out = Path(folder).expanduser(), Path(out).expanduser()
    if not folder.is_dir():
        raise DataError(f"Image folder '{folder}' does not exist; check the path.")
    limit = parse_size(shard_size) if isinstance(shard_size, str) else int(shard_size)
    task, names, samples = samples_of(folder)
    order = np.random.default_rng(0).permutation(len(samples))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shard-*.tar"):
        old.unlink()
    with (
        row_progress("shard", len(samples), unit="images") as progress,
        wds.ShardWriter(
            str(out / "shard-%06d.tar"), maxsize=limit, maxcount=10**9, verbose=0
        ) as sink,
    ):
        for i in order.tolist():
            key, image, label = samples[i]
            sample = {"__key__": key, image.suffix.lower().lstrip("."): image.read_bytes()}
            if isinstance(label, Path):
                sample["mask.png"] = label.read_bytes()
            else:
                sample["cls"] = label
            sink.write(sample)
            progress.advance(1)
    shards = sorted(out.glob("shard-*.tar"))
    index = {
        "format": "webdataset",
        "task": task,
        "classes": names,
        "samples": len(samples),
        "shards": [{"file": s.name, "samples": len(shard_index(s))} for s in shards],
    }
    if task == "classification":
        labels = np.bincount([s[2] for s in samples], minlength=len(names))  # type: ignore[misc]
        index["counts"] = dict(zip(names, labels.tolist(), strict=True))
    (out / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return index


# --- reading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One file of a sample inside a tar shard: where its bytes are."""

    name: str  # the extension: jpg, cls, mask.png
    offset: int
    size: int


def shard_index(path: Path) -> list[tuple[str, tuple[Member, ...]]]:
    """``(key, members)`` of each sample of a shard, in order, from its tar headers only;
    a shard cut short or damaged raises naming it."""
    total = path.stat().st_size
    samples: list[tuple[str, list[Member]]] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                if member.offset_data + member.size > total:
                    raise tarfile.ReadError(f"'{member.name}' ends past the end of the file")
                directory, _, base = member.name.rpartition("/")
                stem, _, extension = base.partition(".")
                key = f"{directory}/{stem}" if directory else stem
                if not samples or samples[-1][0] != key:
                    samples.append((key, []))
                samples[-1][1].append(Member(extension, member.offset_data, member.size))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(
            f"Shard '{path}' is truncated or corrupt ({first_line(exc)}); write it again with "
            "`torchlab shard`, or remove it and its entry in dataset.json."
        ) from None
    return [(key, tuple(members)) for key, members in samples]


@dataclass(frozen=True)
class Shards:
    """The shards of a dataset, as ``dataset.json`` lists them, and the split of a key."""

    folder: Path
    files: tuple[str, ...]
    samples: tuple[int, ...]
    seed: int
    val: float
    test: float

    def codes(self, keys: list[str]) -> np.ndarray:
        table = pa.table({"key": pa.array(keys, pa.string())})
        return split_codes(table, 0, key="key", seed=self.seed, val=self.val, test=self.test)

    def index(self, shard: int) -> list[tuple[str, tuple[Member, ...]]]:
        path = self.folder / self.files[shard]
        if not path.is_file():
            raise DataError(
                f"Shard '{path}' listed in {INDEX} does not exist; restore it or write the shards again."
            )
        found = shard_index(path)
        if len(found) != self.samples[shard]:
            raise DataError(
                f"Shard '{path}' holds {len(found)} samples, not the {self.samples[shard]} "
                f"{INDEX} lists: it is truncated or was changed; write the shards again."
            )
        return found


class StreamedImages(StreamedSplit):
    """One split of image shards as batches of decoded, transformed samples; an unreadable
    sample is skipped and listed (``on_error: skip``) or stops the run naming it."""

    def __init__(self, shards: Shards, split: int, sizes: tuple[int, ...], shared: Shared,
                 buffer: int, *, decode: Decoder, on_error: str,
                 collate: ImageCollate) -> None:  # fmt: skip
        super().__init__(sizes, shared, buffer)
        self.shards, self.split, self.decode = shards, split, decode
        self.on_error, self.collate = on_error, collate

    def read_window(self, window: list[Segment]) -> np.ndarray:
        """``(shard, key, members)`` of the window's samples of this split."""
        found: list[Any] = []
        for segment in window:
            samples = self.shards.index(segment.piece)
            mine = np.flatnonzero(self.shards.codes([k for k, _ in samples]) == self.split)
            found += [(segment.piece, *samples[i]) for i in mine[segment.start : segment.stop]]
        rows = np.empty(len(found), dtype=object)
        rows[:] = found
        return rows

    def select(self, rows: np.ndarray, index: Any) -> np.ndarray:
        return rows[index]

    def join(self, parts: list[np.ndarray]) -> np.ndarray:
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def finish(self, rows: np.ndarray) -> Batch:
        return self.collate([self.item(*row) for row in rows])

    def item(self, shard: int, key: str, members: tuple[Member, ...]) -> Item | BadImage:
        path = self.shards.folder / self.shards.files[shard]
        where = f"{path}:{key}"
        try:
            return self.decode(*read_sample(path, members, self.decode.entry, where), where)
        except ImageReadError as exc:
            if self.on_error == "fail":
                raise ImageReadError(
                    where,
                    exc.reason,
                    "write the shards again without it, or set data.source.on_error=skip",
                ) from None
            return BadImage(where, exc.reason)


def image_member(members: tuple[Member, ...]) -> Member | None:
    return next((m for m in members if "." + m.name in IMAGE_SUFFIXES), None)


def read_sample(
    path: Path, members: tuple[Member, ...], entry: str, where: str
) -> tuple[bytes, bytes]:
    """The bytes of a sample's image and of its ``entry`` member."""
    image, target = image_member(members), next((m for m in members if m.name == entry), None)
    if image is None or target is None:
        raise ImageReadError(where, f"has no image or no {entry} entry")
    with path.open("rb") as file:
        return read_member(file, image), read_member(file, target)


def read_member(file: Any, member: Member) -> bytes:
    file.seek(member.offset)
    return file.read(member.size)


@DATASETS.register("image-shards")
def image_shards(
    context: SourceContext,
    /,
    *,
    path: str,
    size: int | None = None,
    channels: int = 3,
    augment: Literal["none", "light", "standard", "strong"] = "standard",
    hflip: bool = True,
    normalize: Literal["auto", "dataset", "imagenet"] = "auto",
    mixup: float = 0.0,
    cutmix: float = 0.0,
    on_error: Literal["skip", "fail"] = "skip",
    buffer: int = 2_048,
) -> DataBundle:
    """Labelled images, or images and masks, in WebDataset shards written by ``torchlab
    shard``, streamed.

    Args:
        path: The folder of the shards and their ``dataset.json``.
        size: Height and width images (and masks) are resized to; by default 224 for
            classification and the first training image's size for segmentation.
        channels, augment, hflip, normalize, mixup, cutmix, on_error: As for the
            ``image-folder`` source (segmentation takes ``size``, ``augment`` as for
            ``mask-folder`` and ``on_error``).
        buffer: The fewest images shuffled together (read by their place in the shards,
            so only their positions are held in memory).
    """
    refuse_folds(context.fold, "image-shards", "samples are split by a hash of their key")
    folder = Path(path).expanduser()
    listing = read_listing(folder)
    task = listing.get("task")
    if task not in ("classification", "segmentation") or context.target_kind != "categorical":
        raise DataError(
            f"Shards in '{folder}' hold {task} samples; the image-shards source trains "
            "classification or segmentation with them."
        )
    shards = Shards(folder, tuple(s["file"] for s in listing["shards"]),
                    tuple(int(s["samples"]) for s in listing["shards"]),
                    context.seed, context.val, context.test)  # fmt: skip
    sizes = split_sizes(shards)
    names = list(listing["classes"])
    images = training_images(shards, sizes)
    if task == "segmentation":
        refuse_settings(folder, mixup=mixup, cutmix=cutmix, channels=channels - 3)
        setup = segmentation_setup(names, size, images, augment)
    else:
        options = ImageOptions(size or 224, channels, augment, hflip, normalize, mixup, cutmix)
        setup = classification_setup(names, options, images, context)
    log, shared = SkipLog(), Shared()
    splits = {
        name: StreamedImages(
            shards, code, tuple(sizes[:, code].tolist()), shared, buffer,
            decode=setup.decoders[name], on_error=on_error,
            collate=ImageCollate(setup.mixer if name == "train" else None, log),
        )
        for code, name in enumerate(SPLITS)
    }  # fmt: skip
    summary = {
        "source": f"image shards '{folder}'",
        "streamed": {"shards": len(shards.files), "samples": int(sizes.sum())},
        "sizes": {name: int(sizes[:, code].sum()) for code, name in enumerate(SPLITS)},
        **setup.summary,
    }
    return DataBundle(
        **splits,
        spec=setup.spec,
        featurizer=setup.featurizer,
        summary=summary,
        callbacks=[
            SkippedImages(log, {}, {}),
            StreamPosition(shared, len(shards.files), int(sizes.sum())),
        ],
        baseline_note="No baseline: classical baselines fit in-memory arrays, and these "
        "images are streamed from shards.",
    )


def split_sizes(shards: Shards) -> np.ndarray:
    """Samples of each split in each shard, shaped (shards, 3), from the tar headers."""
    sizes = np.zeros((len(shards.files), 3), np.int64)
    with row_progress("index", sum(shards.samples), unit="images") as progress:
        for number in range(len(shards.files)):
            keys = [key for key, _ in shards.index(number)]
            sizes[number] = np.bincount(shards.codes(keys), minlength=3)
            progress.advance(len(keys))
    return sizes


def refuse_settings(folder: Path, **settings: float) -> None:
    """Segmentation shards train on RGB images without MixUp or CutMix."""
    if given := [name for name, value in settings.items() if value]:
        raise DataError(
            f"Shards in '{folder}' hold segmentation samples, which take no "
            f"data.source.{given[0]} (RGB images, no MixUp or CutMix); remove it."
        )


def training_images(shards: Shards, sizes: np.ndarray) -> Iterator[bytes]:
    """The encoded images of the training samples, in storage order."""
    for number in np.flatnonzero(sizes[:, 0]).tolist():
        samples = shards.index(number)
        path = shards.folder / shards.files[number]
        with path.open("rb") as file:
            for i in np.flatnonzero(shards.codes([k for k, _ in samples]) == 0).tolist():
                image = image_member(samples[i][1])
                if image is not None:
                    yield read_member(file, image)


def read_listing(folder: Path) -> dict[str, Any]:
    file = folder / INDEX
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise DataError(
            f"'{file}' does not exist; data.source.path names the folder `torchlab shard` "
            "wrote (its shards and dataset.json)."
        ) from None
    except (OSError, ValueError) as exc:
        raise DataError(
            f"'{file}' cannot be read ({first_line(exc)}); write the shards again."
        ) from None
