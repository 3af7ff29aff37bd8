"""The map-style dataset behind every labelled-image source, its collate and bad-file handling.

Each item is decoded and transformed in ``__getitem__``, so DataLoader workers decode and
augment in parallel. With ``on_error: skip`` an unreadable file yields a :class:`BadImage`
marker instead of raising; :class:`ImageCollate` drops it from its batch (the batch is one
sample shorter, so no other sample is seen twice) and the batch carries the file's path back
to the training process, where :class:`SkippedImages` lists them at the end of each epoch and
in the run summary.
"""

from __future__ import annotations

import uuid
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset, default_collate

from torchlab.data.base import Batch, DataBundle, DataSpec
from torchlab.data.vision.files import load_image
from torchlab.errors import DataError


@dataclass(frozen=True)
class BadImage:
    """An item that could not be read: its file and why."""

    path: str
    reason: str


class Item(NamedTuple):
    """One decoded, transformed sample; ``mix`` marks training items MixUp/CutMix may blend."""

    image: torch.Tensor
    label: int
    mix: bool


class ImageDataset(Dataset):
    """Labelled images read on access: a list of files, or any ``index -> uint8 image`` reader.

    Args:
        files: The image files (None when ``reader`` gives the images, e.g. torchvision sets).
        labels: Class index of each item.
        transform: uint8 ``(C, H, W)`` -> model input.
        channels: 1 or 3, what every image is converted to.
        on_error: ``raise`` (a DataError naming the file) or ``skip`` (a :class:`BadImage`).
        train: Whether items may be mixed (MixUp/CutMix) by the collate.
        reader: Optional ``index -> uint8 (C, H, W)`` used instead of ``files``.
    """

    def __init__(
        self,
        files: Sequence[Path] | None,
        labels: Sequence[int],
        transform: Callable[[torch.Tensor], torch.Tensor],
        *,
        channels: int,
        on_error: str = "raise",
        train: bool = False,
        reader: Callable[[int], torch.Tensor] | None = None,
    ) -> None:
        self.files, self.labels = files, list(labels)
        self.transform, self.channels = transform, channels
        self.on_error, self.train, self.reader = on_error, train, reader

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, index: int) -> torch.Tensor:
        """The uint8 ``(C, H, W)`` image of item ``index``, untransformed."""
        if self.reader is not None:
            return self.reader(index)
        return load_image(self.files[index], self.channels)  # type: ignore[index]

    def __getitem__(self, index: int) -> Item | BadImage:
        try:
            image = self.read(index)
        except DataError as exc:
            if self.on_error == "raise" or self.files is None:
                raise
            return BadImage(str(self.files[index]), str(exc))
        return Item(self.transform(image), self.labels[index], self.train)


# Skip logs by token, so a batch pickled back from a worker finds the training process's log.
_LOGS: weakref.WeakValueDictionary[str, SkipLog] = weakref.WeakValueDictionary()


def _log_for(token: str) -> SkipLog:
    log = _LOGS.get(token)
    return log if log is not None else SkipLog(token)


class SkipLog:
    """Files skipped as unreadable, in the order the training process met them."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or uuid.uuid4().hex
        self.pending: list[str] = []  # since the last epoch report
        self.all: list[str] = []
        _LOGS[self.token] = self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_log_for, (self.token,))

    def add(self, paths: Sequence[str]) -> None:
        self.pending += paths
        self.all += [p for p in paths if p not in self.all]

    def take(self) -> list[str]:
        taken, self.pending = self.pending, []
        return taken


@dataclass(slots=True)
class ImageBatch(Batch):
    """A batch that also names the files dropped from it (see :class:`SkipLog`)."""

    skipped: tuple[str, ...] = ()
    log: SkipLog | None = None

    def to(
        self,
        device: torch.device,
        non_blocking: bool = False,
        memory_format: torch.memory_format | None = None,
    ) -> Batch:
        # Every batch is moved exactly once, in the training process: record the skips there.
        if self.skipped and self.log is not None:
            self.log.add(self.skipped)
        return Batch.to(self, device, non_blocking, memory_format)


class ImageCollate:
    """Stacks items into a batch, drops unreadable ones and mixes training batches."""

    def __init__(self, mixer: Callable[..., Any] | None = None, log: SkipLog | None = None) -> None:
        self.mixer, self.log = mixer, log or SkipLog()

    def __call__(self, samples: list[Item | BadImage]) -> ImageBatch:
        good = [s for s in samples if isinstance(s, Item)]
        bad = tuple(s.path for s in samples if isinstance(s, BadImage))
        if not good:
            raise DataError(
                f"Every image of a batch is unreadable ({', '.join(bad)}); run "
                "`torchlab validate-data CONFIG` to list all bad files and fix or remove them."
            )
        # default_collate stacks into shared memory inside a worker: no copy on the way back.
        inputs = default_collate([s.image for s in good])  # (B, C, H, W)
        target = torch.tensor([s.label for s in good], dtype=torch.long)  # (B,)
        if self.mixer is not None and good[0].mix:
            inputs, target = self.mixer(inputs, target)  # target: (B, num_classes) soft labels
        return ImageBatch(inputs, target, skipped=bad, log=self.log)


class SkippedImages:
    """Warns at the end of each epoch which unreadable files were skipped, and keeps the list.

    A training callback (the hooks of :class:`torchlab.training.callbacks.Callback`, written
    out because data does not import training). Its state, every file skipped so far, is
    saved in checkpoints, so a resumed run reports the same list as an uninterrupted one.
    """

    def __init__(self, log: SkipLog) -> None:
        self.log = log

    def on_fit_start(self, trainer: Any) -> None: ...
    def on_epoch_start(self, trainer: Any) -> None: ...
    def on_train_step_end(self, trainer: Any, step: Any) -> None: ...
    def on_train_epoch_end(self, trainer: Any) -> None: ...
    def on_fit_end(self, trainer: Any) -> None: ...

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        skipped = self.log.take()
        if skipped:
            shown = ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else "")
            warnings.warn(
                f"Epoch {logs.get('epoch')}: skipped {len(skipped)} unreadable image(s) "
                f"(data.source.on_error=skip): {shown}. Run `torchlab validate-data` to list "
                "every bad file.",
                stacklevel=2,
            )

    def summary(self) -> dict[str, Any]:
        """What the run summary records: every file skipped in training and testing."""
        return {"skipped_files": list(self.log.all)}

    def state_dict(self) -> dict[str, Any]:
        return {"all": list(self.log.all)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log.all = list(state.get("all", []))


@dataclass(frozen=True)
class ImageOptions:
    """The settings every labelled-image source shares (its builder's keyword arguments)."""

    size: int = 224
    channels: int = 3
    augment: str = "standard"
    hflip: bool = True
    normalize: str = "auto"
    mixup: float = 0.0
    cutmix: float = 0.0
    on_error: str = "raise"


@dataclass
class SplitItems:
    """One split before decoding: files (or a reader) and class indices."""

    labels: list[int]
    files: list[Path] | None = None
    reader: Callable[[int], torch.Tensor] | None = None


def image_bundle(
    source: str,
    splits: dict[str, SplitItems],
    class_names: Sequence[str],
    options: ImageOptions,
    context: Any,
) -> DataBundle:
    """Datasets, spec, featurizer, collate and summary of a labelled-image source."""
    from torchlab.data.images import ImageFeaturizer
    from torchlab.data.vision import transforms as T

    if context.target_kind != "categorical":
        raise DataError(
            f"Data source '{source}' holds class labels; use task classification, not a "
            f"task for {context.target_kind} targets."
        )
    if not splits["train"].labels:
        raise DataError(f"Data source '{source}' found no training images; check its path.")
    size, channels = options.size, options.channels
    if T.wants_imagenet(options.normalize, context):
        mean, std = T.imagenet_stats(channels)
    else:
        mean, std = channel_stats(splits["train"], options, seed=context.seed)
    mixer = T.batch_mixer(options.mixup, options.cutmix, len(class_names))
    common = {"channels": channels, "on_error": options.on_error}
    train_tf = T.train_transform(options.augment, size, mean, std, options.hflip)
    eval_tf = T.eval_transform(size, mean, std)
    datasets = {
        name: ImageDataset(
            items.files,
            items.labels,
            train_tf if name == "train" else eval_tf,
            train=name == "train",
            reader=items.reader,
            **common,
        )
        for name, items in splits.items()
    }
    log = SkipLog()
    summary = {
        "source": source,
        "sizes": {k: len(v) for k, v in datasets.items()},
        "class_counts": {k: counts(v.labels, len(class_names)) for k, v in datasets.items()},
        "normalization": {"mean": list(mean), "std": list(std)},
        "augment": options.augment,
    }
    return DataBundle(
        **datasets,
        spec=DataSpec((channels, size, size), "categorical", tuple(class_names)),
        featurizer=ImageFeaturizer(size=(size, size), channels=channels, mean=mean, std=std),
        summary=summary,
        collate=ImageCollate(mixer, log),
        callbacks=[SkippedImages(log)],
    )


def counts(labels: Sequence[int], num_classes: int) -> list[int]:
    return torch.bincount(torch.tensor(labels, dtype=torch.long), minlength=num_classes).tolist()


def channel_stats(
    items: SplitItems, options: ImageOptions, seed: int, limit: int = 256
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of up to ``limit`` training images (seeded sample), resized."""
    from torchlab.data.vision.transforms import pixel_transform

    dataset = ImageDataset(
        items.files, items.labels, pixel_transform(options.size), channels=options.channels,
        on_error=options.on_error, reader=items.reader,
    )  # fmt: skip
    n = len(dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]
    pixels = [s.image for s in map(dataset.__getitem__, order.tolist()) if isinstance(s, Item)]
    if not pixels:
        raise DataError("No training image could be read to compute normalisation statistics.")
    stacked = torch.stack(pixels).transpose(0, 1).flatten(1)  # (C, N * H * W)
    return stacked.mean(1).tolist(), stacked.std(1).clamp(min=1e-6).tolist()
