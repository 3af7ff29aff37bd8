"""Labelled images on disk: ``image-folder`` (one folder per class) and ``image-csv``.

``image-folder`` reads torchvision's ImageFolder layout, ``root/<class>/<image>``, and cuts
train/val/test with the run's seeded, stratified split; or, when ``root`` holds ``train/``
(and optionally ``val/`` and ``test/``) folders of that layout, uses them as given (a
missing val or test split is cut from train). ``image-csv`` reads a CSV with ``path`` and
``label`` columns, paths relative to the CSV file.

Every file is checked before the splits are cut, and images are decoded and augmented per
item by DataLoader workers (see :mod:`torchlab.data.vision.dataset`); ``on_error: skip``
(the default) leaves unreadable files out and lists them, ``fail`` stops at them.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import numpy as np

from torchlab.data.base import DataBundle, SourceContext
from torchlab.data.splits import refuse_folds, split_indices
from torchlab.data.vision.dataset import ImageOptions, SplitItems, image_bundle, usable_files
from torchlab.data.vision.files import IMAGE_SUFFIXES
from torchlab.errors import DataError
from torchlab.registry import DATASETS

Augment = Literal["none", "light", "standard", "strong"]
Normalize = Literal["auto", "dataset", "imagenet"]
OnError = Literal["skip", "fail"]
SPLIT_FOLDERS = ("train", "val", "test")


def class_folders(root: Path) -> dict[str, list[Path]]:
    """``{class name: sorted image files}`` of an ImageFolder-layout directory."""
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        classes[folder.name] = files
    return classes


def split_given_or_cut(
    found: dict[str, tuple[list[Path], list[int]]], context: SourceContext
) -> dict[str, SplitItems]:
    """Splits as given; a missing val/test split is cut from train (seeded, stratified)."""
    files, labels = found["train"]
    missing = [name for name in ("val", "test") if name not in found]
    fractions = {
        "val": context.val if "val" in missing else 0.0,
        "test": context.test if "test" in missing else 0.0,
    }
    if "test" in found:
        refuse_folds(context.fold, "image-folder", "its test/ folder is the test part")
    stratify = np.array(labels) if context.stratify else None
    train, val, test = split_indices(
        len(labels), val=fractions["val"], test=fractions["test"], seed=context.seed,
        stratify=stratify, fold=context.fold,
    )  # fmt: skip
    cut = {"train": train, "val": val, "test": test}
    out = {}
    for name in SPLIT_FOLDERS:
        if name in found and name != "train":
            out[name] = SplitItems(found[name][1], found[name][0])
        else:
            out[name] = SplitItems([labels[i] for i in cut[name]], [files[i] for i in cut[name]])
    return out


@DATASETS.register("image-folder")
def image_folder(
    context: SourceContext,
    /,
    *,
    root: str,
    size: int = 224,
    channels: Literal[1, 3] = 3,
    augment: Augment = "standard",
    hflip: bool = True,
    normalize: Normalize = "auto",
    mixup: float = 0.0,
    cutmix: float = 0.0,
    on_error: OnError = "skip",
) -> DataBundle:
    """Images in one folder per class (torchvision's ImageFolder layout).

    Args:
        root: The folder holding one sub-folder per class, or ``train/`` (``val/``,
            ``test/``) folders that each hold one sub-folder per class.
        size: Height and width the model sees.
        channels: 1 (grayscale) or 3 (RGB); every image is converted to it.
        augment: Training augmentation preset: none, light, standard or strong.
        hflip: Random horizontal flips in training (turn off for text, digits, maps).
        normalize: ``dataset`` (training-split mean and std), ``imagenet`` (the statistics
            of ImageNet-pretrained weights) or ``auto`` (imagenet when the model loads
            ImageNet weights, else dataset).
        mixup: MixUp Beta alpha for training batches (0 = off; 0.2 is typical).
        cutmix: CutMix Beta alpha for training batches (0 = off; 1.0 is typical).
        on_error: ``skip`` unreadable images (empty, not an image, cut short, damaged):
            they are left out of the splits with a warning and listed in the run summary
            and report; or ``fail`` at the first one, naming it.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"data.source.root '{base}' is not a folder; check the path.")
    given = [name for name in SPLIT_FOLDERS if (base / name).is_dir()]
    folders = {name: base / name for name in given} if "train" in given else {"train": base}
    layouts = {name: class_folders(folder) for name, folder in folders.items()}
    class_names = sorted(layouts["train"])
    if len(class_names) < 2:
        raise DataError(
            f"'{folders['train']}' holds {len(class_names)} class folder(s); put each class's images in "
            "its own sub-folder (at least two classes)."
        )
    found, skipped = {}, {}
    for name, classes in layouts.items():
        extra = sorted(set(classes) - set(class_names))
        if extra:
            raise DataError(
                f"'{folders[name]}' has class folders {extra} that train/ lacks; every class "
                "needs training images."
            )
        files = [f for c in class_names for f in classes.get(c, [])]
        labels = [i for i, c in enumerate(class_names) for _ in classes.get(c, [])]
        files, labels, bad = usable_files(files, labels, on_error, folders[name])
        found[name], skipped = (files, labels), skipped | bad
    options = ImageOptions(size, channels, augment, hflip, normalize, mixup, cutmix, on_error)
    splits = split_given_or_cut(found, context)
    return image_bundle("image-folder", splits, class_names, options, context, skipped)


def read_csv_list(path: Path) -> tuple[list[Path], list[str]]:
    """Files (relative to the CSV's folder) and labels of a ``path,label`` CSV."""
    if not path.is_file():
        raise DataError(f"data.source.csv '{path}' does not exist; check the path.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "path" not in columns or "label" not in columns:
            raise DataError(
                f"CSV '{path}' needs a header with 'path' and 'label' columns; it has "
                f"{columns or 'no header'}."
            )
        files, labels = [], []
        for row_number, row in enumerate(reader, start=2):
            file, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
            if not file or not label:
                raise DataError(
                    f"CSV '{path}', line {row_number}: 'path' and 'label' must both be filled."
                )
            files.append(path.parent / file)
            labels.append(label)
    if not files:
        raise DataError(f"CSV '{path}' lists no images; add rows of path,label.")
    return files, labels


@DATASETS.register("image-csv")
def image_csv(
    context: SourceContext,
    /,
    *,
    csv: str,
    size: int = 224,
    channels: Literal[1, 3] = 3,
    augment: Augment = "standard",
    hflip: bool = True,
    normalize: Normalize = "auto",
    mixup: float = 0.0,
    cutmix: float = 0.0,
    on_error: OnError = "skip",
) -> DataBundle:
    """Images listed in a CSV of ``path,label`` (paths relative to the CSV's folder).

    Args:
        csv: The CSV file.
        size, channels, augment, hflip, normalize, mixup, cutmix, on_error: As for
            ``image-folder``.
    """
    path = Path(csv).expanduser()
    files, names = read_csv_list(path)
    class_names = sorted(set(names))
    if len(class_names) < 2:
        raise DataError(f"CSV '{path}' has {len(class_names)} label(s); a classifier needs two.")
    index = {name: i for i, name in enumerate(class_names)}
    labels = [index[name] for name in names]
    files, labels, skipped = usable_files(files, labels, on_error, path)
    options = ImageOptions(size, channels, augment, hflip, normalize, mixup, cutmix, on_error)
    splits = split_given_or_cut({"train": (files, labels)}, context)
    return image_bundle("image-csv", splits, class_names, options, context, skipped)
