"""``lstm-forecaster`` and ``gru-forecaster``: a recurrent encoder and a direct or autoregressive decoder."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from torchlab.data.base import DataSpec
from torchlab.models.forecasting.base import Forecaster, Normalize, Sizes, mlp, sizes
from torchlab.registry import MODELS, variant

Decoder = Literal["direct", "autoregressive"]


class RNNForecaster(Forecaster):
    """Encode the past with an LSTM/GRU, then decode the horizon.

    ``direct``: the last hidden state and the flattened future inputs -> every step at once
    (no error accumulation). ``autoregressive``: a decoder cell started from the encoder's
    state steps through the horizon, fed its own previous point forecast and that step's
    future inputs (seq2seq, Sutskever et al. 2014, https://arxiv.org/abs/1409.3215); it
    decodes freely in training too, so it never sees the answers it must later produce.
    """

    def __init__(
        self, size: Sizes, cell: type[nn.RNNBase], hidden: int, layers: int, dropout: float,
        decoder: Decoder, normalize: Normalize,
    ) -> None:  # fmt: skip
        super().__init__(size, normalize)
        self.decoder_kind = decoder
        outputs = size.targets * size.quantiles
        drop = dropout if layers > 1 else 0.0
        self.encoder = cell(size.past, hidden, layers, batch_first=True, dropout=drop)
        if decoder == "direct":
            self.head = mlp(
                [hidden + size.horizon * size.future, hidden, size.horizon * outputs], dropout
            )
        else:
            self.decoder = cell(
                size.targets + size.future, hidden, layers, batch_first=True, dropout=drop
            )
            self.head = nn.Linear(hidden, outputs)

    def forecast(self, past: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        encoded, state = self.encoder(past)  # (B, L, D)
        batch = past.shape[0]
        if self.decoder_kind == "direct":
            flat = torch.cat([encoded[:, -1], future.flatten(1)], dim=1)  # (B, D + H*Ff)
            return self.head(flat).reshape(batch, self.size.horizon, -1)  # (B, H, T*Q)
        previous = past[:, -1:, : self.size.targets]  # (B, 1, T) last observed
        steps = []
        for h in range(self.size.horizon):
            step_in = torch.cat([previous, future[:, h : h + 1]], dim=-1)  # (B, 1, T + Ff)
            out, state = self.decoder(step_in, state)
            step = self.head(out)  # (B, 1, T*Q)
            steps.append(step)
            middle = self.size.quantiles // 2  # the median of sorted quantiles
            previous = step.reshape(batch, 1, self.size.targets, self.size.quantiles)[..., middle]
        return torch.cat(steps, dim=1)  # (B, H, T*Q)


def rnn_forecaster(
    cell: type[nn.RNNBase],
    name: str,
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    hidden: int = 64,
    layers: int = 1,
    dropout: float = 0.0,
    decoder: Decoder = "direct",
    normalize: Normalize = "last",
) -> nn.Module:
    """An LSTM or GRU encoder with a direct multi-horizon head or an autoregressive decoder."""
    return RNNForecaster(
        sizes(spec, num_outputs, name),
        cell,
        hidden=hidden,
        layers=layers,
        dropout=dropout,
        decoder=decoder,
        normalize=normalize,
    )


MODELS.register("lstm-forecaster")(variant(rnn_forecaster, nn.LSTM, "lstm-forecaster"))
MODELS.register("gru-forecaster")(variant(rnn_forecaster, nn.GRU, "gru-forecaster"))
