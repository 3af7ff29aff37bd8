"""torchlab explain: attributions of real runs' predictions on users' own files, and the
completeness of integrated gradients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import torchlab
from torchlab.errors import ConfigError

pytest.importorskip("captum", reason="captum is not installed (pip install -e '.[explain]')")

QUICK = {"trainer.max_epochs": 2, "trainer.progress": "none", "data.num_workers": 0}


def customers(rows: int, seed: int) -> pd.DataFrame:
    """Customers as a shop exports them: a city, blanks in age, and whether they bought."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["paris", "lyon", "nice"], rows)
    income = rng.normal(50, 15, rows).round(1)
    age = rng.integers(18, 80, rows).astype(float)
    age[rng.random(rows) < 0.1] = np.nan
    bought = (income + 20 * (city == "paris") + rng.normal(0, 5, rows)) > 60
    return pd.DataFrame(
        {"customer_id": np.arange(rows), "city": city, "age": age, "income": income,
         "bought": np.where(bought, "yes", "no")}
    )  # fmt: skip


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("shop")
    customers(240, seed=0).to_csv(folder / "customers.csv", index=False)
    source = {"name": "csv", "path": str(folder / "customers.csv"), "target": "bought",
              "drop": ["customer_id"]}  # fmt: skip
    overrides = {**QUICK, "data.source": source, "report.slices": ["city", "age"]}
    return torchlab.train("iris", overrides, output_dir=folder / "runs")


def test_integrated_gradients_are_complete_and_sum_one_hot_columns(table_run: Any) -> None:
    from torchlab.report.attribution import explained_targets, table_attributions

    model, featurizer = table_run.load_model(), table_run.featurizer
    inputs = featurizer.transform(customers(40, seed=1))
    with torch.no_grad():
        outputs = model(inputs)
        reference = model(torch.zeros_like(inputs))  # the baseline: training means, no city
    targets = explained_targets(outputs, "categorical")
    attr = table_attributions(model, inputs, targets, featurizer, steps=64)
    assert attr.shape == (40, 3)  # city (three one-hot features), age, income
    gained = (outputs - reference).gather(1, targets[:, None]).squeeze(1)
    # completeness: each row's attributions sum to f(x) - f(baseline)
    torch.testing.assert_close(attr.sum(1), gained, atol=2e-3, rtol=2e-2)
    occluded = table_attributions(model, inputs, targets, featurizer, method="occlusion")
    # occluding a column replaces it with the baseline: its effect, not a sum over features
    city = inputs.clone()
    city[:, :3] = 0
    with torch.no_grad():
        expected = (outputs - model(city)).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(occluded[:, 0], expected, atol=1e-5, rtol=1e-4)


def test_integrated_gradients_of_an_image_model_are_complete() -> None:
    from torchlab.config import Component
    from torchlab.data.base import DataSpec
    from torchlab.models import build_model
    from torchlab.report.attribution import image_attributions

    torch.manual_seed(0)
    spec = DataSpec((1, 8, 8), "categorical", class_names=tuple("0123"))
    model = build_model(Component(name="cnn", channels=[4]), spec, 4).eval()
    images = torch.randn(3, 1, 8, 8)
    targets = torch.tensor([0, 2, 3])
    attr = image_attributions(model, images, targets, steps=64)
    assert attr.shape == (3, 8, 8)
    with torch.no_grad():
        gained = (model(images) - model(torch.zeros_like(images)))[torch.arange(3), targets]
    torch.testing.assert_close(attr.sum((1, 2)), gained, atol=2e-3, rtol=2e-2)


@pytest.mark.e2e  # a CLI process
def test_explain_a_csv_from_the_command_line(table_run: Any, cli: Any, tmp_path: Path) -> None:
    new = customers(6, seed=2).drop(columns=["bought"])
    new.loc[0, "city"] = "marseille"  # a city not seen in training
    new.to_csv(tmp_path / "new.csv", index=False)
    done = cli("explain", str(table_run.dir), "new.csv", "--output", "why")
    assert done.returncode == 0, done.stderr
    assert "Explained 6 inputs in" in done.stdout and "attributions.csv" in done.stdout
    attributions = pd.read_csv(tmp_path / "why" / "attributions.csv")
    assert list(attributions.columns) == ["id", "prediction", "city", "age", "income"]
    assert attributions["id"].tolist() == [f"new.csv:{i}" for i in range(6)]
    predicted = torchlab.predict(table_run.dir, [tmp_path / "new.csv"])
    assert attributions["prediction"].tolist() == predicted["label"].tolist()
    importance = pd.read_csv(tmp_path / "why" / "importance.csv")
    assert set(importance["column"]) == {"city", "age", "income"}
    for column in ("mean_abs_attribution", "permutation_importance",
                   "permutation_importance_logistic_regression"):  # fmt: skip
        assert importance[column].notna().all(), column
    mean_abs = attributions[["city", "age", "income"]].abs().mean()
    np.testing.assert_allclose(
        importance.set_index("column")["mean_abs_attribution"][mean_abs.index], mean_abs, rtol=1e-5
    )
    # income and city decide who buys, age does not: the fully fitted baseline sees it
    by_column = importance.set_index("column")["permutation_importance_logistic_regression"]
    assert by_column["income"] > by_column["age"] and by_column["city"] > by_column["age"]
    assert (tmp_path / "why" / "importance.png").read_bytes()[:4] == b"\x89PNG"


def test_explain_rows_in_memory_by_occlusion(table_run: Any, tmp_path: Path) -> None:
    rows = customers(4, seed=3).drop(columns=["bought"])
    result = torchlab.explain(table_run, rows, method="occlusion", output=tmp_path)
    assert result.kind == "tabular" and result.ids == ["0", "1", "2", "3"]
    assert list(result.attributions.columns) == ["id", "prediction", "city", "age", "income"]
    assert (tmp_path / "attributions.csv").is_file()


@pytest.mark.e2e  # CLI processes
def test_explain_refuses_what_it_cannot_explain(table_run: Any, tmp_path: Path, cli: Any) -> None:
    from torchlab.config import show

    with pytest.raises(ConfigError, match="Unknown explanation method 'saliency'; use one of"):
        torchlab.explain(table_run, customers(2, seed=4), method="saliency")
    for recipe in ("cartpole-ppo", "shapes-det"):  # an RL run, a detection run
        folder = tmp_path / recipe
        folder.mkdir()
        (folder / "config.yaml").write_text(show(recipe, []))
        with pytest.raises(ConfigError, match="torchlab explain supports classification and regression runs on tables, texts and images"):  # fmt: skip
            torchlab.explain(folder, [])
    done = cli("explain", str(tmp_path / "cartpole-ppo"), "x.csv")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        done.stderr.startswith("error: torchlab explain supports") and "is a rl run" in done.stderr
    )
    assert len(done.stderr.strip().splitlines()) == 1


def test_explain_images_read_from_files(tmp_path: Path) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    small = {**QUICK, "trainer.max_epochs": 1, "data.source.per_class": 10,
             "model.channels": [4], "baseline": None}  # fmt: skip
    run = torchlab.train("digits", small, output_dir=tmp_path / "runs")
    digits = load_digits()
    (tmp_path / "scans").mkdir()
    for i in range(3):
        Image.fromarray((digits.images[i] * 15).astype(np.uint8)).save(
            tmp_path / "scans" / f"{i}.png"
        )
    for method in ("integrated-gradients", "occlusion"):
        result = torchlab.explain(
            run, [tmp_path / "scans"], method=method, output=tmp_path / method
        )
        assert result.attributions.shape == (3, 8, 8)
        assert [p.name for p in result.files] == ["000-0.png", "001-1.png", "002-2.png"]
        assert all(p.read_bytes()[:4] == b"\x89PNG" for p in result.files)
    html = (run.dir / "report.html").read_text()
    assert 'alt="Integrated gradients of the first test images"' in html
    assert 'alt="Worst test predictions"' in html


TEXTS = {
    "business": ["Shares rose as the bank reported record profits",
                 "The market fell after weak company earnings",
                 "Investors bought bonds as interest rates dropped"],
    "sport": ["The striker scored twice in the cup final",
              "The team won the match after extra time",
              "Fans cheered as the runner broke the record"],
}  # fmt: skip


@pytest.mark.slow
def test_explain_texts_highlights_tokens(tmp_path: Path) -> None:
    rows = [(t, label) for label, texts in TEXTS.items() for t in texts] * 6
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "news.csv", index=False)
    source = {
        "name": "text-csv",
        "path": str(tmp_path / "news.csv"),
        "max_length": 16,
        "tokenizer": {"kind": "wordpiece", "vocab_size": 200, "min_frequency": 1},
    }
    overrides = {**QUICK, "data.source": source, "model.embedding_dim": 8, "model.hidden": 8,
                 "baseline": "none"}  # fmt: skip
    run = torchlab.train("bbc-lstm", overrides, output_dir=tmp_path / "runs")
    result = torchlab.explain(run, ["The bank reported profits", "The team scored"])
    page = (run.dir / "explanations" / "tokens.html").read_text()
    assert [t for t, _ in result.attributions[0]] == ["the", "bank", "reported", "profits"]
    assert page.count('<span style="background: rgba(') == 4 + 3
    assert "http" not in page.replace("http-equiv", "")  # self-contained
    report = (run.dir / "report.html").read_text()
    assert "Explanations" in report and 'class="tokens"' in report
    assert "Worst test predictions" in report
    with pytest.raises(ConfigError, match="Method 'occlusion' explains table and image runs"):
        torchlab.explain(run, ["The bank"], method="occlusion")
