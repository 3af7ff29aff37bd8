"""Token embeddings: learned, or initialised from GloVe / word2vec vectors and optionally frozen.

Also the one place that reads a text model's inputs: the padded-batch dict
``{"ids", "mask", "lengths"}`` of :mod:`torchlab.data.text`, or bare ids ``(B, T)`` (an
exported model's input) from which mask and lengths follow via the padding id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError
from torchlab.notices import notice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenBatch:
    """A text model's view of its inputs."""

    ids: Tensor  # (B, T) int64
    mask: Tensor  # (B, T) bool, true on real tokens
    lengths: Tensor  # (B,) int64


def token_batch(inputs: Any, pad_id: int) -> TokenBatch:
    """Reads the padded-batch dict, or bare ids ``(B, T)`` padded with ``pad_id``."""
    if isinstance(inputs, dict):
        return TokenBatch(inputs["ids"], inputs["mask"], inputs["lengths"])
    mask = inputs != pad_id
    return TokenBatch(inputs, mask, mask.sum(dim=1))


def require_tokens(spec: DataSpec, model: str) -> None:
    """Text models need token ids: a spec from a text source (its ``vocab_size`` is set)."""
    if spec.vocab_size <= 0:
        raise ConfigError(
            f"model.name={model} reads token ids, but the data source gives {spec.input_shape} "
            "inputs without a vocabulary; use a text source (bbc, text-csv, text-jsonl, text-folder)."
        )


class TokenEmbedding(nn.Module):
    """``nn.Embedding`` over the spec's vocabulary, optionally from pretrained word vectors.

    Args:
        spec: A text source's spec (vocabulary size, padding id, token strings).
        dim: Width of a token vector; taken from the file when ``vectors`` is given.
        vectors: A GloVe or word2vec text file; vocabulary tokens found in it start from
            its vectors, the others from small random ones.
        freeze: Keep the embedding fixed during training (see :meth:`unfreeze`).
    """

    def __init__(
        self, spec: DataSpec, dim: int, *, vectors: str | None = None, freeze: bool = False
    ) -> None:
        super().__init__()
        self.coverage: dict[str, Any] = {}
        weight = None
        if vectors is not None:
            weight, self.coverage = _pretrained_matrix(spec, vectors)
            dim = weight.shape[1]
        self.embedding = nn.Embedding(spec.vocab_size, dim, padding_idx=spec.pad_id)
        if weight is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(weight)
                self.embedding.weight[spec.pad_id].zero_()
        if freeze:
            self.freeze()

    @property
    def dim(self) -> int:
        return self.embedding.embedding_dim

    def freeze(self) -> None:
        self.embedding.weight.requires_grad_(False)

    def unfreeze(self) -> None:
        self.embedding.weight.requires_grad_(True)

    def forward(self, ids: Tensor) -> Tensor:
        return self.embedding(ids)  # (B, T) -> (B, T, D)


def _pretrained_matrix(spec: DataSpec, path: str) -> tuple[Tensor, dict[str, Any]]:
    """The vocabulary's rows from ``path`` and a coverage report of how many were found."""
    from torchlab.data.text.vectors import read_vectors

    if not spec.vocabulary:
        raise ConfigError(
            "Pretrained word vectors need the tokenizer's vocabulary, which only a tokenizer "
            "trained by the data source provides; remove model.vectors or train a tokenizer."
        )
    specials = {t for t in spec.vocabulary if t.startswith("[") and t.endswith("]")}
    words = [t for t in spec.vocabulary if t not in specials]
    found_words, matrix = read_vectors(path, keep=set(words) | {w.lower() for w in words})
    if not found_words:
        raise ConfigError(
            f"No vocabulary token appears in '{path}'; use vectors of the same language and "
            "case as the tokenizer (e.g. tokenizer.kind=word with lowercase=true for GloVe)."
        )
    index = {w: i for i, w in enumerate(found_words)}
    dim = matrix.shape[1]
    weight = torch.randn(spec.vocab_size, dim) * float(matrix.std())
    hits = 0
    for token_id, token in enumerate(spec.vocabulary):
        row = index.get(token, index.get(token.lower()))
        if row is not None and token not in specials:
            weight[token_id] = matrix[row]
            hits += 1
    coverage = {
        "file": str(path),
        "found": hits,
        "vocabulary": len(words),
        "fraction": round(hits / max(1, len(words)), 4),
    }
    log.info("word vectors cover %d of %d vocabulary tokens", hits, len(words))
    if coverage["fraction"] < 0.5:
        notice(
            f"Only {hits} of {len(words)} vocabulary tokens have a vector in '{path}'; the "
            "others start random. A word-level tokenizer usually matches word vectors best.",
        )
    return weight, coverage
