"""Skip-gram word vectors (word2vec) trained with negative sampling.

Mikolov et al. 2013, "Distributed Representations of Words and Phrases and their
Compositionality" (https://arxiv.org/abs/1310.4546). Each word has an input vector (the
word vector kept afterwards) and an output vector (used only to score context words).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError
from torchlab.registry import MODELS


class SkipGramNS(nn.Module):
    """Scores (word, context) and (word, noise) pairs: inputs (B, 2 + K) -> logits (B, 1 + K)."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.input = nn.Embedding(vocab_size, dim)
        self.output = nn.Embedding(vocab_size, dim)
        # As the reference C code: small uniform input vectors, zero output vectors.
        nn.init.uniform_(self.input.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.output.weight)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        word = self.input(pairs[:, 0])  # (B, D)
        others = self.output(pairs[:, 1:])  # (B, 1 + K, D)
        return torch.einsum("bd,bkd->bk", word, others)  # (B, 1 + K)

    def vectors(self) -> torch.Tensor:
        """The word vectors (V, D)."""
        return self.input.weight.detach()

    def neighbours(
        self, ids: list[int], k: int = 8, exclude: set[int] = frozenset()
    ) -> list[list[tuple[int, float]]]:  # type: ignore[assignment]
        """The ``k`` most cosine-similar words of each id, as (id, similarity)."""
        unit = F.normalize(self.vectors().float(), dim=-1)  # (V, D)
        sims = unit[ids] @ unit.T  # (N, V)
        sims[torch.arange(len(ids)), ids] = -2.0  # not the word itself
        for other in exclude:
            sims[:, other] = -2.0
        values, index = sims.topk(k, dim=-1)
        return [
            list(zip(i.tolist(), v.tolist(), strict=True))
            for i, v in zip(index, values, strict=True)
        ]


@MODELS.register("word2vec")
def word2vec(spec: DataSpec, num_outputs: int, /, *, dim: int = 100) -> nn.Module:
    """Skip-gram with negative sampling over the vocabulary of a ``skipgram`` source.

    Args:
        dim: Width of the word vectors.
    """
    if spec.vocab_size < 2 or len(spec.input_shape) != 1 or spec.input_shape[0] < 3:
        raise ConfigError(
            "model.name=word2vec needs (word, context, noise...) id rows from the skipgram "
            "source (data.source.name: skipgram)."
        )
    if dim < 1:
        raise ConfigError(f"model.dim must be at least 1; received dim={dim}.")
    return SkipGramNS(spec.vocab_size, dim)
