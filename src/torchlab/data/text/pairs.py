"""Text pairs for sequence-to-sequence models, and the featurizer of text-generation runs.

A CSV with ``source`` and ``target`` columns becomes padded token ids: inputs ``(N, S)``
source ids and targets ``(N, T)`` = ``[BOS] target [EOS]`` (the task feeds ``target[:, :-1]``
to the decoder and predicts ``target[:, 1:]``). One tokenizer, trained on the training
split's sources and targets together, serves both sides, so the DataSpec's ``class_names``
is the vocabulary (ids in order) and the models share one embedding.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from torchlab.data.base import DataBundle, DataSpec, SourceContext, TensorSplit
from torchlab.data.featurizers import FEATURIZERS
from torchlab.data.splits import split_indices
from torchlab.data.text.collate import pad
from torchlab.data.text.files import read_csv
from torchlab.data.text.tokenization import TextTokenizer
from torchlab.errors import DataError
from torchlab.registry import DATASETS
from torchlab.trust import inside

Tokenization = Literal["char", "word", "wordpiece", "bpe"]


def vocabulary(tokenizer: TextTokenizer) -> tuple[str, ...]:
    """Every token string in id order (the class names of next-token prediction)."""
    return tuple(tokenizer.id_to_token(i) or f"[{i}]" for i in range(tokenizer.vocab_size))


def vocab_spec(tokenizer: TextTokenizer, length: int) -> DataSpec:
    """The DataSpec of token-id inputs ``(length,)`` whose outputs are tokens: the classes
    of next-token prediction are the vocabulary itself."""
    tokens = vocabulary(tokenizer)
    return DataSpec(
        (length,), "categorical", class_names=tokens, vocab_size=tokenizer.vocab_size,
        pad_id=tokenizer.pad_id, vocabulary=tokens,
    )  # fmt: skip


@FEATURIZERS.register("text-generation")
class TextGenerationFeaturizer:
    """Texts -> token ids for prediction; generated ids -> texts.

    Attributes:
        tokenizer: The run's tokenizer (saved as ``tokenizer.json`` in the run directory).
        column: The CSV column read at predict time (``source`` or ``prompt``).
        add_bos: Start every input with [BOS] (language-model prompts).
    """

    # The model input is token ids (B, T): the "text" input kind of exporters.inputs. The
    # registry name, written into featurizer.json, is "text-generation".
    kind: ClassVar[str] = "text"
    name: ClassVar[str] = "text-generation"

    def __init__(self, tokenizer: TextTokenizer, column: str, add_bos: bool = False) -> None:
        self.tokenizer, self.column, self.add_bos = tokenizer, column, add_bos

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Ids ``(B, T)`` padded with -1 on the right (never a real id, whatever the vocabulary)."""
        add_bos = self.add_bos and self.tokenizer.bos_id is not None
        ids, _ = pad(self.tokenizer.encode(list(texts), add_bos=add_bos), -1)
        return ids

    def load_inputs(self, paths: list[Path]) -> tuple[torch.Tensor, list[str]]:
        """Texts from CSV files (column ``self.column``) or ``.txt`` files (one per line)."""
        if not paths:
            raise DataError(f"No input files were given; name a CSV with a '{self.column}' column.")
        texts, ids = [], []
        for path in paths:
            if path.suffix.lower() == ".txt":
                lines = [t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
                texts += lines
                ids += [f"{path.name}:{i}" for i in range(len(lines))]
            else:
                rows, _ = read_csv(path, text_column=self.column, label_column=None)
                texts += rows
                ids += [f"{path.name}:{i}" for i in range(len(rows))]
        if not texts:
            raise DataError(f"The input files hold no text; add rows under '{self.column}'.")
        return self.encode(texts), ids

    def decode(self, ids: Any) -> list[str]:
        """Texts of generated ids ``(B, L)``, cut at the first [EOS]."""
        eos = self.tokenizer.eos_id
        out = []
        for row in torch.as_tensor(ids).tolist():
            row = [i for i in row if i >= 0]
            if eos is not None and eos in row:
                row = row[: row.index(eos)]
            out.append(self.tokenizer.decode(row))
        return out

    def decode_predictions(self, named: dict[str, Any]) -> dict[str, Any]:
        """``torchlab predict`` columns: generated ids become their text."""
        return {name: self.decode(v) if name == "output" else v for name, v in named.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.name, "column": self.column, "add_bos": self.add_bos}

    def save(self, directory: Path) -> None:
        self.tokenizer.save(Path(directory) / "tokenizer.json")

    @classmethod
    def load(cls, state: dict[str, Any], directory: Path) -> TextGenerationFeaturizer:
        tokenizer = TextTokenizer.load(inside(directory, "tokenizer.json", "featurizer.json"))
        return cls(tokenizer, state["column"], state.get("add_bos", False))

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TextGenerationFeaturizer:
        raise DataError(
            "A text-generation featurizer needs its run directory's tokenizer.json; "
            "load it with the run (torchlab predict RUN_DIR ...)."
        )

    def round_trip(self) -> TextGenerationFeaturizer:
        """A copy saved and loaded again (what a predicting process sees)."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save(Path(tmp))
            return self.load(self.to_dict(), Path(tmp))


def exact_match(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Baseline score of text outputs, named like the seq2seq task's metric."""
    return {"exact_match": float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))}


def encode_pairs(
    tokenizer: TextTokenizer, sources: Sequence[str], targets: Sequence[str], max_length: int
) -> TensorSplit:
    """Padded source ids (N, S) and ``[BOS] target [EOS]`` ids (N, T), both <= max_length."""
    if not sources:
        empty = torch.zeros(0, 1, dtype=torch.long)
        return TensorSplit(empty, empty)
    src, _ = pad(tokenizer.encode(list(sources), max_length=max_length), tokenizer.pad_id)
    tgt_ids = tokenizer.encode(list(targets), max_length=max_length, add_bos=True, add_eos=True)
    tgt, _ = pad(tgt_ids, tokenizer.pad_id)
    return TensorSplit(src, tgt)


def pairs_bundle(
    sources: list[str],
    targets: list[str],
    parts: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    tokenization: Tokenization,
    vocab_size: int,
    max_length: int,
    lowercase: bool,
    summary: dict[str, Any],
) -> DataBundle:
    """Train a tokenizer on the training pairs and encode every split."""
    train, val, test = parts
    train_texts = [sources[i] for i in train] + [targets[i] for i in train]
    tokenizer = TextTokenizer.train(
        train_texts, kind=tokenization, vocab_size=vocab_size, min_frequency=1, lowercase=lowercase
    )
    splits = [
        encode_pairs(tokenizer, [sources[i] for i in idx], [targets[i] for i in idx], max_length)
        for idx in parts
    ]
    width = max(s.inputs.shape[1] for s in splits)
    texts = {
        name: [sources[i] for i in idx]
        for name, idx in zip(("train", "val", "test"), parts, strict=True)
    }
    gold = {
        name: [targets[i] for i in idx]
        for name, idx in zip(("train", "val", "test"), parts, strict=True)
    }
    return DataBundle(
        *splits,
        spec=vocab_spec(tokenizer, width),
        featurizer=TextGenerationFeaturizer(tokenizer, "source"),
        summary={
            "pairs": {"train": len(train), "val": len(val), "test": len(test)},
            "vocab_size": tokenizer.vocab_size,
            "tokenization": tokenization,
            **summary,
        },
        baseline_inputs=texts,
        baseline_targets=gold,
        baseline_metrics=exact_match,
    )


@DATASETS.register("text-pairs")
def text_pairs(
    context: SourceContext,
    /,
    *,
    path: str,
    source_column: str = "source",
    target_column: str = "target",
    tokenization: Tokenization = "word",
    vocab_size: int = 8000,
    max_length: int = 128,
    lowercase: bool = True,
    encoding: str = "utf-8",
) -> DataBundle:
    """Pairs of texts from a CSV file (``source,target`` columns) for seq2seq models.

    Args:
        path: The CSV file.
        source_column, target_column: Column names of the input and output texts.
        tokenization: Tokenizer kind trained on the training pairs (char, word, wordpiece, bpe).
        vocab_size: Largest vocabulary (special tokens included).
        max_length: Tokens kept per text (targets count [BOS] and [EOS]).
        lowercase: Lower-case texts before tokenizing.
        encoding: Text encoding of the file.
    """
    file = Path(path).expanduser()
    sources, targets = read_csv(
        file, text_column=source_column, label_column=target_column, encoding=encoding
    )
    if len(sources) < 3:
        raise DataError(f"'{file}' holds {len(sources)} pairs; give at least 3 to split.")
    parts = split_indices(
        len(sources), val=context.val, test=context.test, seed=context.seed, fold=context.fold
    )
    return pairs_bundle(
        sources, targets, parts, tokenization=tokenization, vocab_size=vocab_size,
        max_length=max_length, lowercase=lowercase, summary={"file": str(file)},
    )  # fmt: skip
