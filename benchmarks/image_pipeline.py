"""Image pipeline throughput: torchlab's image-folder loader versus a bare torchvision loop.

Writes a folder of JPEG photos-like images (noise + gradients, 2 classes), then measures
images/s of decode + ``standard`` augmentation (random resized crop, flip, rotation, colour
jitter, normalise) + batching through

- torchlab: the ``image-folder`` source's training dataset and collate, through
  :func:`torchlab.data.build_loader` (the loader training uses), and
- bare: a minimal ``Dataset`` that opens each file with Pillow, converts it to a uint8
  tensor and applies the same ``transforms.v2`` pipeline, in a plain ``DataLoader``,

with 0, 1 and 2 workers, alternating the two so both see the same machine load. Each
figure is the best of ``--repeats`` full passes; the ratio is torchlab / bare. Images per
CPU second (this process and its workers) are printed too: on a busy machine they do not
depend on what else runs, where wall-clock rates do.

    .venv/bin/python benchmarks/image_pipeline.py [--images 512] [--size 128]
        [--crop 96] [--batch-size 64] [--repeats 3] [--workers 0 1 2]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from torchlab.config import load_config
from torchlab.data import build_loader
from torchlab.data.base import SourceContext
from torchlab.data.vision.transforms import train_transform
from torchlab.registry import DATASETS


def write_images(root: Path, count: int, size: int) -> None:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    for i in range(count):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = ramp[None, :, None] * rng.random(3) + rng.normal(0, 30, (size, size, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)


class BareFolder(Dataset):
    """What a user would write by hand: open, convert, transform."""

    def __init__(self, files: list[Path], labels: list[int], transform: v2.Compose) -> None:
        self.files, self.labels, self.transform = files, labels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.files[index]) as image:
            pixels = v2.functional.pil_to_tensor(image.convert("RGB"))
        return self.transform(pixels), self.labels[index]


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (loader workers end with each pass)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def throughput(batches, count: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Images per wall-clock second and per CPU second over one full pass."""
    started, cpu, seen = time.perf_counter(), cpu_seconds(), 0
    for batch in batches:
        seen += len(batch[1]) if isinstance(batch, (list, tuple)) else len(batch)
    if seen != count:
        raise RuntimeError(f"a pass gave {seen} images instead of {count}")
    return count / (time.perf_counter() - started), count / max(cpu_seconds() - cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_images(root, args.images, args.size)
        source = {"name": "image-folder", "root": str(root), "size": args.crop}
        source.update(augment="standard", normalize="imagenet")
        config = load_config("digits", {"data.source": source})
        context = SourceContext(0.0, 0.0, True, 0, "categorical", config.model)
        bundle = DATASETS.build(config.data.source, "data.source", context)
        dataset = bundle.train
        mean, std = bundle.featurizer.mean, bundle.featurizer.std
        bare = BareFolder(
            list(dataset.files), dataset.labels, train_transform("standard", args.crop, mean, std)
        )
        print(f"{len(dataset)} JPEG images {args.size}x{args.size} -> standard augmentation at "
              f"{args.crop}x{args.crop}, batch {args.batch_size}, best of {args.repeats}")  # fmt: skip
        print(
            "| workers | torchlab images/s | bare images/s | ratio | torchlab images/CPU-s "
            "| bare images/CPU-s | CPU ratio |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for workers in args.workers:
            ours = build_loader(
                dataset, batch_size=args.batch_size, shuffle=True, seed=0,
                device=torch.device("cpu"), num_workers=workers, pin_memory=False,
                collate=bundle.collate,
            )  # fmt: skip
            plain = DataLoader(bare, batch_size=args.batch_size, shuffle=True, num_workers=workers)
            wall = {"ours": 0.0, "bare": 0.0}
            cpu = {"ours": 0.0, "bare": 0.0}
            for epoch in range(args.repeats):  # alternate, so both see the same load
                for name, batches in (("ours", ours.epoch(epoch)), ("bare", plain)):
                    per_wall, per_cpu = throughput(batches, len(dataset))
                    wall[name], cpu[name] = max(wall[name], per_wall), max(cpu[name], per_cpu)
            print(
                f"| {workers} | {wall['ours']:.0f} | {wall['bare']:.0f} | "
                f"{wall['ours'] / wall['bare']:.3f} | {cpu['ours']:.0f} | {cpu['bare']:.0f} | "
                f"{cpu['ours'] / cpu['bare']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
