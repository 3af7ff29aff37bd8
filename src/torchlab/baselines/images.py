"""Image classification baselines: logistic regression on small pixels or on frozen features.

``image-pixels`` resizes each image to ``size`` x ``size`` and fits a logistic regression on
the standardised pixels. ``image-features`` is a linear probe: logistic regression on the
pooled features of the model's backbone exactly as its pretrained weights load (frozen,
before any fine-tuning), so the report shows what fine-tuning added over the features
alone. Image sources pick one of the two when the config names no baseline (features when
the model loads pretrained weights).

Both stay quick on a CPU: they fit on at most ``max_samples`` images of the training and
validation splits and score on at most as many test images (seeded samples), and JPEGs are
decoded at a reduced scale when only a small image is wanted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from torchlab.baselines import BaselineResult, scores
from torchlab.data.base import DataBundle, TargetKind
from torchlab.errors import ConfigError
from torchlab.registry import BASELINES

Embed = Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) -> (B, D)


@dataclass
class ImageBaseline:
    """Logistic regression on an embedding of each image (its pixels, or backbone features).

    Attributes:
        name: The baseline's name in the report.
        size: Side the images are resized to before ``embed``.
        normalized: Whether images are normalised as the model sees them (mean and std of
            the run's featurizer) or kept as pixels in [0, 1].
        embed: Builds the embedding for a bundle (called once, lazily).
    """

    name: str
    size: int
    max_samples: int
    C: float
    normalized: bool
    embed: Callable[[DataBundle], Embed]

    def evaluate(self, bundle: DataBundle) -> BaselineResult:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from torchlab.data.vision.dataset import ImageDataset

        splits = [bundle.split(name) for name in ("train", "val", "test")]
        if not all(isinstance(s, ImageDataset) for s in splits):
            return BaselineResult(
                None, note=f"The {self.name} baseline reads image files; this data has none."
            )
        if not len(bundle.test):
            return BaselineResult(None, note=f"The {self.name} baseline needs a test split.")
        embed = self.embed(bundle)
        x_fit, y_fit = self.features(bundle, embed, ("train", "val"))
        x_test, y_test = self.features(bundle, embed, ("test",))
        model = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=1000))
        model.fit(x_fit, y_fit)
        metrics = scores(bundle, y_test, model.predict(x_test))
        row = {
            "name": self.name,
            **{f"test/{k}": float(v) for k, v in metrics.items()},
            "fit_images": len(y_fit),
            "test_images": len(y_test),
        }
        return BaselineResult(row, [row])

    def features(
        self, bundle: DataBundle, embed: Embed, names: tuple[str, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and labels of up to ``max_samples`` images of the named splits."""
        from torch.utils.data import ConcatDataset, DataLoader, Subset

        from torchlab.data.loaders import default_workers
        from torchlab.data.vision import transforms as T
        from torchlab.data.vision.dataset import ImageDataset

        featurizer = bundle.featurizer
        size = min(self.size, featurizer.size[0])
        if self.normalized:
            transform = T.eval_transform(size, featurizer.mean, featurizer.std)
        else:
            transform = T.pixel_transform(size)
        parts = []
        for name in names:
            split = bundle.split(name)
            parts.append(ImageDataset(
                split.files, split.labels, transform, channels=featurizer.channels,
                on_error="skip", reader=split.reader, draft=size,
            ))  # fmt: skip
        dataset = ConcatDataset(parts)
        generator = torch.Generator().manual_seed(0)
        chosen = torch.randperm(len(dataset), generator=generator)[: self.max_samples].tolist()
        loader = DataLoader(
            Subset(dataset, sorted(chosen)),
            batch_size=64,
            num_workers=default_workers() if len(chosen) > 256 else 0,
            collate_fn=readable,
        )
        xs, ys = [], []
        with torch.inference_mode():
            for items in loader:
                if items:
                    xs.append(embed(torch.stack([i.image for i in items])).flatten(1).cpu())
                    ys += [i.label for i in items]
        return torch.cat(xs).numpy(), np.array(ys)


def readable(items: list[Any]) -> list[Any]:
    """A batch of the items that could be read (an unreadable file is left out)."""
    from torchlab.data.vision.dataset import Item

    return [item for item in items if isinstance(item, Item)]


def pixels(bundle: DataBundle) -> Embed:
    return lambda images: images


@BASELINES.register("image-pixels")
def image_pixels(
    kind: TargetKind, /, *, size: int = 32, max_samples: int = 2000, C: float = 1.0
) -> ImageBaseline:
    """Logistic regression on each image's pixels, resized to ``size`` x ``size``."""
    check(kind, "image-pixels", size, max_samples)
    return ImageBaseline("image-pixels", size, max_samples, C, normalized=False, embed=pixels)


@BASELINES.register("image-features")
def image_features(
    kind: TargetKind,
    /,
    *,
    backbone: str,
    weights: str = "imagenet",
    size: int = 128,
    max_samples: int = 2000,
    C: float = 1.0,
) -> ImageBaseline:
    """Logistic regression on the pooled features of ``backbone`` as loaded from ``weights``.

    Args:
        backbone: A torchvision backbone name (``mobilenet_v2``, ``resnet18``, ...).
        weights: ``imagenet`` or a weights file, as for the model's own ``weights``.
        size: Largest side the images are resized to (the model's input size when smaller).
        max_samples: Most images fitted on, and most test images scored.
        C: Inverse regularisation strength of the logistic regression.
    """
    from torchlab.models.vision.backbones import ARCHITECTURES

    check(kind, "image-features", size, max_samples)
    if backbone not in ARCHITECTURES:
        raise ConfigError(
            f"baseline image-features needs a torchvision backbone; received '{backbone}'. "
            f"Use one of {', '.join(ARCHITECTURES)}, or the image-pixels baseline."
        )

    def embed(bundle: DataBundle) -> Embed:
        return pooled_features(backbone, weights, bundle)

    return ImageBaseline("image-features", size, max_samples, C, normalized=True, embed=embed)


def pooled_features(backbone: str, weights: str, bundle: DataBundle) -> Embed:
    """``backbone`` with its pretrained weights and no classifier, frozen, as a function."""
    from torchlab.config import Component
    from torchlab.models import build_model
    from torchlab.models.vision.backbones import replace_module

    model = build_model(Component(name=backbone, weights=weights), bundle.spec, 2)
    replace_module(model.net, model.head, nn.Identity())  # the classifier's input: pooled
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = model.net.eval().to(device)
    return lambda images: net(images.to(device))


def check(kind: TargetKind, name: str, size: int, max_samples: int) -> None:
    if kind != "categorical":
        raise ConfigError(
            f"baseline {name} classifies images; it cannot fit {kind} targets. Remove the "
            "baseline or pick one for that task."
        )
    if size < 1 or max_samples < 2:
        raise ConfigError(
            f"baseline {name} needs size >= 1 and max_samples >= 2; received size={size}, "
            f"max_samples={max_samples}."
        )
