"""A small VGG-style convolutional network for small images (digits, 32x32 crops)."""

from __future__ import annotations

from torch import nn

from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError
from torchlab.models import layers
from torchlab.registry import MODELS


def conv_block(
    in_ch: int, out_ch: int, kernel_size: int, act: str, batch_norm: bool
) -> nn.Sequential:
    """Two 'same' convolutions then a 2x2 max-pool: (B, in, H, W) -> (B, out, H/2, W/2)."""
    modules: list[nn.Module] = []
    for ch in (in_ch, out_ch):
        modules.append(
            nn.Conv2d(ch, out_ch, kernel_size, padding=kernel_size // 2, bias=not batch_norm)
        )
        if batch_norm:
            modules.append(nn.BatchNorm2d(out_ch))
        modules.append(layers.activation(act, "model.activation"))
    modules.append(nn.MaxPool2d(2))
    return nn.Sequential(*modules)


@MODELS.register("cnn")
def cnn(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    channels: tuple[int, ...] = (32, 64),
    kernel_size: int = 3,
    activation: str = "relu",
    batch_norm: bool = True,
    dropout: float = 0.25,
) -> nn.Module:
    """Conv blocks that halve the resolution, global average pooling and a linear head.

    Args:
        channels: Output channels of each block; each block halves height and width.
        kernel_size: Odd convolution kernel size.
        activation: A registered activation (relu, gelu, silu, swish, ...).
        batch_norm: BatchNorm2d after each convolution.
        dropout: Dropout probability before the head.
    """
    if len(spec.input_shape) != 3:
        raise ConfigError(
            f"model 'cnn' needs image inputs shaped (channels, height, width); this data gives "
            f"{spec.input_shape}. Use model.name=mlp for tabular data."
        )
    in_ch, height, width = spec.input_shape
    if min(height, width) < 2 ** len(channels):
        raise ConfigError(
            f"model.channels has {len(channels)} blocks, each halving the {height}x{width} input; "
            f"use at most {max(1, min(height, width).bit_length() - 1)} blocks."
        )
    blocks = []
    for out_ch in channels:
        blocks.append(conv_block(in_ch, out_ch, kernel_size, activation, batch_norm))
        in_ch = out_ch
    return nn.Sequential(
        *blocks,  # (B, C, H / 2^k, W / 2^k)
        nn.AdaptiveAvgPool2d(1),  # (B, C, 1, 1)
        nn.Flatten(),  # (B, C)
        nn.Dropout(dropout),
        layers.output_head(in_ch, num_outputs, spec),
    )
