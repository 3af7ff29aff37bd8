"""Smoke runs of the text classification recipes: train, test, baseline, predict on new texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import torchlab
from torchlab.run import Run

SMOKE = [
    "trainer.max_epochs=1",
    "trainer.progress=none",
    "data.source.limit=120",
    "data.source.max_length=48",
    "data.batch_size=16",
    "data.num_workers=0",
]
NEW_TEXTS = (
    "text\n"
    '"Shares fell sharply after the bank cut its profit forecast."\n'
    '"The striker scored twice as the club won the cup final."\n'
    '"The new phone has a faster chip and a better camera."\n'
)


def check_run(run: Run, tmp_path: Path) -> Any:
    summary = run.summary
    accuracy = summary["test"]["test/accuracy"]
    assert 0.0 <= accuracy <= 1.0
    assert summary["baseline"]["name"] == "tfidf_svm"
    assert summary["baseline"]["test/accuracy"] > 0.5  # TF-IDF on 120 articles: far above 0.2
    assert (run.dir / "tokenizer.json").is_file()
    assert run.spec.class_names == ("business", "entertainment", "politics", "sports", "tech")

    texts = tmp_path / "texts.csv"
    texts.write_text(NEW_TEXTS)
    frame = torchlab.predict(run.dir, [texts], output=tmp_path / "predictions.csv")
    assert list(frame["id"]) == ["texts.csv:0", "texts.csv:1", "texts.csv:2"]
    assert set(frame["label"]) <= set(run.spec.class_names)
    probabilities = frame[[f"p_{c}" for c in run.spec.class_names]].to_numpy()
    assert probabilities.sum(axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert (tmp_path / "predictions.csv").is_file()
    return frame


def check_serving(run: Run, expected: Any) -> None:
    """``POST /predict {"texts": [...]}`` answers what ``torchlab.predict`` wrote."""
    from fastapi.testclient import TestClient

    from torchlab.engine.predict import load_predictor
    from torchlab.serve import ServeSettings, create_app

    texts = [line.strip('"') for line in NEW_TEXTS.splitlines()[1:]]
    with TestClient(create_app(load_predictor(run.dir), ServeSettings())) as client:
        answer = client.post("/predict", json={"texts": texts})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["label"] for p in predictions] == list(expected["label"])
        for prediction, (_, row) in zip(predictions, expected.iterrows(), strict=True):
            for name, p in prediction["probabilities"].items():
                assert p == pytest.approx(row[f"p_{name}"], abs=1e-5)
        bad = client.post("/predict", json={"texts": ["fine", "  "]})
        assert 400 <= bad.status_code < 500 and "'texts.1' is empty" in bad.text


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["bbc-lstm", "bbc-transformer"])
def test_scratch_recipe_smoke(recipe: str, tmp_path: Path) -> None:
    run = torchlab.train(recipe, SMOKE, output_dir=tmp_path / "runs")
    expected = check_run(run, tmp_path)
    check_serving(run, expected)
    # The saved tokenizer is the one trained on the run's training split.
    assert run.featurizer.tokenizer.vocab_size == run.spec.vocab_size
    if recipe == "bbc-transformer":  # ONNX takes bare ids; the export carries the tokenizer
        exported = torchlab.export(run, "onnx", output=tmp_path / "onnx")
        assert (exported / "tokenizer.json").is_file()
        again = torchlab.predict(exported, [tmp_path / "texts.csv"])
        assert list(again["label"]) == list(expected["label"])
        columns = [f"p_{c}" for c in run.spec.class_names]
        assert again[columns].to_numpy() == pytest.approx(expected[columns].to_numpy(), abs=1e-4)


@pytest.mark.slow
def test_minilm_recipe_fine_tunes_the_pretrained_encoder(tmp_path: Path) -> None:
    from transformers import AutoModel

    from torchlab.data.text.tokenization import pretrained_directory

    run = torchlab.train(
        "bbc-minilm",
        [*SMOKE, "data.source.limit=60", "data.source.max_length=32", "model.window=16"],
        output_dir=tmp_path / "runs",
    )  # fmt: skip
    assert run.summary["steps"] >= 3  # real optimisation steps on the real encoder
    check_run(run, tmp_path)
    assert run.featurizer.tokenizer.kind == "pretrained"
    tuned = run.load_model().encoder.state_dict()
    original = AutoModel.from_pretrained(str(pretrained_directory("minilm"))).state_dict()
    name = "encoder.layer.5.output.dense.weight"
    assert not torch.equal(tuned[name], original[name])  # fine-tuning moved the weights


@pytest.mark.slow
def test_rebuilding_a_run_reads_its_saved_tokenizer(tmp_path: Path) -> None:
    """Evaluate, resume and reports rebuild the data from the run's tokenizer.json."""
    from torchlab.data.text.tokenization import TextTokenizer
    from torchlab.engine.experiment import build_experiment

    run = torchlab.train("bbc-transformer", SMOKE, output_dir=tmp_path / "runs")
    again = torchlab.evaluate(run.dir)
    assert again["test/accuracy"] == pytest.approx(run.summary["test"]["test/accuracy"])

    saved = TextTokenizer.load(run.dir / "tokenizer.json")
    saved._tok.add_special_tokens(["[NOTE]"])  # a mark that retraining would not produce
    saved.save(run.dir / "tokenizer.json")
    rebuilt = build_experiment(run.config, run.dir).bundle
    assert rebuilt.spec.vocab_size == run.spec.vocab_size + 1
    assert rebuilt.featurizer.tokenizer.token_to_id("[NOTE]") == run.spec.vocab_size
    fresh = build_experiment(run.config).bundle  # a new run trains its own
    assert fresh.spec.vocab_size == run.spec.vocab_size
