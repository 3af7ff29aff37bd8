"""A Transformer encoder text classifier trained from scratch.

Token embeddings scaled by sqrt(d) plus sinusoidal positions ("Attention Is All You
Need", https://arxiv.org/abs/1706.03762, section 3.5), pre-norm encoder layers that ignore
padding through the key-padding mask, then a learned [CLS] vector or a masked mean.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError
from torchlab.models.text.embeddings import TokenEmbedding, require_tokens, token_batch
from torchlab.registry import MODELS


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """``(length, dim)``: sin on even features, cos on odd, wavelengths 2pi..10000*2pi."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (L, 1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class TransformerClassifier(nn.Module):
    """Embedding + positions -> N encoder layers with a padding mask -> pooling -> linear.

    Args:
        spec: A text source's spec (its ``input_shape[0]`` is the longest sequence).
        num_outputs: Width of the output layer.
        dim, heads, layers, feedforward, dropout: The encoder.
        pooling: ``cls`` (a learned vector prepended to every text) or ``mean`` over real tokens.
        vectors, freeze_embeddings: Pretrained word vectors (see :class:`TokenEmbedding`).
    """

    def __init__(
        self,
        spec: DataSpec,
        num_outputs: int,
        *,
        dim: int,
        heads: int,
        layers: int,
        feedforward: int,
        dropout: float,
        pooling: Literal["cls", "mean"],
        vectors: str | None,
        freeze_embeddings: bool,
    ) -> None:
        super().__init__()
        self.pad_id, self.pooling = spec.pad_id, pooling
        self.embed = TokenEmbedding(spec, dim, vectors=vectors, freeze=freeze_embeddings)
        dim = self.embed.dim
        if vectors is None:
            # N(0, 1/d) so that x sqrt(d) gives unit-scale inputs (as in fairseq): with
            # nn.Embedding's N(0, 1) the tokens start 8x larger than the positions and
            # Adam's steps of ~lr barely move them within a few hundred updates.
            nn.init.normal_(self.embed.embedding.weight, std=dim**-0.5)
            with torch.no_grad():
                self.embed.embedding.weight[spec.pad_id].zero_()
        if dim % heads:
            raise ConfigError(f"model.dim={dim} must be divisible by model.heads={heads}.")
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02) if pooling == "cls" else None
        longest = max(spec.input_shape[0] if spec.input_shape else 0, 512) + 1
        self.register_buffer("positions", sinusoidal_positions(longest, dim), persistent=False)
        layer = nn.TransformerEncoderLayer(
            dim, heads, feedforward, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        # Nested tensors would skip padded positions but break the contract of a fixed (B, T, D).
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_outputs)

    def features(self, inputs: Any) -> Tensor:
        """The pooled text representation ``(B, D)``."""
        tokens = token_batch(inputs, self.pad_id)
        ids, mask = tokens.ids, tokens.mask  # (B, T), (B, T) true on real tokens
        x = self.embed(ids) * math.sqrt(self.embed.dim)  # (B, T, D)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)  # (B, 1 + T, D)
            mask = torch.cat([mask.new_ones(len(mask), 1), mask], dim=1)
        if x.shape[1] > len(self.positions):
            raise ConfigError(
                f"Texts of {x.shape[1]} tokens exceed this model's {len(self.positions)} positions; "
                "lower data.source.max_length."
            )
        x = self.dropout(x + self.positions[: x.shape[1]])
        x = self.norm(self.encoder(x, src_key_padding_mask=~mask))  # (B, T', D)
        if self.cls is not None:
            return x[:, 0]
        weights = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        return (x * weights).sum(1) / weights.sum(1).clamp(min=1)

    def forward(self, inputs: Any) -> Tensor:
        return self.head(self.features(inputs))  # (B, num_outputs)


@MODELS.register("transformer")
def transformer(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    dim: int = 128,
    heads: int = 4,
    layers: int = 2,
    feedforward: int = 256,
    dropout: float = 0.1,
    pooling: Literal["cls", "mean"] = "mean",
    vectors: str | None = None,
    freeze_embeddings: bool = False,
) -> nn.Module:
    """A Transformer encoder classifier from scratch; see :class:`TransformerClassifier`."""
    require_tokens(spec, "transformer")
    return TransformerClassifier(
        spec, num_outputs, dim=dim, heads=heads, layers=layers, feedforward=feedforward,
        dropout=dropout, pooling=pooling, vectors=vectors, freeze_embeddings=freeze_embeddings,
    )  # fmt: skip
