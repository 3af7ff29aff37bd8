"""Training images per second: WebDataset shards (``image-shards``) against an ImageFolder.

Generates ``--images`` JPEG images (64x64, 10 classes) as an ImageFolder, writes them as
shards with ``torchlab shard``, and trains one epoch of the same small CNN on each source
(same size, augmentation, batch size and worker count), each in a fresh process. Prints
images per second of training (``train_seconds`` of the run) and the ratio.

    .venv/bin/python benchmarks/streaming_images.py --images 50000
    .venv/bin/python benchmarks/streaming_images.py --images 2000      # quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def generate(folder: Path, images: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    for i in range(images):
        label = i % classes
        pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        pixels[:, :, label % 3] = pixels[:, :, label % 3] // (1 + label // 3)
        target = folder / f"class{label}"
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(target / f"{i:07d}.jpg", quality=90)


def train(source: dict, workers: int) -> tuple[float, int]:
    """Run one epoch in a fresh process; its training seconds and training images."""
    overrides = [
        f"data.source={json.dumps(source)}", "data.batch_size=64", f"data.num_workers={workers}",
        "trainer.max_epochs=1", "trainer.progress=none", "baseline=null",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "torchlab", "train", "digits", *overrides,
                   "model.channels=[16,32]", "--output-dir", out]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        (run,) = Path(out, "digits").iterdir()
        seconds = json.loads((run / "summary.json").read_text())["train_seconds"]
        images = json.loads((run / "data.json").read_text())["sizes"]["train"]
    return seconds, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-size", default="256MB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, shards = Path(tmp) / "folder", Path(tmp) / "shards"
        generate(folder, args.images)
        subprocess.run([sys.executable, "-m", "torchlab", "shard", str(folder), str(shards),
                        "--shard-size", args.shard_size], check=True, capture_output=True)  # fmt: skip
        common = {"size": 64, "augment": "light"}
        sides = {
            "image-folder": {"name": "image-folder", "root": str(folder), **common},
            "image-shards": {"name": "image-shards", "path": str(shards), **common},
        }
        rates = {}
        for name, source in sides.items():
            seconds, images = train(source, args.workers)
            rates[name] = images / seconds
            print(
                f"{name:13s} {images:8,} training images in {seconds:7.1f} s: {rates[name]:8,.0f} images/s"
            )
    print(f"shards / folder: {rates['image-shards'] / rates['image-folder']:.2f}x")


if __name__ == "__main__":
    main()
