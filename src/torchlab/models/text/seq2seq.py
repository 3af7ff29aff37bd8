"""Sequence-to-sequence models: a GRU encoder-decoder with attention and a Transformer.

Both read the batch dict built by the text-pair sources (``torchlab.data.text.pairs``):
``{"ids": (B, S) source ids, "lengths": (B,), "decoder_ids": (B, T) target ids shifted right
(starting with [BOS])}``. ``forward`` returns teacher-forced logits ``(B, T, V)``; ``decode``
returns generated ids ``(B, L)`` (greedy, or beam search with ``beam_width > 1``), padded
after [EOS]. Source and target share one vocabulary: the DataSpec's ``class_names``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError
from torchlab.models.text.decoding import decode
from torchlab.registry import MODELS

AttentionKind = Literal["bahdanau", "dot", "general"]
Decay = Literal["none", "linear", "exponential", "inverse_sigmoid"]
# State of a decoder between steps; ``reorder`` picks rows of it (beam search).
State = Any


def special_ids(spec: DataSpec, model: str) -> tuple[int, int, int]:
    """The [PAD], [BOS] and [EOS] ids of a token vocabulary carried in ``spec.class_names``."""
    vocab = spec.class_names
    missing = [t for t in ("[PAD]", "[BOS]", "[EOS]") if t not in vocab]
    if missing:
        raise ConfigError(
            f"model.name={model} needs a token vocabulary with {', '.join(missing)} from a "
            "text-generation source (dates, text-pairs); this data has none."
        )
    return vocab.index("[PAD]"), vocab.index("[BOS]"), vocab.index("[EOS]")


def source_of(inputs: Any, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids and lengths from a batch dict or a bare ``(B, S)`` tensor padded with
    ``pad_id`` or -1 (what ``torchlab predict`` feeds)."""
    if isinstance(inputs, dict):
        return inputs["ids"], inputs["lengths"]
    ids = inputs.masked_fill(inputs < 0, pad_id)
    return ids, (ids != pad_id).sum(1).clamp(min=1)


class Attention(nn.Module):
    """Additive (Bahdanau et al. 2015, https://arxiv.org/abs/1409.0473) or multiplicative
    ("dot" / "general", Luong et al. 2015, https://arxiv.org/abs/1508.04025) attention."""

    def __init__(self, kind: AttentionKind, query_dim: int, key_dim: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":  # score = v^T tanh(W_q q + W_k k)
            self.query = nn.Linear(query_dim, query_dim, bias=False)
            self.key = nn.Linear(key_dim, query_dim)
            self.v = nn.Linear(query_dim, 1, bias=False)
        elif kind == "general" or key_dim != query_dim:
            # general: score = q^T W k; dot: score = q^T k, with keys brought to the
            # query's width when they differ (a bidirectional encoder is twice as wide)
            self.key = nn.Linear(key_dim, query_dim, bias=False)
        else:
            self.key = nn.Identity()

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """Projected encoder outputs, computed once per source: (B, S, K) -> (B, S, H)."""
        return self.key(memory)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context (B, K) and weights (B, S) that sum to 1 over the unmasked source."""
        if self.kind == "bahdanau":
            scores = self.v(torch.tanh(self.query(query)[:, None] + keys)).squeeze(-1)  # (B, S)
        else:
            scores = torch.einsum("bh,bsh->bs", query, keys)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)  # (B, S)
        return torch.einsum("bs,bsk->bk", weights, memory), weights


class GRUSeq2Seq(nn.Module):
    """Bidirectional GRU encoder, GRU decoder with attention and scheduled teacher forcing.

    Teacher forcing feeds the true previous token with probability ``teacher_forcing_ratio``
    and the model's own previous prediction otherwise (scheduled sampling, Bengio et al.
    2015, https://arxiv.org/abs/1506.03099). The number of training steps seen is a buffer,
    so the schedule is saved with the weights and continues on resume.
    """

    def __init__(
        self,
        vocab_size: int,
        ids: tuple[int, int, int],
        *,
        embedding_dim: int,
        hidden_size: int,
        attention: AttentionKind,
        dropout: float,
        teacher_forcing: float,
        teacher_forcing_decay: Decay,
        decay_steps: int,
        max_length: int,
        beam_width: int,
    ) -> None:
        super().__init__()
        self.pad_id, self.bos_id, self.eos_id = ids
        self.attention_kind, self.max_length, self.beam_width = attention, max_length, beam_width
        self.tf_start, self.tf_decay, self.decay_steps = (
            teacher_forcing,
            teacher_forcing_decay,
            decay_steps,
        )
        self.embed = nn.Embedding(vocab_size, embedding_dim, padding_idx=self.pad_id)
        self.encoder = nn.GRU(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden_size, hidden_size)  # encoder final states -> h0
        self.attention = Attention(attention, hidden_size, 2 * hidden_size)
        feed = 2 * hidden_size if attention == "bahdanau" else hidden_size
        self.cell = nn.GRUCell(embedding_dim + feed, hidden_size)
        self.combine = nn.Linear(hidden_size + 2 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, vocab_size)
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))

    @property
    def teacher_forcing_ratio(self) -> float:
        """Probability of feeding the true previous token at the current training step."""
        step, k = float(self.steps_seen), float(self.decay_steps)
        if self.tf_decay == "linear":
            return self.tf_start * max(0.0, 1.0 - step / k)
        if self.tf_decay == "exponential":
            return self.tf_start * 0.5 ** (step / k)  # halves every decay_steps
        if self.tf_decay == "inverse_sigmoid":  # k / (k + exp(i / k)), Bengio et al. 2015
            return self.tf_start * k / (k + math.exp(min(step / k, 50.0)))
        return self.tf_start

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> State:
        """Encoder outputs and the decoder's first state."""
        embedded = self.dropout(self.embed(ids))  # (B, S, E)
        packed = pack_padded_sequence(
            embedded, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, final = self.encoder(packed)
        memory, _ = pad_packed_sequence(outputs, batch_first=True, total_length=ids.shape[1])
        h = torch.tanh(self.bridge(torch.cat([final[0], final[1]], -1)))  # (B, H)
        mask = ids != self.pad_id  # (B, S)
        feed = memory.new_zeros(len(ids), self.cell.input_size - self.embed.embedding_dim)
        return h, feed, memory, self.attention.keys(memory), mask

    def step(self, token: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor]:
        """One decoder step: logits (B, V), the next state and the attention weights (B, S)."""
        h, feed, memory, keys, mask = state
        x = self.dropout(self.embed(token))  # (B, E)
        if self.attention_kind == "bahdanau":  # attend with the previous state, then update
            context, weights = self.attention(h, keys, memory, mask)
            h = self.cell(torch.cat([x, context], -1), h)
            hidden = torch.tanh(self.combine(torch.cat([h, context], -1)))
            feed = context
        else:  # update, then attend with the new state; input feeding of h~ (Luong 3.3)
            h = self.cell(torch.cat([x, feed], -1), h)
            context, weights = self.attention(h, keys, memory, mask)
            hidden = torch.tanh(self.combine(torch.cat([h, context], -1)))
            feed = hidden
        return self.out(self.dropout(hidden)), (h, feed, memory, keys, mask), weights

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for ``inputs["decoder_ids"]``."""
        state = self.encode(inputs["ids"], inputs["lengths"])
        targets = inputs["decoder_ids"]  # (B, T)
        ratio = self.teacher_forcing_ratio if self.training else 1.0
        if self.training:
            self.steps_seen += 1
        token, logits = targets[:, 0], []
        for t in range(targets.shape[1]):
            step_logits, state, _ = self.step(token, state)
            logits.append(step_logits)
            if t + 1 < targets.shape[1]:
                token = targets[:, t + 1]
                if ratio < 1.0:  # scheduled sampling: some rows get their own prediction
                    own = torch.rand(len(token), device=token.device) >= ratio
                    token = torch.where(own, step_logits.argmax(-1), token)
        return torch.stack(logits, 1)  # (B, T, V)

    def start(self, inputs: Any) -> State:
        return self.encode(*source_of(inputs, self.pad_id))

    def next_log_probs(self, token: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        logits, state, _ = self.step(token, state)
        return logits.log_softmax(-1), state

    @staticmethod
    def reorder(state: State, rows: torch.Tensor) -> State:
        return tuple(part[rows] for part in state)

    @torch.no_grad()
    def attention_map(
        self, inputs: Any, max_length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy output ids (B, L) and the attention weights of each output step (B, L, S)."""
        state, maps, tokens = self.start(inputs), [], []
        token = torch.full((len(state[0]),), self.bos_id, device=state[0].device)
        for _ in range(max_length or self.max_length):
            logits, state, weights = self.step(token, state)
            token = logits.argmax(-1)
            tokens.append(token)
            maps.append(weights)
        return torch.stack(tokens, 1), torch.stack(maps, 1)

    def decode(
        self, inputs: Any, *, beam_width: int | None = None, max_length: int | None = None
    ) -> torch.Tensor:
        return decode(self, inputs, beam_width or self.beam_width, max_length or self.max_length)

    def infer(self, inputs: Any) -> torch.Tensor:
        """What ``torchlab predict`` runs: decoded ids with the configured beam width."""
        return self.decode(inputs)


class PositionalEncoding(nn.Module):
    """Sinusoidal positions (Vaswani et al. 2017, section 3.5), added to the embeddings."""

    def __init__(self, dim: int, max_len: int = 1024) -> None:
        super().__init__()
        position = torch.arange(max_len)[:, None]
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2], table[:, 1::2] = torch.sin(position * div), torch.cos(position * div)
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[: x.shape[1]]  # (B, T, D)


class TransformerSeq2Seq(nn.Module):
    """``nn.Transformer`` with shared, scaled token embeddings and a tied output layer."""

    def __init__(
        self, vocab_size: int, ids: tuple[int, int, int], *, d_model: int, heads: int,
        layers: int, feedforward: int, dropout: float, max_length: int, beam_width: int,
    ) -> None:  # fmt: skip
        super().__init__()
        self.pad_id, self.bos_id, self.eos_id = ids
        self.max_length, self.beam_width, self.scale = max_length, beam_width, math.sqrt(d_model)
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=self.pad_id)
        self.position = PositionalEncoding(d_model)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, feedforward, dropout, batch_first=True, norm_first=True
        )
        # Nested tensors do not apply to pre-norm layers; say so here rather than warn.
        encoder = nn.TransformerEncoder(
            layer, layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.transformer = nn.Transformer(
            d_model, heads, layers, layers, feedforward, dropout, custom_encoder=encoder,
            batch_first=True, norm_first=True,
        )  # fmt: skip
        self.out = nn.Linear(d_model, vocab_size, bias=False)
        self.out.weight = self.embed.weight  # weight tying (Press & Wolf 2017)
        # Tied weights start small, so the sqrt(d_model)-scaled inputs are O(1) and the
        # initial logits near 0 (as in Vaswani et al. 2017, section 3.4).
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.embed.weight[self.pad_id].zero_()

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.position(self.embed(ids) * self.scale))  # (B, T, D)

    def encode(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padding = ids == self.pad_id  # (B, S), True where padded
        memory = self.transformer.encoder(self.embed_tokens(ids), src_key_padding_mask=padding)
        return memory, padding

    def decode_logits(
        self, prefix: torch.Tensor, memory: torch.Tensor, padding: torch.Tensor
    ) -> torch.Tensor:
        causal = nn.Transformer.generate_square_subsequent_mask(
            prefix.shape[1], device=prefix.device
        )
        hidden = self.transformer.decoder(
            self.embed_tokens(prefix), memory, tgt_mask=causal, tgt_is_causal=True,
            memory_key_padding_mask=padding,
        )  # fmt: skip
        return self.out(hidden)  # (B, T, V)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for ``inputs["decoder_ids"]``."""
        memory, padding = self.encode(inputs["ids"])
        return self.decode_logits(inputs["decoder_ids"], memory, padding)

    def start(self, inputs: Any) -> State:
        ids, _ = source_of(inputs, self.pad_id)
        memory, padding = self.encode(ids)
        return memory, padding, ids.new_zeros(len(ids), 0)

    def next_log_probs(self, token: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        memory, padding, prefix = state
        prefix = torch.cat([prefix, token[:, None]], 1)  # no cache: outputs here are short
        logits = self.decode_logits(prefix, memory, padding)[:, -1]
        return logits.log_softmax(-1), (memory, padding, prefix)

    @staticmethod
    def reorder(state: State, rows: torch.Tensor) -> State:
        return tuple(part[rows] for part in state)

    def decode(
        self, inputs: Any, *, beam_width: int | None = None, max_length: int | None = None
    ) -> torch.Tensor:
        return decode(self, inputs, beam_width or self.beam_width, max_length or self.max_length)

    def infer(self, inputs: Any) -> torch.Tensor:
        """What ``torchlab predict`` runs: decoded ids with the configured beam width."""
        return self.decode(inputs)


def _check(value: int, name: str, minimum: int = 1) -> None:
    if value < minimum:
        raise ConfigError(f"model.{name} must be at least {minimum}; received {name}={value}.")


@MODELS.register("gru-seq2seq")
def gru_seq2seq(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    embedding_dim: int = 64,
    hidden_size: int = 128,
    attention: AttentionKind = "bahdanau",
    dropout: float = 0.1,
    teacher_forcing: float = 1.0,
    teacher_forcing_decay: Decay = "inverse_sigmoid",
    decay_steps: int = 1000,
    max_length: int = 32,
    beam_width: int = 1,
) -> nn.Module:
    """GRU encoder-decoder with attention.

    Args:
        embedding_dim: Width of the shared token embedding.
        hidden_size: GRU width (the encoder has this much per direction).
        attention: ``bahdanau`` (additive), ``dot`` or ``general`` (Luong, multiplicative).
        dropout: Dropout on embeddings and before the output layer.
        teacher_forcing: Probability of feeding the true previous token at step 0.
        teacher_forcing_decay: How that probability falls with training steps.
        decay_steps: The decay's scale in steps (linear: reaches 0; exponential: half-life;
            inverse_sigmoid: k in k / (k + exp(step / k))).
        max_length: Longest output generated when decoding.
        beam_width: 1 decodes greedily; more runs beam search.
    """
    for name, value in (("embedding_dim", embedding_dim), ("hidden_size", hidden_size),
                        ("decay_steps", decay_steps), ("max_length", max_length),
                        ("beam_width", beam_width)):  # fmt: skip
        _check(value, name)
    return GRUSeq2Seq(
        num_outputs, special_ids(spec, "gru-seq2seq"), embedding_dim=embedding_dim,
        hidden_size=hidden_size, attention=attention, dropout=dropout,
        teacher_forcing=teacher_forcing, teacher_forcing_decay=teacher_forcing_decay,
        decay_steps=decay_steps, max_length=max_length, beam_width=beam_width,
    )  # fmt: skip


@MODELS.register("transformer-seq2seq")
def transformer_seq2seq(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    d_model: int = 128,
    heads: int = 4,
    layers: int = 2,
    feedforward: int = 256,
    dropout: float = 0.1,
    max_length: int = 32,
    beam_width: int = 1,
) -> nn.Module:
    """Encoder-decoder Transformer on ``nn.Transformer`` (pre-norm).

    Args:
        d_model: Width of embeddings and attention.
        heads: Attention heads (must divide ``d_model``).
        layers: Encoder layers, and as many decoder layers.
        feedforward: Width of each feed-forward block.
        dropout: Dropout throughout.
        max_length: Longest output generated when decoding.
        beam_width: 1 decodes greedily; more runs beam search.
    """
    if d_model % heads:
        raise ConfigError(f"model.heads={heads} must divide model.d_model={d_model}.")
    for name, value in (("layers", layers), ("max_length", max_length), ("beam_width", beam_width)):
        _check(value, name)
    return TransformerSeq2Seq(
        num_outputs, special_ids(spec, "transformer-seq2seq"), d_model=d_model, heads=heads,
        layers=layers, feedforward=feedforward, dropout=dropout, max_length=max_length,
        beam_width=beam_width,
    )  # fmt: skip
