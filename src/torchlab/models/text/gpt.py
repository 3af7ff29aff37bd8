"""Causal language models: a GPT-style decoder written here, and any local Hugging Face
causal-LM directory fine-tuned through ``transformers``.

Both take token ids ``(B, T)`` and return next-token logits ``(B, T, V)``, and both generate
with :func:`generate` (temperature and top-k sampling). The GPT follows nanoGPT
(https://github.com/karpathy/nanoGPT): pre-norm blocks, causal self-attention, learned
positions and an output layer tied to the token embedding.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError, RunError
from torchlab.registry import MODELS
from torchlab.trust import hf_folder_options


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t only."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # (B, T, C) each
        q, k, v = (z.view(B, T, self.heads, C // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(  # (B, nh, T, hs)
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.proj(y))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """A decoder-only Transformer language model.

    Attributes:
        block_size: Longest context the model sees; generation keeps the last this many.
    """

    def __init__(
        self, vocab_size: int, *, block_size: int, layers: int, heads: int, dim: int,
        dropout: float, max_new_tokens: int, temperature: float, top_k: int | None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.block_size = block_size
        self.sampling = {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_k": top_k,
        }
        self.wte = nn.Embedding(vocab_size, dim)
        self.wpe = nn.Embedding(block_size, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf 2017)
        self.apply(self._init_weights)
        for name, param in self.named_parameters():  # GPT-2: scale residual projections
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) for ids (B, T), T <= block_size."""
        length = ids.shape[1]
        if length > self.block_size:
            raise RunError(
                f"The GPT model sees at most block_size={self.block_size} tokens but received "
                f"{length}; pass the last {self.block_size} (generate() crops its context so)."
            )
        positions = torch.arange(length, device=ids.device)
        x = self.drop(self.wte(ids) + self.wpe(positions))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, V)

    def generate(
        self,
        ids: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
    ) -> torch.Tensor:
        """``ids`` (B, T) followed by ``max_new_tokens`` sampled tokens: (B, T + new)."""
        return generate(self, ids, max_new_tokens, temperature, top_k, self.block_size)

    def infer(self, prompts: torch.Tensor) -> torch.Tensor:
        """What ``torchlab predict`` runs: continuations (B, new) of prompts padded with -1."""
        return continue_prompts(self, prompts, **self.sampling)


class HFCausalLM(nn.Module):
    """A Hugging Face causal LM (GPT-2, Llama, ...) behind the same ids -> logits interface."""

    def __init__(self, model: nn.Module, sampling: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.block_size = int(
            getattr(model.config, "n_positions", 0) or model.config.max_position_embeddings
        )
        self.sampling = sampling

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits  # (B, T, V)

    def generate(
        self,
        ids: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
    ) -> torch.Tensor:
        return generate(self, ids, max_new_tokens, temperature, top_k, self.block_size)

    def infer(self, prompts: torch.Tensor) -> torch.Tensor:
        return continue_prompts(self, prompts, **self.sampling)


@torch.no_grad()
def generate(
    model: nn.Module, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
    top_k: int | None = None, block_size: int | None = None,
) -> torch.Tensor:  # fmt: skip
    """Sample ``max_new_tokens`` tokens one at a time; temperature 0 picks the most likely."""
    was_training = model.training
    model.eval()
    for _ in range(max_new_tokens):
        context = ids if block_size is None else ids[:, -block_size:]
        logits = model(context)[:, -1].float()  # (B, V)
        if temperature <= 0:
            token = logits.argmax(-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = logits.topk(min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            token = torch.multinomial(logits.softmax(-1), 1)  # (B, 1)
        ids = torch.cat([ids, token], 1)
    model.train(was_training)
    return ids


def continue_prompts(
    model: nn.Module,
    prompts: torch.Tensor,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
) -> torch.Tensor:
    """Continue each prompt row (padded on the right with -1) on its own: (B, max_new_tokens)."""
    rows = []
    for row in prompts:
        ids = row[row >= 0][None]  # (1, T)
        rows.append(model.generate(ids, max_new_tokens, temperature, top_k)[0, ids.shape[1] :])
    return torch.stack(rows)


def _sampling(max_new_tokens: int, temperature: float, top_k: int | None) -> dict[str, Any]:
    if max_new_tokens < 1:
        raise ConfigError(f"model.max_new_tokens must be at least 1; received {max_new_tokens}.")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"model.top_k must be at least 1 or null; received {top_k}.")
    return {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k}


@MODELS.register("gpt")
def gpt(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    layers: int = 4,
    heads: int = 4,
    dim: int = 128,
    dropout: float = 0.1,
    max_new_tokens: int = 50,
    temperature: float = 1.0,
    top_k: int | None = 40,
) -> nn.Module:
    """GPT-style decoder; the context length is the data's block size (``input_shape``).

    Args:
        layers: Transformer blocks.
        heads: Attention heads (must divide ``dim``).
        dim: Embedding width.
        dropout: Dropout on embeddings, attention and residual branches.
        max_new_tokens, temperature, top_k: Sampling used by ``torchlab predict``
            (temperature 0 picks the most likely token).
    """
    if "[PAD]" not in spec.class_names or len(spec.input_shape) != 1:
        raise ConfigError(
            "model.name=gpt needs token blocks from a text corpus source (text-corpus); "
            "this data has no token vocabulary."
        )
    if dim % heads:
        raise ConfigError(f"model.heads={heads} must divide model.dim={dim}.")
    return GPT(
        num_outputs, block_size=spec.input_shape[0], layers=layers, heads=heads, dim=dim,
        dropout=dropout, **_sampling(max_new_tokens, temperature, top_k),
    )  # fmt: skip


@MODELS.register("hf-causal-lm")
def hf_causal_lm(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    path: str,
    max_new_tokens: int = 50,
    temperature: float = 1.0,
    top_k: int | None = 40,
) -> nn.Module:
    """Fine-tune a local Hugging Face causal-LM directory (``AutoModelForCausalLM``).

    The data must be tokenized with the same directory's tokenizer
    (``data.source.tokenizer`` of ``text-corpus`` set to the same path).

    Args:
        path: A directory with ``config.json`` and the weights.
        max_new_tokens, temperature, top_k: Sampling used by ``torchlab predict``.
    """
    if not (Path(path) / "config.json").is_file():
        raise ConfigError(
            f"model.path '{path}' is not a Hugging Face model directory (no config.json); "
            "give the folder that save_pretrained wrote."
        )
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, **hf_folder_options(path))
    vocab = model.get_input_embeddings().num_embeddings
    if num_outputs > vocab:
        raise ConfigError(
            f"The data's vocabulary has {num_outputs} tokens but model.path '{path}' embeds "
            f"{vocab}; tokenize with the model's own tokenizer (data.source.tokenizer: {path})."
        )
    return HFCausalLM(model, _sampling(max_new_tokens, temperature, top_k))
