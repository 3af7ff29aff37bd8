"""Featurizers turn a user's raw input into model inputs, the same way at train and predict time.

A featurizer is fitted on the training split only, saved as JSON in the run directory
(``featurizer.json``) and loaded back by ``torchlab predict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

from torchlab.registry import Registry

FEATURIZERS = Registry("featurizer", ["torchlab.data.*"])


class Featurizer(Protocol):
    """What every featurizer provides (see :mod:`torchlab.data.tabular` for one)."""

    kind: ClassVar[str]

    def load_inputs(self, paths: list[Path]) -> tuple[torch.Tensor, list[str]]:
        """Model inputs read from user files, and an id per row (file name or row number).

        Featurizers that read one input per file (images) also take ``on_error="skip"``:
        unreadable files are then left out and listed, with why, in ``self.skipped``.
        """
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state; ``{"kind": ...}`` plus whatever ``from_dict`` needs."""
        ...


def load_featurizer(state: dict[str, Any], directory: Path | None = None) -> Featurizer:
    """Rebuild a featurizer saved with ``to_dict``.

    A featurizer that also writes side files (``save(directory)``, e.g. a text tokenizer's
    ``tokenizer.json``) is rebuilt with ``load(state, directory)`` from the folder holding them.
    """
    cls = FEATURIZERS.get(state["kind"], where="featurizer.json").builder
    if directory is not None and hasattr(cls, "load"):
        return cls.load(state, Path(directory))
    return cls.from_dict(state)
