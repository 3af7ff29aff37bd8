"""The Python API: the same verbs as the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes

import torchlab
import torchlab.training.loop  # importing the training package must not hide torchlab.train()
from torchlab.errors import RunError


def test_train_returns_a_run_with_metrics_and_a_loadable_model(tmp_path: Path) -> None:
    assert callable(torchlab.train)
    run = torchlab.train(
        "diabetes", {"trainer.max_epochs": 40, "trainer.progress": "none"}, output_dir=tmp_path
    )
    assert run.status == "completed"
    assert run.metrics["test/r2"] > 0.3  # ridge gets about 0.45 on this split
    assert run.summary["baseline"]["name"] == "ridge"
    epochs = [r for r in run.history if "train/loss" in r]
    assert len(epochs) == run.summary["epochs"]

    model = run.load_model()
    test = torchlab.evaluate(run, "test")
    assert test["test/rmse"] == pytest.approx(run.metrics["test/rmse"], rel=1e-6)

    frame = load_diabetes(as_frame=True).frame
    frame.drop(columns="target").to_csv(tmp_path / "patients.csv", index=False)
    predictions = torchlab.predict(run, [tmp_path / "patients.csv"])
    assert list(predictions.columns) == ["id", "prediction_target"]
    features, _ = run.featurizer.load_inputs([tmp_path / "patients.csv"])
    with torch.inference_mode():
        direct = model(features).squeeze(-1).numpy()
    np.testing.assert_allclose(predictions["prediction_target"], direct, rtol=1e-5)
    # predictions are in the target's units (about 25..346), not standardised
    assert 50 < predictions["prediction_target"].mean() < 250


def test_an_incomplete_run_says_how_to_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "half"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(torchlab.load_config("iris").to_yaml())
    (run_dir / "run.json").write_text('{"status": "running"}')
    with pytest.raises(RunError, match="--resume"):
        _ = torchlab.Run(run_dir).metrics


def test_a_folder_that_is_no_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not a torchlab run directory"):
        torchlab.Run(tmp_path)
