"""torchvision's classification datasets by name: MNIST, FashionMNIST, CIFAR10, CIFAR100, ...

The dataset class is torchvision's own, reading (and with ``download: true``, downloading)
its usual files under ``root``. Its training set gives train and val (cut with the run's
seeded split); its test set is the test split. Images go through the same per-item
decode + augmentation pipeline as an image folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from torchlab.data.base import DataBundle, SourceContext
from torchlab.data.splits import refuse_folds, split_indices
from torchlab.data.vision.dataset import ImageOptions, SplitItems, image_bundle
from torchlab.data.vision.files import to_array
from torchlab.errors import DataError
from torchlab.registry import DATASETS

# Dataset name -> how its train and test parts are asked for.
TRAIN_FLAG = ("MNIST", "FashionMNIST", "KMNIST", "QMNIST", "CIFAR10", "CIFAR100")
SPLIT_NAME = ("SVHN", "STL10")
NAMES = TRAIN_FLAG + SPLIT_NAME


class Reader:
    """``index -> uint8 (C, H, W)`` over a torchvision dataset (picklable for workers)."""

    def __init__(self, dataset: Any, indices: np.ndarray, channels: int) -> None:
        self.dataset, self.indices, self.channels = dataset, indices, channels

    def __call__(self, index: int) -> torch.Tensor:
        image, _ = self.dataset[int(self.indices[index])]
        tensor = torch.from_numpy(to_array(image, self.channels))
        return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def open_dataset(name: str, root: Path, part: str, download: bool) -> Any:
    """torchvision's dataset ``name`` (its ``train`` or ``test`` part), as a clear DataError
    when its files are missing and cannot be downloaded."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, name)
    kwargs: dict[str, Any] = {"train": part == "train"} if name in TRAIN_FLAG else {"split": part}
    try:
        return cls(str(root), download=download, **kwargs)
    except (RuntimeError, OSError) as exc:
        if download:
            raise DataError(
                f"torchvision dataset {name} is not in '{root}' and downloading it failed "
                f"({str(exc).splitlines()[0][:200]}); download is impossible from here, so copy "
                f"its files into '{root}' (torchvision's layout) and retry."
            ) from None
        raise DataError(
            f"torchvision dataset {name} is not in '{root}'; set data.source.download=true "
            f"to download it, or copy its files there (torchvision's layout)."
        ) from None


def labels_of(dataset: Any) -> np.ndarray:
    for attribute in ("targets", "labels"):
        values = getattr(dataset, attribute, None)
        if values is not None:
            return np.asarray(values if not isinstance(values, torch.Tensor) else values.numpy())
    return np.asarray([dataset[i][1] for i in range(len(dataset))])


@DATASETS.register("torchvision")
def torchvision_dataset(
    context: SourceContext,
    /,
    *,
    dataset: Literal[
        "MNIST", "FashionMNIST", "KMNIST", "QMNIST", "CIFAR10", "CIFAR100", "SVHN", "STL10"
    ],
    root: str = "data",
    download: bool = False,
    size: int | None = None,
    channels: Literal[1, 3] | None = None,
    augment: Literal["none", "light", "standard", "strong"] = "standard",
    hflip: bool = True,
    normalize: Literal["auto", "dataset", "imagenet"] = "auto",
    mixup: float = 0.0,
    cutmix: float = 0.0,
) -> DataBundle:
    """A torchvision dataset: its train part for train/val, its test part for test.

    Args:
        dataset: The dataset class in ``torchvision.datasets`` (``name`` is taken by the
            source's own name, ``torchvision``).
        root: Folder holding (or receiving) the dataset's files.
        download: Download the files into ``root`` when they are not there.
        size: Height and width the model sees (default: the dataset's own).
        channels: 1 or 3 (default: the dataset's own: 1 for the MNIST family).
        augment, hflip, normalize, mixup, cutmix: As for ``image-folder``.
    """
    base = Path(root).expanduser()
    train_set = open_dataset(dataset, base, "train", download)
    test_set = open_dataset(dataset, base, "test", download)
    first, _ = train_set[0]
    channels = channels or (1 if first.mode in ("L", "I", "I;16", "F") else 3)
    size = size or max(first.size)
    refuse_folds(context.fold, "torchvision", f"{dataset}'s own test part is the test part")
    labels = labels_of(train_set)
    stratify = labels if context.stratify else None
    train, val, _ = split_indices(
        len(labels), val=context.val, test=0.0, seed=context.seed, stratify=stratify
    )
    test_labels = labels_of(test_set)
    test = np.arange(len(test_labels))
    splits = {
        "train": SplitItems(labels[train].tolist(), reader=Reader(train_set, train, channels)),
        "val": SplitItems(labels[val].tolist(), reader=Reader(train_set, val, channels)),
        "test": SplitItems(test_labels.tolist(), reader=Reader(test_set, test, channels)),
    }
    classes = getattr(train_set, "classes", None) or [str(c) for c in np.unique(labels)]
    options = ImageOptions(size, channels, augment, hflip, normalize, mixup, cutmix, "fail")
    return image_bundle(f"torchvision:{dataset}", splits, classes, options, context)
