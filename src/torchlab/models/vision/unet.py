"""U-Net for semantic segmentation (Ronneberger et al., 2015, https://arxiv.org/abs/1505.04597).

An encoder of ``depth`` double-convolution stages that halve the resolution, a bottleneck,
and a decoder that upsamples and concatenates the encoder's feature map of the same
resolution (the skip connections). Padded "same" convolutions and BatchNorm, as is usual
today, so the output has the input's height and width; inputs whose sides are not a
multiple of ``2 ** depth`` are padded and the logits cropped back.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError
from torchlab.registry import MODELS


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """(B, in, H, W) -> (B, out, H, W): two 3x3 conv + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class Up(nn.Module):
    """Upsample x2 with a transposed convolution, concatenate the skip, double conv."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv = double_conv(2 * out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (B, out, 2h, 2w)
        return self.conv(torch.cat([skip, x], dim=1))  # (B, 2 out, 2h, 2w) -> (B, out, ...)


class UNet(nn.Module):
    """Per-pixel class logits (B, num_classes, H, W) for images (B, C, H, W)."""

    def __init__(self, in_ch: int, num_classes: int, depth: int, channels: int) -> None:
        super().__init__()
        widths = [channels * 2**i for i in range(depth + 1)]  # e.g. 16, 32, 64, 128
        self.stem = double_conv(in_ch, widths[0])
        self.down = nn.ModuleList(double_conv(a, b) for a, b in pairwise(widths))
        self.up = nn.ModuleList(Up(b, a) for a, b in pairwise(widths))
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.multiple = 2**depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        skips = [self.stem(x)]  # (B, c, H, W)
        for down in self.down:
            skips.append(down(F.max_pool2d(skips[-1], 2)))  # (B, 2^i c, H / 2^i, W / 2^i)
        x = skips.pop()  # the bottleneck
        for up in reversed(self.up):
            x = up(x, skips.pop())
        return self.head(x)[..., :height, :width]  # (B, num_classes, H, W)


@MODELS.register("unet")
def unet(spec: DataSpec, num_outputs: int, /, *, depth: int = 4, channels: int = 32) -> nn.Module:
    """U-Net with ``depth`` downsampling stages; the first stage has ``channels`` channels.

    Args:
        depth: Number of 2x downsamplings (the receptive field grows with it).
        channels: Width of the first stage; each deeper stage doubles it.
    """
    if len(spec.input_shape) != 3:
        raise ConfigError(
            f"model 'unet' needs image inputs shaped (channels, height, width); this data "
            f"gives {spec.input_shape}."
        )
    if depth < 1 or channels < 1:
        raise ConfigError(
            f"model.depth and model.channels must be at least 1; received depth={depth}, "
            f"channels={channels}."
        )
    return UNet(spec.input_shape[0], num_outputs, depth, channels)
