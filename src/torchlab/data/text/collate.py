"""Padding token-id sequences into batches, with lengths and attention masks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from torchlab.data.base import Batch


def pad(
    sequences: Sequence[Sequence[int]] | Sequence[Tensor], pad_id: int
) -> tuple[Tensor, Tensor]:
    """Right-pads variable-length id sequences to the longest one.

    Args:
        sequences: Token ids per sample, as lists of ints or 1-D tensors.
        pad_id: Id written after each sequence's end.

    Returns:
        ``(ids, lengths)``: ids ``(B, T)`` int64 with ``T`` the longest length (at least 1,
        so an empty sequence still gives a valid tensor), lengths ``(B,)`` int64.
    """
    rows = [torch.as_tensor(s, dtype=torch.long).reshape(-1) for s in sequences]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    width = max(1, int(lengths.max())) if rows else 1
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    return ids, lengths


def padding_mask(lengths: Tensor, width: int) -> Tensor:
    """``(B, T)`` bool mask, true on real tokens and false on padding."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


class TextCollate:
    """``[(ids, label), ...]`` -> :class:`~torchlab.data.base.Batch` of padded text inputs.

    The inputs are ``{"ids": (B, T) int64, "mask": (B, T) bool, "lengths": (B,) int64}``
    with the mask true on real tokens, the form every text model takes.
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, samples: list[tuple[Tensor, Tensor]]) -> Batch:
        ids, lengths = pad([s[0] for s in samples], self.pad_id)
        target = torch.stack([torch.as_tensor(s[1]) for s in samples])
        return Batch(text_inputs(ids, lengths), target)


def text_inputs(ids: Tensor, lengths: Tensor) -> dict[str, Tensor]:
    """The model-input dict of padded ``ids`` ``(B, T)`` and their ``lengths`` ``(B,)``."""
    return {"ids": ids, "mask": padding_mask(lengths, ids.shape[1]), "lengths": lengths}
