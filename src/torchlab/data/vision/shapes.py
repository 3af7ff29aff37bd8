"""A generated shapes dataset for segmentation and detection, written like a user's data.

:func:`write_shapes` draws coloured circles, squares and triangles on textured backgrounds
(noise, gradients, stripes), with a seeded number, size, rotation and overlap of shapes, and
writes them in the two formats users bring:

- COCO: ``images/`` + ``annotations.json`` (boxes ``[x, y, w, h]``, categories, RLE masks),
- a mask folder: ``images/`` + ``masks/`` (VOC-style palette PNGs, 0 = background) +
  ``classes.txt`` (one class name per line, index order).

The sources ``shapes-coco`` and ``shapes-masks`` generate the set into a cache folder once
and read it back through the same loaders (``coco``, ``mask-folder``) a user's data goes
through, so those loaders are exercised by every shapes run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from torchlab.errors import DataError

SHAPE_CLASSES = ("circle", "square", "triangle")
ANNOTATIONS = "annotations.json"
CLASSES_FILE = "classes.txt"
# A shape less visible than this (overlapped by later shapes) is redrawn elsewhere, so every
# annotated object can be seen.
MIN_VISIBLE = 0.5


def voc_palette() -> list[int]:
    """The Pascal VOC colour map (256 RGB triples, flattened): the palette of VOC masks."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):  # spread the index bits over the three channels
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def default_cache(name: str) -> Path:
    """``$TORCHLAB_CACHE/name`` (default ``~/.cache/torchlab/name``)."""
    base = os.environ.get("TORCHLAB_CACHE") or Path.home() / ".cache" / "torchlab"
    return Path(base).expanduser() / name


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted (size, size, 3) uint8 background: noise, a gradient or stripes."""
    base = rng.uniform(70, 170, size=3)
    kind = rng.integers(3)
    if kind == 0:  # noise
        pixels = base + rng.normal(0, 18, size=(size, size, 1))
    elif kind == 1:  # linear gradient between two muted colours
        other = rng.uniform(70, 170, size=3)
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1)
        t = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
        t = (t - t.min()) / (t.max() - t.min() + 1e-8)
        pixels = base * (1 - t) + other * t
    else:  # stripes at a random angle and period
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(6, 20)
        yy, xx = np.mgrid[0:size, 0:size]
        wave = np.sin(2 * math.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period)
        pixels = base + 20 * wave[..., None]
    return np.clip(pixels, 0, 255).astype(np.uint8)


def shape_mask(rng: np.random.Generator, kind: int, size: int) -> np.ndarray:
    """A (size, size) bool mask of one circle (0), square (1) or triangle (2)."""
    radius = rng.uniform(0.08, 0.2) * size
    cx, cy = rng.uniform(radius, size - radius, size=2)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == 0:
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=1)
    else:
        corners = 4 if kind == 1 else 3
        start = rng.uniform(0, 2 * math.pi)
        points = [
            (
                cx + radius * math.cos(start + 2 * math.pi * k / corners),
                cy + radius * math.sin(start + 2 * math.pi * k / corners),
            )
            for k in range(corners)
        ]
        draw.polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)


def colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated, bright colour (HSV with s, v near 1) that stands out from the background."""
    import colorsys

    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.7, 1.0), rng.uniform(0.8, 1.0))
    return np.array(rgb) * 255


def draw_scene(
    rng: np.random.Generator, size: int, max_objects: int
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, np.ndarray]]]:
    """One image, its label map and its objects as (class index from 1, visible mask)."""
    image = texture(rng, size).astype(np.float64)
    labels = np.zeros((size, size), dtype=np.uint8)
    owner = np.full((size, size), -1)
    shapes: list[tuple[int, np.ndarray]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(10):
            kind = int(rng.integers(len(SHAPE_CLASSES)))
            mask = shape_mask(rng, kind, size)
            # Earlier shapes must stay visible enough once this one is drawn over them.
            covered = [((owner == i) & ~mask).sum() / m.sum() for i, (_, m) in enumerate(shapes)]
            if all(c >= MIN_VISIBLE for c in covered):
                break
        else:
            continue
        image[mask] = colour(rng)
        labels[mask] = kind + 1
        owner[mask] = len(shapes)
        shapes.append((kind + 1, mask))
    visible = [(label, owner == i) for i, (label, _) in enumerate(shapes)]
    return image.astype(np.uint8), labels, visible


def coco_annotation(index: int, image_id: int, label: int, mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    ys, xs = np.nonzero(mask)
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    x0, y0 = int(xs.min()), int(ys.min())
    return {
        "id": index,
        "image_id": image_id,
        "category_id": label,
        "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
        "area": int(mask.sum()),
        "iscrowd": 0,
        "segmentation": rle,
    }


def write_shapes(
    root: str | Path, n: int, size: int = 128, seed: int = 0, *, max_objects: int = 4
) -> Path:
    """Generate ``n`` images of ``size`` x ``size`` pixels into ``root``, in both formats.

    The set is written into a temporary folder beside ``root`` and moved into place at the
    end, so an interrupted run never leaves a half-written set behind.

    Args:
        root: The folder to create; it must not exist yet.
        n: Number of images.
        size: Height and width in pixels.
        seed: Seed of everything drawn: the same arguments give the same files.
        max_objects: Most shapes per image (at least one).

    Returns:
        ``root``.
    """
    root = Path(root)
    if root.exists():
        raise DataError(
            f"Folder '{root}' already exists; write the shapes dataset into a new folder."
        )
    if n < 1 or size < 16 or max_objects < 1:
        raise DataError(
            f"write_shapes needs n >= 1, size >= 16 and max_objects >= 1; received n={n}, "
            f"size={size}, max_objects={max_objects}."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        _write(staging, n, size, seed, max_objects)
        os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def _write(folder: Path, n: int, size: int, seed: int, max_objects: int) -> None:
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    palette = voc_palette()
    images, annotations = [], []
    for image_id in range(1, n + 1):
        image, labels, objects = draw_scene(rng, size, max_objects)
        name = f"{image_id:05d}.png"
        Image.fromarray(image, "RGB").save(folder / "images" / name)
        mask = Image.fromarray(labels, "L").convert("P")
        mask.putpalette(palette)
        mask.save(folder / "masks" / name)
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
        for label, visible in objects:
            annotations.append(coco_annotation(len(annotations) + 1, image_id, label, visible))
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(SHAPE_CLASSES)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (folder / ANNOTATIONS).write_text(json.dumps(coco))
    (folder / CLASSES_FILE).write_text("\n".join(("background", *SHAPE_CLASSES)) + "\n")


def cached_shapes(root: str | None, n: int, size: int, seed: int, max_objects: int) -> Path:
    """The shapes set of these settings, generated into the cache folder on first use."""
    name = f"shapes-n{n}-s{size}-seed{seed}-k{max_objects}"
    folder = Path(root).expanduser() if root else default_cache(name)
    if (folder / ANNOTATIONS).is_file():
        return folder
    try:
        return write_shapes(folder, n, size, seed, max_objects=max_objects)
    except (DataError, OSError):
        if (folder / ANNOTATIONS).is_file():  # another process generated it meanwhile
            return folder
        raise
