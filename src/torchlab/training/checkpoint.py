"""Checkpoints that are never half-written and never silently wrong.

A checkpoint is a folder ``checkpoints/step-000123/`` holding ``model.safetensors`` (the
weights), ``state.pt`` (optimizer, scheduler, scaler, RNG, loop and callback state, read
back with ``weights_only=True``) and ``manifest.json`` (size and SHA-256 of each file).
It is written in a temporary folder beside the final one, each file fsynced, then renamed
into place: a run killed at any moment leaves either the whole checkpoint or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from torchlab.errors import CheckpointError, load_problem
from torchlab.files import atomic_path, fsync_dir, temporary_dir, write_json, write_with

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
STATE = "state.pt"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def contiguous(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in weights.items()}


def save_weights(path: Path, weights: dict[str, torch.Tensor]) -> None:
    """Write a safetensors file atomically (temp file, fsync, rename)."""
    with atomic_path(path) as tmp:
        save_file(contiguous(weights), str(tmp))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(
            f"Weights file '{path}' does not exist; train the run first or check the path."
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"Weights file '{path}' is corrupt ({exc}); use another checkpoint."
        ) from None


def save_checkpoint(
    folder: Path, name: str, weights: dict[str, torch.Tensor], state: dict[str, Any]
) -> Path:
    """Write checkpoint ``folder/name`` atomically and return its path."""
    final = folder / name
    with temporary_dir(folder, f".{name}.") as tmp:
        save_weights(tmp / WEIGHTS, weights)
        write_with(tmp / STATE, lambda f: torch.save(state, f))  # a file: errors keep errno
        manifest = {
            "format": 1,
            "files": {
                f: {"bytes": (tmp / f).stat().st_size, "sha256": _sha256(tmp / f)}
                for f in (WEIGHTS, STATE)
            },
        }
        write_json(tmp / MANIFEST, manifest)
        if final.exists():  # same step written again after a resume: replace it whole
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(folder)
    return final


def verify(path: Path) -> None:
    """Raise :class:`CheckpointError` unless every file matches the manifest."""
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError):
        raise CheckpointError(
            f"Checkpoint '{path}' has no readable manifest (it is incomplete or corrupt); "
            "delete it to resume from the one before."
        ) from None
    for name, expected in files.items():
        file = path / name
        if (
            not file.is_file()
            or file.stat().st_size != expected["bytes"]
            or _sha256(file) != expected["sha256"]
        ):
            raise CheckpointError(
                f"Checkpoint file '{file}' does not match its manifest (truncated or modified); "
                "delete the checkpoint to resume from the one before."
            )


def load_checkpoint(path: Path) -> Checkpoint:
    """Verify and read a checkpoint folder."""
    verify(path)
    try:
        state = torch.load(path / STATE, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors have many types; all mean the same here
        raise CheckpointError(
            f"Checkpoint state '{path / STATE}' cannot be read ({load_problem(exc)}); delete the "
            "checkpoint to resume from the one before."
        ) from None
    return Checkpoint(path, load_weights(path / WEIGHTS), state)


def checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first (temporary folders are ignored)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step-"))


def latest_checkpoint(folder: Path) -> Path | None:
    found = checkpoints(folder)
    return found[-1] if found else None


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints and any leftover temporary folders."""
    for old in checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for leftover in folder.glob(".step-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def load_into(model: nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """Load weights into ``model``, naming missing, unexpected or mis-shaped tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or unexpected or shapes:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {unexpected[:3]}" if unexpected else "",
                f"shape differs for {shapes[:3]}" if shapes else "",
            )
            if part
        )
        raise CheckpointError(
            f"Weights in '{source}' belong to another model ({details}); "
            "load them with the config of the run that wrote them."
        )
    model.load_state_dict(weights)
