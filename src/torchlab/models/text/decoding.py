"""Decoding for encoder-decoder models: greedy search and beam search.

A decoder offers ``start(inputs) -> state``, ``next_log_probs(token, state) -> (log_probs
(B, V), state)``, ``reorder(state, rows) -> state`` and the ids ``pad_id``, ``bos_id`` and
``eos_id``; both functions work on any such decoder.
"""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def decode(model: Any, inputs: Any, beam_width: int, max_length: int) -> torch.Tensor:
    """Generated ids (B, L) without [BOS]; [PAD] after each row's [EOS]."""
    was_training = model.training
    model.eval()
    try:
        if beam_width <= 1:
            return greedy(model, inputs, max_length)
        return beam_search(model, inputs, beam_width, max_length)
    finally:
        model.train(was_training)


def greedy(model: Any, inputs: Any, max_length: int) -> torch.Tensor:
    """The most likely next token at every step, for the whole batch at once."""
    state = model.start(inputs)
    batch = len(state[0])
    token = torch.full((batch,), model.bos_id, dtype=torch.long, device=state[0].device)
    done = torch.zeros(batch, dtype=torch.bool, device=token.device)
    out = []
    for _ in range(max_length):
        log_probs, state = model.next_log_probs(token, state)
        token = log_probs.argmax(-1).masked_fill(done, model.pad_id)
        out.append(token)
        done |= token == model.eos_id
        if done.all():
            break
    return torch.stack(out, 1)


def beam_search(
    model: Any, inputs: Any, width: int, max_length: int, alpha: float = 0.6
) -> torch.Tensor:
    """Keep the ``width`` best prefixes by summed log-probability; pick the final one with
    the length penalty ((5 + len) / 6) ** alpha of Wu et al. 2016 (https://arxiv.org/abs/1609.08144)."""
    state = model.start(inputs)
    device, batch = state[0].device, len(state[0])
    rows = torch.arange(batch, device=device).repeat_interleave(width)
    state = model.reorder(state, rows)  # (B * K, ...)
    scores = torch.full((batch, width), float("-inf"), device=device)
    scores[:, 0] = 0.0  # every beam starts as the same empty prefix: expand only one
    token = torch.full((batch * width,), model.bos_id, dtype=torch.long, device=device)
    done = torch.zeros(batch * width, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch * width, device=device)
    history = torch.zeros(batch * width, 0, dtype=torch.long, device=device)
    for _ in range(max_length):
        log_probs, state = model.next_log_probs(token, state)  # (B * K, V)
        vocab = log_probs.shape[-1]
        # A finished beam only extends with [PAD] at no cost, so its score stays put.
        finished = torch.full_like(log_probs, float("-inf"))
        finished[:, model.pad_id] = 0.0
        log_probs = torch.where(done[:, None], finished, log_probs)
        total = (scores.reshape(-1, 1) + log_probs).reshape(batch, width * vocab)
        scores, flat = total.topk(width, dim=-1)  # (B, K)
        beam, token = flat // vocab, (flat % vocab).reshape(-1)
        pick = (beam + torch.arange(batch, device=device)[:, None] * width).reshape(-1)
        state, history = model.reorder(state, pick), history[pick]
        done, lengths = done[pick], lengths[pick] + (~done[pick]).float()
        history = torch.cat([history, token[:, None]], 1)
        done |= token == model.eos_id
        if done.all():
            break
    penalty = ((5.0 + lengths) / 6.0) ** alpha
    best = (scores.reshape(-1) / penalty).reshape(batch, width).argmax(-1)
    return history.reshape(batch, width, -1)[torch.arange(batch, device=device), best]
