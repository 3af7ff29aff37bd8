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
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from torchlab.errors import DataError

ORIENTATION = 0x0112  # the EXIF tag saying how to rotate the stored pixels for display
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """The image files named, with folders expanded to the images inside them (sorted)."""
    paths = list(paths)
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"Input '{path}' does not exist; check the path.")
    if not files:
        raise DataError(
            f"No image files found in {', '.join(map(str, paths))}; give .png or .jpg files."
        )
    return files


def load_image(path: str | Path | io.BytesIO, channels: int) -> torch.Tensor:
    """One image as ``(channels, H, W)`` uint8, upright, with alpha composited on white.

    Args:
        path: A file path or an in-memory encoded image.
        channels: 1 (grayscale) or 3 (RGB).

    Raises:
        DataError: The file is missing, not an image, truncated, or over Pillow's
            decompression-bomb pixel limit.
    """
    if channels not in (1, 3):
        raise DataError(f"Images can be read with 1 or 3 channels, not {channels}.")
    name = path if isinstance(path, (str, Path)) else "<in-memory image>"
    try:
        with warnings.catch_warnings():
            # Over MAX_IMAGE_PIXELS Pillow only warns (an error at twice the limit): both stop here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.getexif().get(ORIENTATION, 1) != 1:  # else skip exif_transpose's copy
                    image = ImageOps.exif_transpose(image)
                array = to_array(image, channels)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise DataError(
            f"Image '{name}' is too large to decode safely ({exc}); shrink it or remove it."
        ) from None
    except FileNotFoundError:
        raise DataError(f"Image '{name}' does not exist; check the path.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(
            f"Image '{name}' cannot be read ({exc}); replace or remove the file."
        ) from None
    tensor = torch.from_numpy(array)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)  # (C, H, W)


def read_image(path: str | Path | io.BytesIO, channels: int) -> torch.Tensor:
    """One image as ``(channels, H, W)`` floats in [0, 1] (see :func:`load_image`)."""
    return load_image(path, channels).float().div_(255.0)


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
    image = image.convert("L" if channels == 1 else "RGB")
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
