"""Object detection data: COCO JSON and Pascal VOC XML, with box-aware augmentation.

Every item is ``(image, target)``: the image as ``(3, H, W)`` floats in [0, 1] and the target
as torchvision detectors want it, ``{"boxes": (N, 4) float XYXY pixels, "labels": (N,)
int64}`` with labels from 1 (0 is the detectors' background). Boxes travel through
``torchvision.transforms.v2`` as ``tv_tensors.BoundingBoxes``, so flips and rescaling move
them with the image; ``SanitizeBoundingBoxes`` drops boxes a transform made degenerate.
Images hold different numbers of boxes, so :func:`collate` keeps lists.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from torchlab.data.base import Batch, DataBundle, DataSpec, SourceContext
from torchlab.data.splits import split_indices
from torchlab.data.vision.images import read_image
from torchlab.data.vision.pixels import PixelFeaturizer
from torchlab.data.vision.shapes import ANNOTATIONS, cached_shapes
from torchlab.errors import DataError
from torchlab.registry import DATASETS

Augment = Literal["none", "light", "standard"]


@dataclass(frozen=True)
class Record:
    """One image and its boxes (XYXY pixels) and labels (from 1)."""

    path: Path
    width: int
    height: int
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[int, ...]


def check_box(box: list[float], width: int, height: int, where: str) -> tuple[float, ...]:
    """An XYXY box clipped to the image; a box with no area or outside it is an error."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise DataError(
            f"{where} has a box with no area ({x0}, {y0}, {x1}, {y1}); fix or remove it."
        )
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise DataError(
            f"{where} has a box ({x0}, {y0}, {x1}, {y1}) outside its {width}x{height} image; "
            "fix or remove it."
        )
    return (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))


def read_coco(path: Path, image_dir: Path) -> tuple[list[Record], tuple[str, ...]]:
    """Records and category names (in ascending category id) of a COCO JSON file."""
    try:
        data = json.loads(path.read_text())
        categories = sorted(data["categories"], key=lambda c: c["id"])
        images = data["images"]
        annotations = data.get("annotations", [])
    except FileNotFoundError:
        raise DataError(f"Annotation file '{path}' does not exist; check data.source.") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(
            f"'{path}' is not a COCO annotation file ({type(exc).__name__}: {exc}); it needs "
            "'images', 'annotations' and 'categories'."
        ) from None
    label_of = {c["id"]: i + 1 for i, c in enumerate(categories)}
    by_image: dict[Any, list[dict]] = {img["id"]: [] for img in images}
    for ann in annotations:
        if ann.get("image_id") not in by_image:
            raise DataError(
                f"Annotation {ann.get('id')} in '{path}' names image_id {ann.get('image_id')}, "
                "which is not in 'images'; fix the annotation."
            )
        by_image[ann["image_id"]].append(ann)
    records = []
    for img in images:
        file = image_dir / img["file_name"]
        if not file.is_file():
            raise DataError(f"Image '{file}' listed in '{path}' does not exist; add or unlist it.")
        boxes, labels = [], []
        for ann in by_image[img["id"]]:
            if ann.get("iscrowd", 0):
                continue  # crowd regions are not objects to detect (COCO's convention)
            where = f"Annotation {ann.get('id')} of '{img['file_name']}' in '{path}'"
            if ann.get("category_id") not in label_of:
                raise DataError(
                    f"{where} has category_id {ann.get('category_id')}, which is not in "
                    f"'categories' ({sorted(label_of)}); fix the annotation or add the category."
                )
            x, y, w, h = ann["bbox"]
            boxes.append(check_box([x, y, x + w, y + h], img["width"], img["height"], where))
            labels.append(label_of[ann["category_id"]])
        records.append(Record(file, img["width"], img["height"], tuple(boxes), tuple(labels)))
    return records, tuple(c["name"] for c in categories)


def read_voc(
    annotation_dir: Path, image_dir: Path, classes: list[str] | None
) -> tuple[list[Record], tuple[str, ...]]:
    """Records of a Pascal VOC folder of XML files; classes default to the names found."""
    files = sorted(annotation_dir.glob("*.xml")) if annotation_dir.is_dir() else []
    if not files:
        raise DataError(f"No .xml annotations in '{annotation_dir}'; check data.source.root.")
    parsed = [(file, _parse_voc(file)) for file in files]
    names = tuple(classes) if classes else tuple(sorted({o[0] for _, p in parsed for o in p[3]}))
    label_of = {name: i + 1 for i, name in enumerate(names)}
    records = []
    for file, (filename, width, height, objects) in parsed:
        image = image_dir / filename
        if not image.is_file():
            raise DataError(f"Image '{image}' named in '{file}' does not exist; add it.")
        boxes, labels = [], []
        for name, box, difficult in objects:
            if difficult:
                continue  # VOC leaves difficult objects out of training and scoring
            if name not in label_of:
                raise DataError(
                    f"'{file}' has an object of class '{name}', which is not in "
                    f"data.source.classes {list(names)}; add the class or fix the file."
                )
            # VOC pixel indices start at 1; XYXY boxes here start at 0.
            boxes.append(
                check_box([box[0] - 1, box[1] - 1, box[2], box[3]], width, height, f"'{file}'")
            )
            labels.append(label_of[name])
        records.append(Record(image, width, height, tuple(boxes), tuple(labels)))
    return records, names


def _parse_voc(file: Path) -> tuple[str, int, int, list[tuple[str, list[float], bool]]]:
    try:
        root = ET.parse(file).getroot()
        size = root.find("size")
        width, height = int(size.findtext("width")), int(size.findtext("height"))  # type: ignore[union-attr, arg-type]
        objects = []
        for obj in root.iter("object"):
            box = obj.find("bndbox")
            coords = [float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr, arg-type]
            objects.append(
                (obj.findtext("name", "").strip(), coords, obj.findtext("difficult") == "1")
            )
        return root.findtext("filename", "").strip(), width, height, objects
    except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
        raise DataError(
            f"'{file}' is not a valid Pascal VOC annotation ({type(exc).__name__}: {exc}); it "
            "needs filename, size/width, size/height and object/bndbox/xmin..ymax."
        ) from None


def transforms(augment: Augment, size: tuple[int, int] | None, train: bool) -> v2.Transform:
    """Box-aware transforms: resize, plus flips, scale jitter and colour changes in training."""
    steps: list[v2.Transform] = [v2.Resize(list(size), antialias=True)] if size else []
    if train and augment != "none":
        steps.append(v2.RandomHorizontalFlip())
        if augment == "standard":
            steps += [
                v2.RandomPhotometricDistort(p=0.5),
                v2.RandomAffine(degrees=0, scale=(0.8, 1.2)),  # scale jitter, same canvas
            ]
    steps.append(v2.SanitizeBoundingBoxes(min_size=2))
    return v2.Compose(steps)


class DetectionDataset(Dataset):
    """Items ``(image (3, H, W) float in [0, 1], {"boxes": (N, 4), "labels": (N,)})``."""

    def __init__(self, records: list[Record], transform: v2.Transform) -> None:
        self.records, self.transform = records, transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        record = self.records[index]
        image = read_image(record.path, 3)
        if image.shape[1:] != (record.height, record.width):
            raise DataError(
                f"Image '{record.path}' is {image.shape[2]}x{image.shape[1]} but its annotation "
                f"says {record.width}x{record.height}; fix the annotation."
            )
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.tensor(record.boxes, dtype=torch.float32).reshape(-1, 4),
                format="XYXY",
                canvas_size=(record.height, record.width),
            ),
            "labels": torch.tensor(record.labels, dtype=torch.int64),
        }
        image, target = self.transform(tv_tensors.Image(image), target)
        return image.as_subclass(torch.Tensor), {
            "boxes": target["boxes"].as_subclass(torch.Tensor),
            "labels": target["labels"],
        }


def collate(samples: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> Batch:
    """A list of images and a list of target dicts (sizes and box counts differ)."""
    return Batch([image for image, _ in samples], [target for _, target in samples])


def bundle_of(
    context: SourceContext,
    records: list[Record],
    names: tuple[str, ...],
    size: int | None,
    augment: Augment,
    source: str,
) -> DataBundle:
    """Split records and wrap them as datasets with the spec, featurizer and summary."""
    if not records:
        raise DataError(f"Data source '{source}' found no images; check data.source.root.")
    shape = (size, size) if size else (records[0].height, records[0].width)
    train, val, test = split_indices(
        len(records), val=context.val, test=context.test, seed=context.seed, fold=context.fold
    )
    splits = {"train": train, "val": val, "test": test}
    datasets = {
        name: DetectionDataset(
            [records[i] for i in idx], transforms(augment, shape if size else None, name == "train")
        )
        for name, idx in splits.items()
    }
    counts = {
        name: torch.bincount(
            torch.tensor([lab for i in idx for lab in records[i].labels], dtype=torch.int64),
            minlength=len(names) + 1,
        ).tolist()
        for name, idx in splits.items()
    }
    summary = {
        "source": source,
        "sizes": {name: len(d) for name, d in datasets.items()},
        "class_counts": counts,  # boxes of each class; index 0 (background) stays 0
    }
    return DataBundle(
        **datasets,
        spec=DataSpec((3, *shape), "categorical", class_names=("background", *names)),
        featurizer=PixelFeaturizer(size=shape),
        summary=summary,
        collate=collate,
        baseline_note="No baseline: scikit-learn and statsmodels hold no object detector.",
    )


@DATASETS.register("coco")
def coco(
    context: SourceContext,
    /,
    *,
    root: str,
    annotations: str = ANNOTATIONS,
    images: str = "images",
    size: int | None = None,
    augment: Augment = "standard",
) -> DataBundle:
    """A COCO-format detection set: ``root/annotations`` (JSON) and ``root/images``.

    Args:
        root: Folder of the dataset.
        annotations: The COCO JSON file inside ``root``.
        images: The image folder inside ``root`` (``file_name`` is relative to it).
        size: Height and width images are resized to (boxes follow); by default unchanged.
        augment: ``none``, ``light`` (flips) or ``standard`` (flips, scale jitter,
            photometric distortion).
    """
    folder = Path(root).expanduser()
    records, names = read_coco(folder / annotations, folder / images)
    return bundle_of(context, records, names, size, augment, "coco")


@DATASETS.register("voc")
def voc(
    context: SourceContext,
    /,
    *,
    root: str,
    annotations: str = "Annotations",
    images: str = "JPEGImages",
    classes: list[str] | None = None,
    size: int | None = None,
    augment: Augment = "standard",
) -> DataBundle:
    """A Pascal VOC detection folder: ``root/Annotations/*.xml`` and ``root/JPEGImages``.

    Args:
        root: Folder of the dataset.
        annotations: Folder of the XML files inside ``root``.
        images: Image folder inside ``root``.
        classes: Class names (labels 1, 2, ... in this order); by default the sorted names
            found in the annotations.
        size: Height and width images are resized to (boxes follow); by default unchanged.
        augment: ``none``, ``light`` or ``standard`` (see ``coco``).
    """
    folder = Path(root).expanduser()
    records, names = read_voc(folder / annotations, folder / images, classes)
    return bundle_of(context, records, names, size, augment, "voc")


@DATASETS.register("shapes-coco")
def shapes_coco(
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
) -> DataBundle:
    """The generated shapes set (see :mod:`torchlab.data.vision.shapes`) read as COCO.

    Args:
        n: Number of images generated.
        image_size: Height and width of the generated images.
        max_objects: Most shapes per image.
        seed: Seed of the generator (the split uses the run's seed).
        root: Where the set is generated; by default a cache folder named by the settings.
        size: Size images are resized to (default: unchanged).
        augment: Training augmentation (see ``coco``).
    """
    folder = cached_shapes(root, n, image_size, seed, max_objects)
    bundle = coco(context, root=str(folder), size=size, augment=augment)
    bundle.summary["source"] = "shapes-coco"
    return bundle
