"""Numeric precision: fp32, bf16 autocast, or fp16 autocast with gradient scaling on CUDA."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from torchlab.errors import ConfigError


class Precision:
    """Autocast context and gradient scaler for ``trainer.precision``."""

    def __init__(self, mode: str, device: torch.device) -> None:
        if mode == "16-mixed" and device.type != "cuda":
            raise ConfigError(
                f"trainer.precision=16-mixed needs a CUDA GPU but the device is {device.type}; "
                "use trainer.precision=bf16 (or 32) there."
            )
        self.mode = mode
        self.device_type = device.type
        self.dtype = {"bf16": torch.bfloat16, "16-mixed": torch.float16}.get(mode)
        # GradScaler keeps fp16 gradients from underflowing; bf16 has fp32's range and needs none.
        self.scaler = torch.amp.GradScaler(device.type, enabled=mode == "16-mixed")

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
        else:
            with torch.autocast(self.device_type, dtype=self.dtype):
                yield


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; any other name is checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"trainer.device '{name}' is not a device; use auto, cpu, cuda, cuda:1 or mps."
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "trainer.device asks for cuda but no CUDA GPU is visible; use trainer.device=auto or cpu."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "trainer.device asks for mps but MPS is not available; use trainer.device=auto or cpu."
        )
    return device
