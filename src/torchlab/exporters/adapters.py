"""Export-friendly equivalents of models whose eager forward does not trace.

An adapter computes what the trained model computes for the exported input contract, with
operations every format takes: a forecaster's dict input becomes named positional tensors,
and a recurrent text classifier masks padding instead of packing sequences (packed
sequences do not go through ``torch.export``). Verification always compares the artefact
with the original eager model, never with the adapter.
"""

from __future__ import annotations

import torch
from torch import nn


class ForecastInputs(nn.Module):
    """A forecaster with positional inputs: ``past`` (B, L, Fp) [, ``future`` (B, H, Ff)]."""

    def __init__(self, forecaster: nn.Module, with_future: bool) -> None:
        super().__init__()
        self.forecaster = forecaster
        self.with_future = with_future

    def forward(self, past: torch.Tensor, future: torch.Tensor | None = None) -> torch.Tensor:
        inputs = {"past": past}
        if self.with_future and future is not None:
            inputs["future"] = future
        return self.forecaster(inputs)  # (B, H, T[, Q])


def forecast_adapter(model: nn.Module, with_future: bool) -> nn.Module:
    """The forecaster behind positional inputs.

    An autoregressive decoder loops over the fixed horizon, not over anything the data
    decides, so the exported graph holds the loop unrolled and computes the same steps.
    """
    return ForecastInputs(model, with_future).eval()


def single_layer(rnn: nn.RNNBase, layer: int, suffix: str) -> nn.RNNBase:
    """One direction of one layer of ``rnn`` as its own unidirectional module (shared weights)."""
    size = rnn.input_size if layer == 0 else rnn.hidden_size * (2 if rnn.bidirectional else 1)
    one = type(rnn)(size, rnn.hidden_size, num_layers=1, batch_first=True, bias=rnn.bias)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        if hasattr(one, f"{name}_l0"):
            setattr(one, f"{name}_l0", getattr(rnn, f"{name}_l{layer}{suffix}"))
    return one.eval()


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``lengths[b]`` steps, leaving padding in place: (B, T, D)."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]  # (1, T)
    last = lengths[:, None] - 1  # (B, 1)
    index = torch.where(steps <= last, last - steps, steps)  # (B, T)
    return x.gather(1, index[..., None].expand_as(x))


class MaskedRNNText(nn.Module):
    """:class:`~torchlab.models.text.rnn.RNNClassifier` on token ids, padding by masking.

    The ids are padded to the trained ``max_length`` so the recurrence runs over a fixed
    number of steps (``torch.export`` unrolls recurrent layers at one length). Forward
    directions run left to right, where outputs before a row's end never see its padding;
    backward directions run over each row reversed within its length, the same steps
    packing gives them. Pooling then reads only real steps, as the eager model does.
    """

    def __init__(self, model: nn.Module, max_length: int) -> None:
        super().__init__()
        rnn = model.rnn
        self.embed, self.head, self.pad_id = model.embed, model.head, model.pad_id
        self.pooling, self.max_length = model.pooling, max_length
        self.bidirectional = rnn.bidirectional
        self.forward_layers = nn.ModuleList(single_layer(rnn, k, "") for k in range(rnn.num_layers))
        self.backward_layers = nn.ModuleList(
            single_layer(rnn, k, "_reverse") for k in range(rnn.num_layers) if rnn.bidirectional
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id  # (B, T): the eager model's own rule (token_batch)
        lengths = mask.sum(dim=1).clamp(min=1)  # (B,)
        width = self.max_length - ids.shape[1]
        ids = nn.functional.pad(ids, (0, width), value=self.pad_id)  # (B, L)
        mask = nn.functional.pad(mask, (0, width), value=False)
        x = self.embed(ids)  # (B, L, E)
        ends = []
        for k, layer in enumerate(self.forward_layers):
            out = layer(x)[0]  # (B, L, H)
            ends = [out.gather(1, (lengths - 1)[:, None, None].expand(-1, 1, out.shape[2]))[:, 0]]
            if self.bidirectional:
                back = self.backward_layers[k](reverse_within(x, lengths))[0]  # (B, L, H)
                ends.append(
                    back.gather(1, (lengths - 1)[:, None, None].expand_as(back[:, :1]))[:, 0]
                )
                out = torch.cat([out, reverse_within(back, lengths)], dim=-1)  # (B, L, 2H)
            x = out
        if self.pooling == "last":
            features = torch.cat(ends, dim=-1)  # (B, dirs * H)
        else:
            real = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
            real = real.unsqueeze(-1)  # (B, L, 1): steps packing ran over
            if self.pooling == "mean":
                # Eager pads unpacked outputs with zeros and divides by the mask's count.
                features = (x * real * mask.unsqueeze(-1)).sum(1) / mask.unsqueeze(-1).sum(1).clamp(
                    min=1
                )
            else:
                x = x.masked_fill(~real, 0.0)
                features = x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        return self.head(features)  # (B, num_outputs)
