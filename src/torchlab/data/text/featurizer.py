"""The ``text`` featurizer: raw texts -> padded token ids, the same way at train and predict time.

It holds the run's tokenizer. ``featurizer.json`` keeps its settings and the tokenizer
itself is written beside it as ``tokenizer.json`` (``save``/``load``), the file a user can
also open with the Hugging Face ``tokenizers`` library.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from torchlab.data.featurizers import FEATURIZERS
from torchlab.data.text.collate import pad, text_inputs
from torchlab.data.text.files import read_inputs
from torchlab.data.text.tokenization import TextTokenizer, Truncation
from torchlab.errors import DataError
from torchlab.trust import inside

TOKENIZER_FILE = "tokenizer.json"


@FEATURIZERS.register("text")
class TextFeaturizer:
    """Texts -> ``{"ids", "mask", "lengths"}`` through the run's tokenizer.

    Args:
        tokenizer: Trained on the training split, or a pretrained model's.
        max_length: Longest token sequence kept (special tokens included); longer texts
            are truncated.
        truncation: Which tokens of a longer text are kept: ``head``, ``tail`` or
            ``head_tail`` (see :meth:`TextTokenizer.encode`).
        text_column: The CSV column holding the texts.
        encoding: Encoding of the user's text files.
    """

    kind: ClassVar[str] = "text"

    def __init__(
        self,
        tokenizer: TextTokenizer,
        *,
        max_length: int,
        text_column: str = "text",
        encoding: str = "utf-8",
        truncation: Truncation = "head",
    ) -> None:
        self.tokenizer, self.max_length, self.truncation = tokenizer, max_length, truncation
        self.text_column, self.encoding = text_column, encoding
        self.skipped: dict[str, str] = {}  # inputs of the last load_inputs left out -> why
        self.texts: list[str] = []  # the texts of the last load_inputs, in order

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to ``max_length``."""
        return self.tokenizer.encode(
            list(texts), max_length=self.max_length, truncation=self.truncation
        )

    def texts_to_inputs(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Model inputs of in-memory texts (an HTTP request, the Python API)."""
        if not texts:
            raise DataError("No texts were given; send at least one non-empty text.")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"Text {i} (counted from 0) is empty; send non-empty texts.")
        ids, lengths = pad(self.encode(texts), self.tokenizer.pad_id)
        return text_inputs(ids, lengths)

    def load_inputs(
        self, paths: list[Path], on_error: str = "fail"
    ) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Inputs of a CSV file's text column or of ``.txt`` files, and an id per text.

        An empty text fails the call, or with ``on_error="skip"`` is left out and listed in
        :attr:`skipped`. :attr:`texts` holds the texts read, for the predictions' table.
        """
        texts, ids = read_inputs(paths, text_column=self.text_column, encoding=self.encoding)
        empty = {ids[i] for i, text in enumerate(texts) if not text.strip()}
        if empty and on_error != "skip":
            listed = ", ".join(sorted(empty)[:10]) + (" ..." if len(empty) > 10 else "")
            raise DataError(
                f"{len(empty)} of {len(texts)} texts are empty ({listed}); fill them in, or "
                "pass --on-error skip (on_error='skip') to predict the others."
            )
        self.skipped = dict.fromkeys(sorted(empty), "empty text")
        kept = [(i, t) for i, t in zip(ids, texts, strict=True) if i not in empty]
        self.texts = [t for _, t in kept]
        return self.texts_to_inputs(self.texts), [i for i, _ in kept]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tokenizer": TOKENIZER_FILE,
            "tokenizer_kind": self.tokenizer.kind,
            "vocab_size": self.tokenizer.vocab_size,
            "max_length": self.max_length,
            "truncation": self.truncation,
            "text_column": self.text_column,
            "encoding": self.encoding,
        }

    def save(self, directory: Path) -> None:
        """Writes the tokenizer beside ``featurizer.json``."""
        self.tokenizer.save(Path(directory) / TOKENIZER_FILE)

    @classmethod
    def load(cls, state: dict[str, Any], directory: Path) -> TextFeaturizer:
        """The featurizer of ``state`` with the tokenizer saved in ``directory``."""
        path = inside(directory, state.get("tokenizer", TOKENIZER_FILE), "featurizer.json")
        if not path.is_file():
            raise DataError(
                f"'{path}' is missing, and predicting on texts needs the run's tokenizer; "
                "copy it back from the run directory or train again."
            )
        return cls(
            TextTokenizer.load(path),
            max_length=state["max_length"],
            text_column=state.get("text_column", "text"),
            encoding=state.get("encoding", "utf-8"),
            truncation=state.get("truncation", "head"),
        )

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TextFeaturizer:
        raise DataError(
            "A text featurizer needs the folder holding its tokenizer.json; load it with "
            "torchlab.data.load_featurizer(state, run_dir)."
        )
