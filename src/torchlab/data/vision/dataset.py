"""The map-style dataset behind every labelled-image source, its collate and bad-file handling.

Each item is decoded and transformed in ``__getitem__``, so DataLoader workers decode and
augment in parallel.

Bad files are decided once per file, at the first chance. Before the splits are cut,
:func:`usable_files` checks every file cheaply (:func:`~torchlab.data.vision.files.check_image`:
empty, not an image, cut short); with ``on_error: skip`` (the default) those files are left
out of every split, with a warning, and listed in ``data.json``, ``summary.json`` and the
report. A file that passes the check but fails to decode later (damage inside it) yields a
:class:`BadImage` marker instead of raising; :class:`ImageCollate` drops it from its batch (the
batch is one sample shorter, so no other sample is seen twice) and the batch carries it back
to the training process, where :class:`SkippedImages` warns about it once, lists it in the
run summary and counts it out of its split's size. With ``on_error: fail`` the first bad file
stops the run with one line naming it.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset, default_collate

from torchlab.data.base import Batch, DataBundle, DataSpec, InputNeeds, SourceContext
from torchlab.data.vision.files import ImageReadError, check_image, load_image
from torchlab.errors import DataError
from torchlab.notices import notice


@dataclass(frozen=True)
class BadImage:
    """An item that could not be read: its file and why."""

    path: str
    reason: str


class Item(NamedTuple):
    """One decoded, transformed sample: its class index, or its mask (H, W) of class indices
    for segmentation; ``mix`` marks training items MixUp/CutMix may blend."""

    image: torch.Tensor
    label: int | torch.Tensor
    mix: bool


class ImageDataset(Dataset):
    """Labelled images read on access: a list of files, or any ``index -> uint8 image`` reader.

    Args:
        files: The image files (None when ``reader`` gives the images, e.g. torchvision sets).
        labels: Class index of each item.
        transform: uint8 ``(C, H, W)`` -> model input.
        channels: 1 or 3, what every image is converted to.
        on_error: ``fail`` (an :class:`ImageReadError` naming the file) or ``skip`` (a
            :class:`BadImage`).
        train: Whether items may be mixed (MixUp/CutMix) by the collate.
        reader: Optional ``index -> uint8 (C, H, W)`` used instead of ``files``.
        draft: Decode JPEG files at a reduced scale keeping this many pixels a side (for
            consumers that only want small images; see ``load_image``).
    """

    def __init__(
        self,
        files: Sequence[Path] | None,
        labels: Sequence[int],
        transform: Callable[[torch.Tensor], torch.Tensor],
        *,
        channels: int,
        on_error: str = "fail",
        train: bool = False,
        reader: Callable[[int], torch.Tensor] | None = None,
        draft: int | None = None,
    ) -> None:
        self.files, self.labels = files, list(labels)
        self.transform, self.channels = transform, channels
        self.on_error, self.train, self.reader, self.draft = on_error, train, reader, draft

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, index: int) -> torch.Tensor:
        """The uint8 ``(C, H, W)`` image of item ``index``, untransformed."""
        if self.reader is not None:
            return self.reader(index)
        return load_image(self.files[index], self.channels, draft=self.draft)  # type: ignore[index]

    def __getitem__(self, index: int) -> Item | BadImage:
        try:
            image = self.read(index)
        except ImageReadError as exc:
            if self.files is None:
                raise
            if self.on_error == "fail":
                fix = "replace or remove it, or set data.source.on_error=skip to train without it"
                raise ImageReadError(exc.path, exc.reason, fix) from None
            return BadImage(str(self.files[index]), exc.reason)
        return Item(self.transform(image), self.labels[index], self.train)


# Skip logs by token, so a batch pickled back from a worker finds the training process's log.
_LOGS: weakref.WeakValueDictionary[str, SkipLog] = weakref.WeakValueDictionary()


def _log_for(token: str) -> SkipLog:
    log = _LOGS.get(token)
    return log if log is not None else SkipLog(token)


class SkipLog:
    """Files skipped as unreadable, in the order the training process met them, with why."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or uuid.uuid4().hex
        self.pending: list[str] = []  # met for the first time since the last epoch report
        self.all: dict[str, str] = {}  # file -> reason
        _LOGS[self.token] = self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_log_for, (self.token,))

    def add(self, bad: Sequence[BadImage]) -> None:
        for item in bad:
            if item.path not in self.all:
                self.all[item.path] = item.reason
                self.pending.append(item.path)

    def take(self) -> list[str]:
        taken, self.pending = self.pending, []
        return taken


@dataclass(slots=True)
class ImageBatch(Batch):
    """A batch that also names the files dropped from it (see :class:`SkipLog`)."""

    skipped: tuple[BadImage, ...] = ()
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
        bad = tuple(s for s in samples if isinstance(s, BadImage))
        if not good:
            raise DataError(
                f"Every image of a batch is unreadable ({', '.join(b.path for b in bad)}); run "
                "`torchlab validate-data CONFIG` to list all bad files and fix or remove them."
            )
        # default_collate stacks into shared memory inside a worker: no copy on the way back.
        inputs = default_collate([s.image for s in good])  # (B, C, H, W)
        labels = [s.label for s in good]
        target = (  # (B,) class indices, or (B, H, W) masks
            torch.stack(labels) if isinstance(labels[0], torch.Tensor) else torch.tensor(labels)
        )
        if self.mixer is not None and good[0].mix:
            inputs, target = self.mixer(inputs, target)  # target: (B, num_classes) soft labels
        return ImageBatch(inputs, target, skipped=bad, log=self.log)


class SkippedImages:
    """Warns at the end of each epoch of files found unreadable in it, and keeps the list.

    A training callback (the hooks of :class:`torchlab.training.callbacks.Callback`, written
    out because data does not import training). Its state, every file skipped while
    reading, is saved in checkpoints, so a resumed run reports the same list as an
    uninterrupted one.

    Args:
        log: Where batches record the files dropped from them.
        scanned: Files left out before the splits were cut (file -> reason).
        split_files: Each file-backed split's files, to count skipped ones out of its size.
    """

    def __init__(
        self, log: SkipLog, scanned: dict[str, str], split_files: dict[str, list[str]]
    ) -> None:
        self.log, self.scanned, self.split_files = log, scanned, split_files

    def on_fit_start(self, trainer: Any) -> None: ...
    def on_epoch_start(self, trainer: Any) -> None: ...
    def on_train_step_end(self, trainer: Any, step: Any) -> None: ...
    def on_train_epoch_end(self, trainer: Any) -> None: ...
    def on_fit_end(self, trainer: Any) -> None: ...

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        skipped = self.log.take()
        if skipped:
            notice(
                f"Epoch {logs.get('epoch', 0) + 1}: skipped {len(skipped)} image(s) that could "
                f"not be decoded ({listing({p: self.log.all[p] for p in skipped})}); "
                "summary.json and report.html list them (data.source.on_error=fail stops "
                "instead).",
            )

    def summary(self) -> dict[str, Any]:
        """What the run summary records: every file skipped, before or during training, and
        the split sizes without the ones dropped while reading."""
        skipped = {**self.scanned, **self.log.all}
        sizes = {
            name: len(files) - sum(f in self.log.all for f in files)
            for name, files in self.split_files.items()
        }
        return {
            "skipped_files": [{"file": f, "reason": r} for f, r in skipped.items()],
            **({"sizes": sizes} if sizes else {}),  # streamed sources keep the data's own
        }

    def state_dict(self) -> dict[str, Any]:
        return {"all": dict(self.log.all)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("all", {})
        self.log.all = saved if isinstance(saved, dict) else dict.fromkeys(saved, "unreadable")


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
    on_error: str = "skip"


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
    context: SourceContext,
    skipped: dict[str, str] | None = None,
) -> DataBundle:
    """Datasets, spec, featurizer, collate and summary of a labelled-image source.

    ``skipped`` holds the files :func:`usable_files` left out (file -> reason).
    """
    from torchlab.data.vision import transforms as T
    from torchlab.data.vision.images import ImageFeaturizer

    if context.target_kind != "categorical":
        raise DataError(
            f"Data source '{source}' holds class labels; use task classification, not a "
            f"task for {context.target_kind} targets."
        )
    if not splits["train"].labels:
        raise DataError(f"Data source '{source}' found no training images; check its path.")
    size, channels = options.size, options.channels
    fixed = T.fixed_statistics(options.normalize, context.needs, channels)
    mean, std = fixed or channel_stats(splits["train"], options, seed=context.seed)
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
    skipped = skipped or {}
    summary = {
        "source": source,
        "sizes": {k: len(v) for k, v in datasets.items()},
        "class_counts": {k: counts(v.labels, len(class_names)) for k, v in datasets.items()},
        "normalization": {"mean": list(mean), "std": list(std)},
        "augment": options.augment,
        **({"skipped_files": [{"file": f, "reason": r} for f, r in skipped.items()]}
           if skipped else {}),
    }  # fmt: skip
    split_files = {k: list(map(str, v.files)) for k, v in splits.items() if v.files is not None}
    return DataBundle(
        **datasets,
        spec=DataSpec((channels, size, size), "categorical", tuple(class_names)),
        featurizer=ImageFeaturizer(size=(size, size), channels=channels, mean=mean, std=std),
        summary=summary,
        collate=ImageCollate(mixer, log),
        callbacks=[SkippedImages(log, skipped, split_files)],
        default_baseline=default_baseline(context.needs),
    )


def default_baseline(needs: InputNeeds) -> dict[str, Any]:
    """A linear probe on the model's pretrained backbone when it loads pretrained weights,
    else logistic regression on small pixels (see :mod:`torchlab.baselines.images`)."""
    if needs.backbone is None:
        return {"name": "image-pixels"}
    return {
        "name": "image-features",
        "backbone": needs.backbone.name,
        "weights": needs.backbone.weights,
    }


def usable_files(
    files: list[Path], labels: list[int], on_error: str, where: Path
) -> tuple[list[Path], list[int], dict[str, str]]:
    """The files that pass :func:`~torchlab.data.vision.files.check_image`, their labels,
    and the others with why (skipped with a warning, or a DataError with ``on_error: fail``).
    """
    with ThreadPoolExecutor(max_workers=8) as pool:  # file-system bound: threads overlap it
        problems = list(pool.map(problem_of, files))
    skipped = {str(f): p for f, p in zip(files, problems, strict=True) if p is not None}
    if skipped and on_error == "fail":
        file, reason = next(iter(skipped.items()))
        others = f" (and {len(skipped) - 1} more files)" if len(skipped) > 1 else ""
        raise DataError(
            f"Image '{file}' {reason}{others}; fix or remove the bad files (`torchlab "
            "validate-data CONFIG` lists them all), or set data.source.on_error=skip to train "
            "without them."
        )
    if skipped:
        notice(
            f"Skipped {len(skipped)} of {len(files)} image files under '{where}' that cannot be "
            f"read ({listing(skipped)}). Training uses the other {len(files) - len(skipped)}; "
            "summary.json and report.html list the skipped ones (data.source.on_error=fail "
            "stops instead).",
        )
    keep = [i for i, p in enumerate(problems) if p is None]
    return [files[i] for i in keep], [labels[i] for i in keep], skipped


def listing(skipped: dict[str, str], limit: int = 5) -> str:
    """``file: reason; ...`` of the first ``limit`` skipped files, and how many more."""
    shown = "; ".join(f"{f}: {r}" for f, r in list(skipped.items())[:limit])
    return shown + (f"; and {len(skipped) - limit} more" if len(skipped) > limit else "")


def problem_of(file: Path) -> str | None:
    """Why ``file`` cannot be used as an image, or None."""
    try:
        check_image(file)
    except ImageReadError as exc:
        return exc.reason
    return None


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
