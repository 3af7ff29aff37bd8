"""``data.batch_size: auto`` picks the fastest batch size without disturbing the run."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

import torchlab
from torchlab.config import load_config
from torchlab.engine.experiment import build_experiment as build
from torchlab.training.batch_size_finder import find_batch_size
from torchlab.training.optim import build_optimizer


def test_candidates_are_measured_and_the_model_is_left_as_it_was() -> None:
    parts = build(load_config("digits", {"model.channels": [4], "data.batch_size": "auto"}))
    optimizer = build_optimizer(parts.config.optim, parts.model)
    before = {k: v.clone() for k, v in parts.model.state_dict().items()}
    rng = torch.get_rng_state()
    speeds = find_batch_size(parts, optimizer)
    assert list(speeds) == [16, 32, 64, 128, 256]  # 1,257 training images: 4 x 256 fit
    assert all(rate > 0 for rate in speeds.values())
    assert all(before[k].equal(v) for k, v in parts.model.state_dict().items())
    assert not optimizer.state  # no moment estimates left behind
    assert torch.equal(rng, torch.get_rng_state())


def test_the_chosen_size_is_written_into_the_run_config(tmp_path: Path) -> None:
    run = torchlab.train(
        "iris",
        {"data.batch_size": "auto", "trainer.max_epochs": 1, "trainer.progress": "none"},
        output_dir=tmp_path,
    )
    saved = yaml.safe_load((run.dir / "config.yaml").read_text())
    assert saved["data"]["batch_size"] == 16  # iris trains on 97 rows: only 16 fits 4 steps
