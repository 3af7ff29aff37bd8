"""Semantic segmentation data: a folder of images and a folder of masks with matching stems.

Masks hold one class index per pixel: VOC-style palette PNGs (the palette index is the
class) or grayscale PNGs; ``255`` marks pixels to ignore (VOC's object borders). Images and
masks are augmented together with ``torchvision.transforms.v2``: wrapped as
``tv_tensors.Image`` and ``tv_tensors.Mask``, geometric transforms move both (masks with
nearest-neighbour resampling) and photometric ones touch only the image.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from torchlab.data.base import DataBundle, DataSpec, SourceContext
from torchlab.data.splits import split_indices
from torchlab.data.vision.images import IMAGE_SUFFIXES, read_image
from torchlab.data.vision.pixels import PixelFeaturizer
from torchlab.data.vision.shapes import CLASSES_FILE, cached_shapes
from torchlab.errors import DataError
from torchlab.registry import DATASETS

IGNORE_INDEX = 255
Augment = Literal["none", "light", "standard"]


class MaskError(DataError):
    """A mask that cannot be used: the mask, why and the fix (one line); ``reason`` lets a
    reader that skips bad samples list it, and it pickles across loader workers."""

    def __init__(self, name: str, reason: str, fix: str) -> None:
        super().__init__(f"Mask '{name}' {reason}; {fix}.")
        self.name, self.reason, self.fix = name, reason, fix

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.reason, self.fix))


def read_mask(path: Path | BinaryIO, name: str | None = None) -> np.ndarray:
    """A mask file (or its bytes, called ``name``) as (H, W) uint8 class indices (palette
    indices for palette PNGs)."""
    name = name or str(path)
    try:
        with Image.open(path) as mask:
            if mask.mode not in ("P", "L", "I;16", "I"):
                raise MaskError(
                    name, f"is a {mask.mode} image", "save masks as palette or grayscale PNGs "
                    "whose pixel values are class indices"
                )  # fmt: skip
            array = np.asarray(mask)
    except (OSError, Image.DecompressionBombError) as exc:
        raise MaskError(name, f"cannot be read ({exc})", "replace or remove it") from None
    if array.max(initial=0) > 255:
        raise MaskError(name, "holds values above 255", "class indices must be 0-254")
    return array.astype(np.uint8)


def check_mask(labels: np.ndarray, name: str, image_size: tuple[int, int], classes: int) -> None:
    """Raise :class:`MaskError` unless ``labels`` has its image's ``(width, height)`` and
    holds class indices below ``classes`` (or the ignore index)."""
    width, height = image_size
    if labels.shape != (height, width):
        raise MaskError(
            name, f"is {labels.shape[1]}x{labels.shape[0]} but its image is {width}x{height}",
            "masks must have their image's size",
        )  # fmt: skip
    bad = labels[(labels >= classes) & (labels != IGNORE_INDEX)]
    if bad.size:
        raise MaskError(
            name, f"holds class index {int(bad.max())} but there are {classes} classes "
            f"(0-{classes - 1}, {IGNORE_INDEX} = ignore)", "fix the mask or the class list",
        )  # fmt: skip


def class_names(root: Path, classes: list[str] | str | None) -> tuple[str, ...]:
    """Class names given in the config, or read from a JSON list or a text file (one per line)."""
    if isinstance(classes, list):
        return tuple(classes)
    candidates = [root / classes] if classes else [root / CLASSES_FILE, root / "classes.json"]
    for path in candidates:
        if path.is_file():
            if path.suffix == ".json":
                names = json.loads(path.read_text())
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise DataError(f"'{path}' must hold a JSON list of class names.")
                return tuple(names)
            return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    raise DataError(
        f"No class names for '{root}': write {' or '.join(map(str, candidates))} (one name per "
        "line, index order, background first) or list them in data.source.classes."
    )


def scan(
    root: Path, images: str, masks: str, num_classes: int
) -> tuple[list[tuple[Path, Path]], np.ndarray]:
    """Image/mask pairs, checked (matching mask, same size, indices in range), and the pixel
    count of each class in each mask, shaped (N, num_classes)."""
    image_dir, mask_dir = root / images, root / masks
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(f"Folder '{folder}' does not exist; check data.source.root.")
    masks_by_stem = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"No images in '{image_dir}'; add .png or .jpg files.")
    pairs, counts = [], []
    for image in files:
        mask = masks_by_stem.get(image.stem)
        if mask is None:
            raise DataError(
                f"Image '{image}' has no mask in '{mask_dir}'; add {image.stem}.png there or "
                "remove the image."
            )
        labels = read_mask(mask)
        try:
            with Image.open(image) as opened:
                size = opened.size
        except OSError as exc:
            raise DataError(f"Image '{image}' cannot be read ({exc}); replace it.") from None
        check_mask(labels, str(mask), size, num_classes)
        pairs.append((image, mask))
        counts.append(np.bincount(labels[labels != IGNORE_INDEX], minlength=num_classes))
    return pairs, np.stack(counts)


def transforms(augment: Augment, size: tuple[int, int], train: bool) -> v2.Transform:
    """Joint image + mask transforms: resize for evaluation, plus augmentation for training."""
    resize = v2.Resize(list(size), antialias=True)
    if not train or augment == "none":
        return v2.Compose([resize])
    if augment == "light":
        return v2.Compose([resize, v2.RandomHorizontalFlip()])
    return v2.Compose(
        [
            v2.RandomResizedCrop(list(size), scale=(0.6, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),  # image only
        ]
    )


class SegmentationDataset(Dataset):
    """Items ``(image (3, H, W) float in [0, 1], mask (H, W) int64)`` read from files."""

    def __init__(self, pairs: list[tuple[Path, Path]], transform: v2.Transform) -> None:
        self.pairs, self.transform = pairs, transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        image = tv_tensors.Image(read_image(image_path, 3))
        mask = tv_tensors.Mask(torch.from_numpy(read_mask(mask_path)))
        image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()


class PixelColours(Mapping):
    """Per split, the RGB of pixels as (N, 3) rows for a per-pixel baseline, read lazily.

    Training splits are subsampled (``per_image`` pixels of each image); the test split
    keeps every pixel so the baseline is scored on the same pixels as the model.
    """

    def __init__(self, datasets: dict[str, Dataset], per_image: int, seed: int) -> None:
        self.datasets, self.per_image, self.seed = datasets, per_image, seed
        self.cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.targets = _Targets(self)

    def load(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self.cache:
            rng = np.random.default_rng(self.seed)
            xs, ys = [], []
            for image, mask in self.datasets[name]:
                x = image.permute(1, 2, 0).reshape(-1, image.shape[0]).numpy()
                y = mask.reshape(-1).numpy()
                keep = np.flatnonzero(y != IGNORE_INDEX)
                if name != "test" and len(keep) > self.per_image:
                    keep = rng.choice(keep, self.per_image, replace=False)
                xs.append(x[keep])
                ys.append(y[keep])
            self.cache[name] = (np.concatenate(xs), np.concatenate(ys))
        return self.cache[name]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.load(name)[0]

    def __iter__(self) -> Iterator[str]:
        return iter(self.datasets)

    def __len__(self) -> int:
        return len(self.datasets)


class _Targets(Mapping):
    def __init__(self, colours: PixelColours) -> None:
        self.colours = colours

    def __getitem__(self, name: str) -> np.ndarray:
        return self.colours.load(name)[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self.colours)

    def __len__(self) -> int:
        return len(self.colours)


def pixel_scores(num_classes: int) -> Callable[[np.ndarray, np.ndarray], dict[str, float]]:
    """Mean IoU and Dice of per-pixel predictions, as the segmentation task computes them."""

    def score(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        matrix = np.bincount(
            y_true.astype(np.int64) * num_classes + y_pred.astype(np.int64),
            minlength=num_classes**2,
        ).reshape(num_classes, num_classes)
        tp = np.diag(matrix).astype(float)
        fp, fn = matrix.sum(0) - tp, matrix.sum(1) - tp
        present = (tp + fp + fn) > 0
        iou = tp[present] / (tp + fp + fn)[present]
        dice = 2 * tp[present] / (2 * tp + fp + fn)[present]
        return {"mean_iou": float(iou.mean()), "dice": float(dice.mean())}

    return score


@DATASETS.register("mask-folder")
def mask_folder(
    context: SourceContext,
    /,
    *,
    root: str,
    images: str = "images",
    masks: str = "masks",
    classes: list[str] | str | None = None,
    size: int | tuple[int, int] | None = None,
    augment: Augment = "standard",
    baseline_pixels_per_image: int = 200,
) -> DataBundle:
    """Images and class-index masks with matching file stems (``images/a.jpg``, ``masks/a.png``).

    Args:
        root: Folder holding the image and mask folders.
        images: Image folder inside ``root``.
        masks: Mask folder inside ``root`` (palette or grayscale PNGs; 255 = ignore).
        classes: Class names in index order (background first), or a JSON/text file in
            ``root`` naming them; by default ``classes.txt`` or ``classes.json`` in ``root``.
        size: Height and width every image is resized to (an int for squares); by default
            the images' own size, which must then be the same for all.
        augment: Training augmentation: ``none``, ``light`` (flips) or ``standard`` (random
            resized crop, flips, colour jitter).
        baseline_pixels_per_image: Pixels per training image the per-pixel baseline sees.
    """
    folder = Path(root).expanduser()
    names = class_names(folder, classes)
    if len(names) < 2:
        raise DataError(f"Segmentation needs at least 2 classes (with background); got {names}.")
    pairs, counts = scan(folder, images, masks, len(names))
    shape = _common_size(pairs, size)
    train, val, test = split_indices(
        len(pairs), val=context.val, test=context.test, seed=context.seed, fold=context.fold
    )
    datasets = {
        name: SegmentationDataset(
            [pairs[i] for i in idx], transforms(augment, shape, name == "train")
        )
        for name, idx in (("train", train), ("val", val), ("test", test))
    }
    plain = {
        name: SegmentationDataset(datasets[name].pairs, transforms("none", shape, False))
        for name in datasets
    }
    colours = PixelColours(plain, baseline_pixels_per_image, context.seed)
    summary = {
        "source": "mask-folder",
        "root": str(folder),
        "sizes": {name: len(d) for name, d in datasets.items()},
        "class_counts": {  # pixels of each class
            name: counts[idx].sum(0).tolist()
            for name, idx in (("train", train), ("val", val), ("test", test))
        },
        "image_size": list(shape),
    }
    return DataBundle(
        **datasets,
        spec=DataSpec((3, *shape), "categorical", class_names=names),
        featurizer=PixelFeaturizer(size=shape),
        summary=summary,
        baseline_inputs=colours,
        baseline_targets=colours.targets,
        baseline_metrics=pixel_scores(len(names)),
    )


def _common_size(
    pairs: list[tuple[Path, Path]], size: int | tuple[int, int] | None
) -> tuple[int, int]:
    if size is not None:
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    shapes: dict[tuple[int, int], Path] = {}
    for image, _ in pairs:
        with Image.open(image) as opened:
            shapes.setdefault((opened.height, opened.width), image)
    if len(shapes) > 1:
        (a, path_a), (b, path_b) = list(shapes.items())[:2]
        raise DataError(
            f"Images differ in size ('{path_a}' is {a[1]}x{a[0]}, '{path_b}' is {b[1]}x{b[0]}); "
            "set data.source.size to resize them all."
        )
    return next(iter(shapes))


@DATASETS.register("shapes-masks")
def shapes_masks(
    context: SourceContext,
    /,
    *,
    n: int = 600,
    image_size: int = 128,
    max_objects: int = 4,
    seed: int = 0,
    root: str | None = None,
    size: int | None = None,
    augment: Augment = "standard",
    baseline_pixels_per_image: int = 200,
) -> DataBundle:
    """The generated shapes set (see :mod:`torchlab.data.vision.shapes`) read as a mask folder.

    Args:
        n: Number of images generated.
        image_size: Height and width of the generated images.
        max_objects: Most shapes per image.
        seed: Seed of the generator (the split uses the run's seed).
        root: Where the set is generated; by default a cache folder named by the settings.
        size: Size the images are resized to for the model (default: ``image_size``).
        augment: Training augmentation (see ``mask-folder``).
        baseline_pixels_per_image: Pixels per training image the per-pixel baseline sees.
    """
    folder = cached_shapes(root, n, image_size, seed, max_objects)
    bundle = mask_folder(
        context,
        root=str(folder),
        size=size or image_size,
        augment=augment,
        baseline_pixels_per_image=baseline_pixels_per_image,
    )
    bundle.summary["source"] = "shapes-masks"
    return bundle
