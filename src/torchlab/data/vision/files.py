"""Reading one image file robustly, whatever its mode, into the channel count a model wants.

Pillow hands back many modes: ``L`` (grayscale), ``RGB``, ``RGBA`` and ``LA`` (with alpha),
``P`` (palette, maybe with transparency), ``I;16`` / ``I`` (16- and 32-bit integers, common
for microscopy and medical scans), ``F`` (float), ``CMYK``. :func:`load_image` turns each into
``(C, H, W)`` uint8 with C = 1 or 3: alpha is composited on white (transparent pixels become
background, not black), 16-bit values are scaled to 8 bits, and EXIF orientation is applied
so a phone photo is upright.

Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) stays on: an image over it is
reported as a :class:`~torchlab.errors.DataError` naming the file, never silently decoded.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from torchlab.errors import DataError

ORIENTATION = 0x0112  # the EXIF tag saying how to rotate the stored pixels for display
IN_MEMORY = "<in-memory image>"  # the name of an image read from bytes
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class EncodedImage(NamedTuple):
    """An image file's bytes read from elsewhere (a tar shard), and the name its row carries."""

    name: str
    data: bytes


def image_name(file: Path | EncodedImage) -> str:
    return file.name if isinstance(file, EncodedImage) else str(file)


def image_files(paths: Iterable[str | Path | EncodedImage]) -> list[Path | EncodedImage]:
    """The image files named, with folders expanded to the images anywhere below them
    (sorted; hidden files and folders left out), so an ImageFolder root, whose images sit in
    one sub-folder per class, can be predicted as it is; encoded images pass as they are."""
    paths = list(paths)
    files: list[Path | EncodedImage] = []
    for given in paths:
        if isinstance(given, EncodedImage):
            files.append(given)
            continue
        path = Path(given)
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"Input '{path}' does not exist; check the path.")
    if not files:
        raise DataError(
            f"No image files found in {', '.join(map(str, paths))}; give .png or .jpg files."
        )
    return files


class ImageReadError(DataError):
    """An image file that cannot be used: the file, why, and the fix (one line, as ever).

    ``path`` and ``reason`` let callers that skip bad files list them; the error pickles with
    them, so it crosses from a loader worker to the training process intact.
    """

    def __init__(self, path: str, reason: str, fix: str = "replace or remove the file") -> None:
        super().__init__(f"Image '{path}' {reason}; {fix}.")
        self.path, self.reason, self.fix = path, reason, fix

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.reason, self.fix))


@contextmanager
def reading(name: str) -> Iterator[None]:
    """Turn whatever Pillow or the file system raises while reading file ``name`` (or
    ``<in-memory image>``) into an :class:`ImageReadError`."""
    try:
        with warnings.catch_warnings():
            # Over MAX_IMAGE_PIXELS Pillow only warns (an error at twice the limit): both stop here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageReadError(
            name, f"is too large to decode safely ({exc})", "shrink it or remove it"
        ) from None
    except FileNotFoundError:
        raise ImageReadError(name, "does not exist", "check the path") from None
    except UnidentifiedImageError as exc:
        empty = Path(name).is_file() and Path(name).stat().st_size == 0
        why = "no image format Pillow knows" if name == IN_MEMORY else exc  # not a BytesIO repr
        raise ImageReadError(
            name, "is empty (0 bytes)" if empty else f"cannot be read ({why})"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(name, f"cannot be read ({exc})") from None


def load_image(
    path: str | Path | io.BytesIO, channels: int, *, draft: int | None = None
) -> torch.Tensor:
    """One image as ``(channels, H, W)`` uint8, upright, with alpha composited on white.

    Args:
        path: A file path or an in-memory encoded image.
        channels: 1 (grayscale) or 3 (RGB).
        draft: Decode JPEGs at the smallest scale (down to 1/8) that keeps at least this
            many pixels a side: several times faster when only a small image is wanted.

    Raises:
        ImageReadError: The file is missing, not an image, truncated, or over Pillow's
            decompression-bomb pixel limit.
    """
    name = str(path) if isinstance(path, (str, Path)) else IN_MEMORY
    with reading(name), Image.open(path) as image:
        array = image_array(image, channels, draft=draft)
    tensor = torch.from_numpy(array)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)  # (C, H, W)


def image_array(image: Image.Image, channels: int, *, draft: int | None = None) -> np.ndarray:
    """An opened image's pixels, decoded as :func:`load_image` says, as uint8 ``(H, W)`` (1
    channel) or ``(H, W, 3)``; Pillow's errors pass through (see :func:`reading`)."""
    if channels not in (1, 3):
        raise DataError(f"Images can be read with 1 or 3 channels, not {channels}.")
    if draft is not None:
        image.draft(image.mode, (draft, draft))  # formats other than JPEG ignore it
    if image.getexif().get(ORIENTATION, 1) != 1:  # else skip exif_transpose's copy
        image = ImageOps.exif_transpose(image)
    return to_array(image, channels)


# The bytes a complete file of these formats ends with (JPEG's EOI marker, PNG's IEND chunk,
# GIF's trailer); entropy-coded JPEG data never holds FF D9, so a cut-off file lacks them.
ENDINGS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82", "GIF": b";"}


def check_image(path: Path) -> None:
    """Raise :class:`ImageReadError` when ``path`` is no usable image; cheap enough to run
    over every file of a dataset before training.

    Reads the header and the last bytes: an empty file, a file that is no image (or cannot
    be opened) and a JPEG/PNG/GIF cut short are found here. A file whose end marker is
    missing is decoded (JPEGs at 1/8 scale) before it is called bad, since some cameras
    append data after the marker. Damage inside an otherwise whole file shows only when
    the image is decoded in full, at its first read.
    """
    with reading(str(path)), Image.open(path) as image:
        ending = ENDINGS.get(image.format or "")
        if ending is not None and ending not in tail(path):
            image.draft(image.mode, (1, 1))
            image.load()


def tail(path: Path, length: int = 64) -> bytes:
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - length))
        return handle.read()


def read_image(path: str | Path | io.BytesIO | EncodedImage, channels: int) -> torch.Tensor:
    """One image as ``(channels, H, W)`` floats in [0, 1] (see :func:`load_image`)."""
    source = io.BytesIO(path.data) if isinstance(path, EncodedImage) else path
    return load_image(source, channels).float().div_(255.0)


def read_images(
    files: list[Path | EncodedImage], channels: int, on_error: str = "fail"
) -> tuple[list[torch.Tensor], list[str], dict[str, str]]:
    """Every readable file as :func:`read_image` gives it, its path, and the others with why.

    Args:
        files: The image files, e.g. from :func:`image_files`.
        channels: 1 or 3.
        on_error: ``fail``: any unreadable file is a DataError naming the first (after all
            were tried, so it says how many there are); ``skip``: they are returned apart.
    """
    if on_error not in ("fail", "skip"):
        raise DataError(f"on_error must be 'fail' or 'skip'; received {on_error!r}.")
    images, ids, skipped = [], [], {}
    for file in files:
        try:
            images.append(read_image(file, channels))
        except ImageReadError as exc:
            skipped[image_name(file)] = exc.reason
            continue
        ids.append(image_name(file))
    if skipped and (on_error == "fail" or not images):
        file, reason = next(iter(skipped.items()))
        if not images:
            raise DataError(
                f"None of the {len(files)} image files can be read, e.g. '{file}' {reason}; "
                "give image files."
            )
        others = f" (and {len(skipped) - 1} more unreadable files)" if len(skipped) > 1 else ""
        raise DataError(
            f"Image '{file}' {reason}{others}; fix or remove it, or pass --on-error skip "
            "(on_error='skip' in Python) to predict the readable ones."
        )
    return images, ids, skipped


def to_array(image: Image.Image, channels: int) -> np.ndarray:
    """Pixels of any Pillow mode as uint8 ``(H, W)`` (1 channel) or ``(H, W, 3)``."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _high_depth_to_8bit(image)
    if image.mode == "P":
        # Palette images may hide transparency in the palette: expand before compositing.
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    mode = "L" if channels == 1 else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    return np.array(image, dtype=np.uint8)  # one writable copy


def _high_depth_to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float pixels -> 8-bit grayscale, scaled by the type's range.

    A 16-bit file spans 0..65535 whatever it holds; dividing by that range (not by the
    image's own maximum) keeps brightness comparable across files of one dataset.
    """
    array = np.asarray(image)
    if image.mode == "F":
        low, high = float(np.nanmin(array)), float(np.nanmax(array))
        scaled = (array - low) / max(high - low, 1e-12)
    elif image.mode.startswith("I;16") or array.max(initial=0) <= 65535:
        scaled = array.astype(np.float64) / 65535.0
    else:
        scaled = array.astype(np.float64) / float(np.iinfo(np.int32).max)
    return Image.fromarray(np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
