"""The Python API: the same verbs as the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes

import torchlab
import torchlab.training.loop  # importing the training package must not hide torchlab.train()
from torchlab.errors import DataError, RunError


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


def test_predict_takes_data_in_memory_as_it_takes_files(tmp_path: Path) -> None:
    import pandas as pd
    from PIL import Image
    from sklearn.datasets import load_digits, load_iris

    quick = {"trainer.max_epochs": 1, "trainer.progress": "none", "baseline": None}
    iris = torchlab.train("iris", quick, output_dir=tmp_path)
    table = load_iris(as_frame=True).frame.drop(columns="target").head(5)
    table.to_csv(tmp_path / "rows.csv", index=False)
    from_file = torchlab.predict(iris, [tmp_path / "rows.csv"]).drop(columns="id")
    for in_memory in (table, table.to_dict("records"), table.to_numpy()):
        pd.testing.assert_frame_equal(
            torchlab.predict(iris, in_memory).drop(columns="id"), from_file
        )

    digits = torchlab.train("digits", quick, output_dir=tmp_path)
    pixels = (load_digits().images[:4] * 255 / 16).astype(np.uint8)
    files = [tmp_path / f"{i}.png" for i in range(4)]
    for image, file in zip(pixels, files, strict=True):
        Image.fromarray(image).save(file)
    from_files = torchlab.predict(digits, files).drop(columns="id")
    images = [Image.fromarray(p) for p in pixels]
    tensors = torch.from_numpy(pixels).float().div(255).unsqueeze(1)
    for in_memory in (images, list(pixels), tensors):
        got = torchlab.predict(digits, in_memory).drop(columns="id")
        pd.testing.assert_frame_equal(got, from_files, atol=1e-5)

    texts = ["good phone, love it", "bad phone, broke"] * 12
    pd.DataFrame({"text": texts, "label": ["good", "bad"] * 12}).to_csv(
        tmp_path / "t.csv", index=False
    )
    source = {"name": "text-csv", "path": str(tmp_path / "t.csv"), "max_length": 16,
              "tokenizer": {"kind": "word", "vocab_size": 50, "min_frequency": 1}}  # fmt: skip
    reviews = torchlab.train(
        "bbc-lstm", {**quick, "data.source": source, "data.split": {"val": 0.25, "test": 0.25}},
        output_dir=tmp_path,
    )  # fmt: skip
    new = ["I love this phone", "it broke"]
    pd.DataFrame({"text": new}).to_csv(tmp_path / "new.csv", index=False)
    from_file = torchlab.predict(reviews, [tmp_path / "new.csv"]).drop(columns="id")
    got = torchlab.predict(reviews, new).drop(columns="id")  # texts, not file names
    pd.testing.assert_frame_equal(got, from_file)
    assert list(got["text"]) == new
    with pytest.raises(DataError, match="does not exist"):
        torchlab.predict(reviews, ["reviews.csv"])  # a file name, missing: not a text
