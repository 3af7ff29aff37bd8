"""The learning-rate range test on real small data (iris)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import torchlab
from torchlab.config import load_config
from torchlab.engine.experiment import build_experiment, loaders
from torchlab.errors import ConfigError
from torchlab.training.lr_finder import find_lr, lr_range_test
from torchlab.training.optim import build_optimizer
from torchlab.tune import lr_find


@pytest.fixture
def parts():  # type: ignore[no-untyped-def]
    return build_experiment(load_config("iris", {"trainer.progress": "none"}))


def test_sweep_restores_model_optimizer_and_random_state(parts) -> None:  # type: ignore[no-untyped-def]
    optimizer = build_optimizer(parts.config.optim, parts.model)
    loader = loaders(parts)["train"]
    before = {k: v.clone() for k, v in parts.model.state_dict().items()}
    lr_before = [g["lr"] for g in optimizer.param_groups]
    generator_before = torch.get_rng_state()

    result = lr_range_test(
        parts.model, parts.task, optimizer, loader, device=parts.device, num_steps=60
    )

    after = parts.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [g["lr"] for g in optimizer.param_groups] == lr_before
    assert not optimizer.state  # no Adam moments left behind by the sweep
    assert torch.equal(torch.get_rng_state(), generator_before)
    assert parts.model.training
    # an exponential sweep: constant ratio between steps, starting at start_lr
    assert result.lrs[0] == pytest.approx(1e-7)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios))
    assert len(result.losses) == len(result.smoothed) == len(result.lrs)
    assert result.suggestion == pytest.approx(result.min_loss_lr / 10)
    # the suggestion is a rate where the loss was already falling
    index = result.lrs.index(result.min_loss_lr)
    assert result.smoothed[index] < result.smoothed[0]


def test_sweep_stops_when_the_loss_diverges(parts) -> None:  # type: ignore[no-untyped-def]
    sgd = parts.config.optim.model_copy(update={"name": "sgd"})
    optimizer = build_optimizer(sgd, parts.model)
    result = lr_range_test(
        parts.model,
        parts.task,
        optimizer,
        loaders(parts)["train"],
        device=parts.device,
        start_lr=1e-4,
        end_lr=1e6,
        num_steps=200,
    )
    assert result.diverged
    assert len(result.lrs) < 200
    assert result.lrs[-1] < 1e6
    assert result.suggestion < result.lrs[-1]


def test_bad_sweep_settings_are_config_errors(parts) -> None:  # type: ignore[no-untyped-def]
    loader = loaders(parts)["train"]
    with pytest.raises(ConfigError, match="0 < start_lr < end_lr"):
        find_lr(parts, loader, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ConfigError, match="num_steps >= 10"):
        find_lr(parts, loader, num_steps=3)


def test_lr_find_writes_plot_and_json(tmp_path: Path) -> None:
    result = lr_find("iris", {"trainer.progress": "none"}, output_dir=tmp_path, num_steps=40)
    saved = json.loads((tmp_path / "lr_finder.json").read_text())
    assert saved["suggestion"] == result.suggestion
    assert (tmp_path / "lr_finder.png").read_bytes()[:4] == b"\x89PNG"


def test_auto_lr_trains_with_the_suggestion_and_records_it(tmp_path: Path) -> None:
    overrides = {"optim.lr": "auto", "trainer.max_epochs": 2, "trainer.progress": "none"}
    run = torchlab.train("iris", overrides, output_dir=tmp_path)
    found = json.loads((run.dir / "lr_finder.json").read_text())["suggestion"]
    assert run.config.optim.lr == pytest.approx(found, rel=1e-2)  # config.yaml holds the number
    assert (run.dir / "lr_finder.png").is_file()
    assert run.history[0]["lr"] == pytest.approx(run.config.optim.lr)
    # the chosen rate gives the same run as naming it: the test left no trace
    same = torchlab.train(
        "iris", {**overrides, "optim.lr": run.config.optim.lr}, output_dir=tmp_path / "again"
    )
    assert same.metrics == run.metrics
    assert "Learning-rate range test (optim.lr: auto)" in (run.dir / "report.html").read_text()


@pytest.mark.slow  # the finder itself is tested in-process
def test_lr_find_cli(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("lr-find", "iris", "trainer.progress=none", "--steps", "30", "--output-dir", "out")
    assert result.returncode == 0, result.stderr
    assert "Suggested learning rate:" in result.stdout
    assert (tmp_path / "out" / "lr_finder.png").is_file()
    bad = cli("lr-find", "iris", "optim.lrr=1")
    assert bad.returncode == 2 and "Did you mean 'optim.lr'" in bad.stderr
