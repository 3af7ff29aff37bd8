"""Experiment tracking in MLflow: a run folder mirrored as an MLflow run (docs/tracking.md).

The run folder stays the source of truth. A tracked run is pushed from it: the resolved
config as params, every line of ``metrics.jsonl`` as metrics (each key at each step once),
tags, the run's files as artifacts, and the trained model as an MLflow model that wraps its
export folder. Pushes happen in the background while training (:mod:`.session`), and again
by ``torchlab track RUN_DIR`` (:func:`.store.sync`) for what a server that was down missed.
"""

from __future__ import annotations

from torchlab.tracking.settings import TRACKING_KEYS, Settings, resolve, settings_for

__all__ = ["TRACKING_KEYS", "Settings", "resolve", "settings_for"]
