"""``torchlab profile``: phases of real training steps, and a Chrome trace in a run folder."""

from __future__ import annotations

import json
from pathlib import Path

import torchlab.api as api


def test_profile_splits_steps_into_phases_and_writes_a_trace(tmp_path: Path) -> None:
    report = api.profile("iris", {"trainer.progress": "none"}, steps=3, output_dir=tmp_path)
    assert report.steps == 3
    for phase in ("forward", "backward", "optimizer"):
        assert report.phase_ms[phase] > 0, phase
    names = {event.get("name") for event in json.loads(report.trace.read_text())["traceEvents"]}
    assert {"data", "forward", "backward", "optimizer"} <= names
    assert (report.trace.parent / "profile.txt").read_text().startswith("phase")
    assert "forward" in report.summary()
