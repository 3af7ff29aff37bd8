"""Looking at image data before training: every bad file at once, and a grid of training samples.

``torchlab validate-data CONFIG`` decodes every image of a config's data source once and
lists each file that cannot be used, with the reason; ``torchlab show-batch CONFIG`` saves
a PNG grid of augmented training samples with their labels, exactly as the model sees
them (after MixUp/CutMix too), to check augmentation and labels by eye.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchlab.errors import DataError, RunError


@dataclass
class DataReport:
    """What :func:`validate_data` found: how many images it read and which failed."""

    source: str
    checked: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    @property
    def ok(self) -> bool:
        return not self.bad

    def __str__(self) -> str:
        head = f"{self.source}: {self.checked} images checked, {len(self.bad)} bad"
        return "\n".join([head, *(f"  {path}: {reason}" for path, reason in self.bad)])


def _config(config: Any, overrides: Any = ()) -> Any:
    from torchlab.config import RunConfig, load_config

    return config if isinstance(config, RunConfig) else load_config(config, overrides)


def _source(config: Any, **wanted: Any) -> Any:
    """The config's data source component with ``wanted`` settings where it accepts them."""
    from torchlab.registry import DATASETS

    component = config.data.source
    fields = DATASETS.get(component.name, "data.source.name").schema.model_fields
    params = {**component.params, **{k: v for k, v in wanted.items() if k in fields}}
    return type(component)(name=component.name, **params)


def build_bundle(config: Any, source: Any = None) -> Any:
    """The config's data bundle (with ``source`` instead of its own data source when given)."""
    from torchlab.data.base import SourceContext
    from torchlab.registry import DATASETS, TASKS

    target_kind = TASKS.get(config.task.name, "task.name").builder.target_kind
    split = config.data.split
    # Without the model's input needs (data cannot ask the model for them), ``normalize: auto``
    # means the data's own statistics: show_batch undoes either normalisation for display,
    # and validate_data fixes it to imagenet.
    context = SourceContext(split.val, split.test, split.stratify, config.seed, target_kind)
    return DATASETS.build(source or config.data.source, "data.source", context)


def validate_data(config: Any, overrides: Any = ()) -> DataReport:
    """Decode every image of a config's data source once; list each bad file and why.

    Args:
        config: A recipe name, YAML path or :class:`~torchlab.config.RunConfig`.
        overrides: Dotted overrides, as for ``torchlab.train``.
    """
    from torchlab.data.vision.dataset import ImageDataset
    from torchlab.data.vision.files import ImageReadError

    config = _config(config, overrides)
    # Skip (not stop at) bad files while the source is built, and spend no time on statistics.
    source = _source(config, on_error="skip", normalize="imagenet", augment="none")
    with warnings.catch_warnings():  # the files it skips are this report's subject
        warnings.simplefilter("ignore")
        bundle = build_bundle(config, source)
    report = DataReport(config.data.source.name)
    for skipped in bundle.summary.get("skipped_files", []):  # found by the check before splitting
        report.checked += 1
        report.bad.append((skipped["file"], skipped["reason"]))
    for name in ("train", "val", "test"):
        dataset = bundle.split(name)
        if not isinstance(dataset, ImageDataset):
            continue  # in-memory data was checked when the source loaded it
        for index in range(len(dataset)):
            report.checked += 1
            try:
                dataset.read(index)
            except DataError as exc:
                where = dataset.files[index] if dataset.files is not None else f"{name}[{index}]"
                report.bad.append(
                    (str(where), exc.reason if isinstance(exc, ImageReadError) else str(exc))
                )
    return report


def show_batch(
    config: Any,
    path: str | Path | None = None,
    *,
    overrides: Any = (),
    count: int = 16,
    overwrite: bool = False,
) -> Path:
    """Save a PNG grid of ``count`` augmented training samples with their labels.

    Args:
        config: A recipe name, YAML path or :class:`~torchlab.config.RunConfig`.
        path: The PNG to write (default: ``<config name>-batch.png``).
        overrides: Dotted overrides, as for ``torchlab.train``.
        count: How many samples to show.
        overwrite: Replace an existing file at ``path``.
    """
    from torchlab.data.base import TensorSplit
    from torchlab.data.loaders import collate_pairs

    config = _config(config, overrides)
    path = Path(path or f"{config.name}-batch.png")
    if path.exists() and not overwrite:
        raise RunError(f"'{path}' already exists; choose another --output or pass --overwrite.")
    bundle = build_bundle(config)
    train = bundle.train
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(train), generator=generator)[:count].tolist()
    if isinstance(train, TensorSplit):
        images, target = train.inputs[order], train.target[order]
    else:
        collate = bundle.collate or collate_pairs
        batch = collate([train[i] for i in order])
        images, target = batch.inputs, batch.target
    pixels = denormalize(images, bundle.featurizer)
    titles = [label_text(t, bundle.spec.class_names) for t in target]
    save_grid(pixels, titles, path)
    return path


def denormalize(images: torch.Tensor, featurizer: Any) -> torch.Tensor:
    """Model inputs back to displayable pixels in [0, 1]."""
    mean = torch.tensor(getattr(featurizer, "mean", [0.0]), dtype=torch.float32)
    std = torch.tensor(getattr(featurizer, "std", [1.0]), dtype=torch.float32)
    shape = (1, -1, 1, 1)
    return (images.float() * std.view(shape) + mean.view(shape)).clamp(0, 1)


def label_text(target: torch.Tensor, class_names: tuple[str, ...]) -> str:
    """A hard label's class name, or the two main classes of a mixed (soft) label."""
    names = class_names or tuple(str(i) for i in range(target.numel()))
    if target.ndim == 0:
        return names[int(target)]
    top = target.topk(min(2, target.numel()))
    parts = [
        f"{names[i]} {w:.2f}"
        for w, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        if w > 0.01
    ]
    return " + ".join(parts)


def save_grid(pixels: torch.Tensor, titles: list[str], path: Path) -> None:
    """A grid of images (N, C, H, W) in [0, 1] with a title above each, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(8, len(pixels))
    rows = -(-len(pixels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, pixels, titles, strict=False):
        array = image.permute(1, 2, 0).numpy()
        ax.imshow(array[..., 0] if array.shape[-1] == 1 else array, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
