"""LSTM and GRU text classifiers over packed sequences, with last, mean or max pooling.

Packing (``pack_padded_sequence``) makes the recurrence stop at each text's own end, so a
padded batch gives exactly what each text alone would: padding never enters the state.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torchlab.data.base import DataSpec
from torchlab.models.text.embeddings import TokenEmbedding, require_tokens, token_batch
from torchlab.registry import MODELS, variant

Pooling = Literal["last", "mean", "max"]


class RNNClassifier(nn.Module):
    """Embedding -> (bidirectional) LSTM or GRU over packed sequences -> pooling -> linear.

    Args:
        spec: A text source's spec.
        num_outputs: Width of the output layer.
        cell: ``lstm`` or ``gru``.
        embedding_dim, hidden, layers, bidirectional, dropout: The recurrent network.
        pooling: ``last`` (final states of both directions), ``mean`` or ``max`` over
            the real (unpadded) time steps.
        vectors, freeze_embeddings: Pretrained word vectors (see :class:`TokenEmbedding`).
    """

    def __init__(
        self,
        spec: DataSpec,
        num_outputs: int,
        *,
        cell: Literal["lstm", "gru"],
        embedding_dim: int,
        hidden: int,
        layers: int,
        bidirectional: bool,
        pooling: Pooling,
        dropout: float,
        vectors: str | None,
        freeze_embeddings: bool,
    ) -> None:
        super().__init__()
        self.pad_id, self.pooling = spec.pad_id, pooling
        self.embed = TokenEmbedding(spec, embedding_dim, vectors=vectors, freeze=freeze_embeddings)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(
            self.embed.dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_outputs)

    def features(self, inputs: Any) -> Tensor:
        """The pooled text representation ``(B, directions * hidden)``."""
        tokens = token_batch(inputs, self.pad_id)
        x = self.dropout(self.embed(tokens.ids))  # (B, T, E)
        lengths = tokens.lengths.clamp(min=1).cpu()  # pack_padded_sequence wants CPU lengths
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        if self.pooling == "last":
            h = state[0] if isinstance(state, tuple) else state  # (layers * dirs, B, H)
            if self.rnn.bidirectional:  # the top layer's forward and backward final states
                return torch.cat([h[-2], h[-1]], dim=-1)  # (B, 2H)
            return h[-1]  # (B, H)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, dH)
        mask = tokens.mask.unsqueeze(-1)  # (B, T, 1)
        if self.pooling == "mean":
            return (out * mask).sum(1) / mask.sum(1).clamp(min=1)
        return out.masked_fill(~mask, float("-inf")).amax(1)

    def forward(self, inputs: Any) -> Tensor:
        return self.head(self.dropout(self.features(inputs)))  # (B, num_outputs)


def rnn_classifier(
    cell: Literal["lstm", "gru"],
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    embedding_dim: int = 128,
    hidden: int = 128,
    layers: int = 1,
    bidirectional: bool = True,
    pooling: Pooling = "max",
    dropout: float = 0.3,
    vectors: str | None = None,
    freeze_embeddings: bool = False,
) -> nn.Module:
    """A (bidirectional) LSTM or GRU text classifier; see :class:`RNNClassifier`."""
    require_tokens(spec, cell)
    return RNNClassifier(
        spec,
        num_outputs,
        cell=cell,
        embedding_dim=embedding_dim,
        hidden=hidden,
        layers=layers,
        bidirectional=bidirectional,
        pooling=pooling,
        dropout=dropout,
        vectors=vectors,
        freeze_embeddings=freeze_embeddings,
    )


MODELS.register("lstm")(variant(rnn_classifier, "lstm"))
MODELS.register("gru")(variant(rnn_classifier, "gru"))
