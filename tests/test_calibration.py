"""Calibration of classifiers (ECE, Brier, temperature scaling) and conformal prediction
intervals of regressors: the maths on synthetic data, then real runs that train, report,
predict, export and serve with them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import brier_score_loss
from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

import torchlab
from conftest import run_cli
from serving import LiveServer
from torchlab.errors import ConfigError, ExportError, RunError
from torchlab.tasks.calibration import (
    brier_score,
    conformal_half_widths,
    fewest_samples,
    fit_temperature,
    interval_coverage,
    reliability,
)
from torchlab.training.callbacks import Callback

QUICK = {"trainer.progress": "none", "baseline": None}

# --- the maths -----------------------------------------------------------------------------


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_conformal_intervals_cover_as_promised_over_many_repeats(coverage: float) -> None:
    """Split conformal: over repeated calibration and test draws, the share of test targets
    inside ``prediction +- q`` is the nominal coverage (it may exceed it by 1/(n+1))."""
    rng = np.random.default_rng(0)
    repeats, n, m = 2000, 200, 200
    # a heteroscedastic, heavy-tailed error no Gaussian interval would get right
    errors = rng.standard_t(3, size=(repeats, n + m)) * rng.uniform(0.5, 2, size=(repeats, n + m))
    measured = []
    for calibration, test in zip(errors[:, :n], errors[:, n:], strict=True):
        half = conformal_half_widths(np.abs(calibration), coverage)
        measured.append(interval_coverage(np.zeros(m), test, half)[0])
    assert abs(np.mean(measured) - coverage) < 0.03
    assert np.mean(measured) >= coverage - 0.005  # the guarantee is a lower bound


def test_conformal_quantile_is_the_rank_the_guarantee_needs() -> None:
    residuals = np.arange(1, 20, dtype=float)  # n = 19: rank ceil(20 * 0.9) = 18
    assert conformal_half_widths(residuals, 0.9).tolist() == [18.0]
    two_targets = np.stack([residuals, 10 * residuals], axis=1)
    assert conformal_half_widths(two_targets, 0.9).tolist() == [18.0, 180.0]
    assert conformal_half_widths(residuals[:8], 0.9).tolist() == [np.inf]  # 9 needed
    assert fewest_samples(0.9) == 9 and np.isfinite(conformal_half_widths(residuals[:9], 0.9)).all()
    assert conformal_half_widths(np.arange(1, 10.0), 0.7).tolist() == [7.0]  # 10 * 0.7 is 7


def test_ece_and_brier_agree_with_torchmetrics_and_scikit_learn() -> None:
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(500, 4, generator=generator), -1)
    target = torch.randint(0, 4, (500,), generator=generator)
    expected = MulticlassCalibrationError(num_classes=4, n_bins=10)(probs, target)
    assert reliability(probs.numpy(), target.numpy()).ece == pytest.approx(
        float(expected), abs=1e-6
    )
    onehot = torch.nn.functional.one_hot(target, 4).float()
    assert brier_score(probs, target).mean() == pytest.approx(
        float(((probs - onehot) ** 2).sum(1).mean())
    )

    positive = torch.rand(500, generator=generator)
    labels = (torch.rand(500, generator=generator) < positive**2).long()
    expected = BinaryCalibrationError(n_bins=10)(positive, labels)
    assert reliability(positive.numpy(), labels.numpy()).ece == pytest.approx(
        float(expected), abs=1e-6
    )
    sklearn_brier = brier_score_loss(labels.numpy(), positive.numpy())
    assert float(brier_score(positive, labels).mean()) == pytest.approx(sklearn_brier, rel=1e-5)


@pytest.mark.parametrize("binary", [False, True])
def test_temperature_scaling_undoes_overconfident_logits(binary: bool) -> None:
    """Labels drawn from softmax(z) are calibrated for z; logits 4z are overconfident, and the
    fitted temperature brings them back: T near 4, ECE and NLL down."""
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(4000, 1 if binary else 5, generator=generator)
    if binary:
        z = z.squeeze(1)
        target = (torch.rand(4000, generator=generator) < torch.sigmoid(z)).long()
        probs = torch.sigmoid
    else:
        target = torch.multinomial(torch.softmax(z, -1), 1, generator=generator).squeeze(1)
        probs = lambda logits: torch.softmax(logits, -1)  # noqa: E731
    temperature = fit_temperature(4 * z, target, binary)
    assert temperature == pytest.approx(4, rel=0.1)
    before = reliability(probs(4 * z).numpy(), target.numpy()).ece
    after = reliability(probs(4 * z / temperature).numpy(), target.numpy()).ece
    assert after < before / 3


# --- refusing what a task cannot use ------------------------------------------------------


@pytest.mark.slow  # a subprocess importing torch
def test_calibration_is_refused_for_a_task_without_class_probabilities(tmp_path: Path) -> None:
    done = run_cli("train", "diabetes", "task.calibrate=temperature", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: task.calibrate: temperature") and "'regression'" in line
    assert not (tmp_path / "runs").exists()  # refused before any run folder


def test_intervals_are_refused_for_a_classifier(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"task.intervals .* not of task 'classification'"):
        torchlab.train("iris", {**QUICK, "task.intervals": {"coverage": 0.9}}, output_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"task\.calibrate"):
        torchlab.train("iris", {"task.calibrate": "platt"}, output_dir=tmp_path)


# --- a classifier made overconfident, calibrated ------------------------------------------


class Overconfident(Callback):
    """Multiplies the output layer by 8 after the last epoch, so the best weights the run
    keeps (by the training loss, measured before) give logits eight times too large:
    confident far beyond their accuracy."""

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        if trainer.state.epoch < trainer.config.max_epochs:  # counted from 1 once it ends
            return
        head = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            head.weight.mul_(8)
            head.bias.mul_(8)


def card_rows(run: Any) -> dict[str, list[float]]:
    """The calibration table of the model card: probabilities -> [ECE, Brier]."""
    card = (run.dir / "MODEL_CARD.md").read_text()
    section = card.split("## Calibration (test split)")[1].split("## Limitations")[0]
    rows = re.findall(r"^\| ([^|]+?) \| ([\d.]+) \| ([\d.]+) \|$", section, re.M)
    return {name: [float(ece), float(brier)] for name, ece, brier in rows}


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    overrides = {**QUICK, "trainer.max_epochs": 8, "trainer.monitor": "train/loss",
                 "model.dropout": 0.0, "model.batch_norm": False, "data.split.val": 0.3,
                 "task.calibrate": "temperature"}  # fmt: skip
    return torchlab.train(
        "breast-cancer",
        overrides,
        output_dir=tmp_path_factory.mktemp("runs"),
        callbacks=[Overconfident()],
    )


@pytest.mark.slow
def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model(calibrated_run: Any) -> None:
    record = json.loads((calibrated_run.dir / "calibration.json").read_text())
    assert record["temperature"] > 2
    val = record["val"]
    assert val["nll_after"] < val["nll_before"] and val["ece_after"] < val["ece_before"]
    # the test split: the summary's metrics are the calibrated model's
    rows = card_rows(calibrated_run)
    before = rows["before (as trained)"]
    after = rows[f"after (temperature {record['temperature']:.3g})"]
    test = calibrated_run.summary["test"]
    assert after == pytest.approx([test["test/ece"], test["test/brier"]], abs=1e-4)
    assert after[0] < before[0] and after[1] < before[1]
    assert calibrated_run.summary["calibration"] == record
    html = (calibrated_run.dir / "report.html").read_text()
    assert 'id="calibration"' in html and "Reliability diagram (test, 10 bins)" in html
    # evaluate sees the calibrated model too
    assert torchlab.evaluate(calibrated_run.dir)["test/ece"] == pytest.approx(test["test/ece"])


@pytest.mark.slow
def test_the_temperature_travels_into_exports(calibrated_run: Any) -> None:
    from torchlab.engine.experiment import load_trained

    rows = load_breast_cancer(as_frame=True).frame.drop(columns="target").head(20)
    from_run = torchlab.predict(calibrated_run.dir, rows)
    raw = load_trained(calibrated_run, calibrated=False)
    inputs = calibrated_run.featurizer.transform(rows)
    temperature = json.loads((calibrated_run.dir / "calibration.json").read_text())["temperature"]
    with torch.no_grad():
        expected = torch.softmax(raw(inputs) / temperature, -1).numpy()
    probability_columns = [c for c in from_run.columns if c.startswith("p_")]
    np.testing.assert_allclose(from_run[probability_columns].to_numpy(), expected, atol=1e-5)
    assert not np.allclose(expected, torch.softmax(raw(inputs), -1).detach().numpy(), atol=1e-3)

    folder = torchlab.export(calibrated_run, "onnx")  # verified against the calibrated model
    sidecar = json.loads((folder / "export.json").read_text())
    assert sidecar["calibration"]["temperature"] == temperature
    assert sidecar["verification"]["label_agreement"] == 1.0
    from_export = torchlab.predict(folder, rows)
    np.testing.assert_allclose(from_export[probability_columns].to_numpy(), expected, atol=1e-5)


@pytest.mark.slow
def test_a_multilabel_classifier_is_calibrated_per_label(tmp_path: Path) -> None:
    """Every label of every sample is one binary prediction: one temperature for them all,
    ECE and Brier over them, and the temperature in the export."""
    frame = load_breast_cancer(as_frame=True).frame
    frame["malignant"] = 1 - frame.pop("target")
    frame["large"] = (frame["mean radius"] > frame["mean radius"].median()).astype(int)
    frame.to_csv(tmp_path / "biopsies.csv", index=False)
    (tmp_path / "labels.yaml").write_text(
        "extends: breast-cancer\n"
        f"data:\n  source: {{name: csv, path: {tmp_path / 'biopsies.csv'}, "
        "target: [malignant, large]}\n"
        "  split: {val: 0.3, test: 0.2}\n"
        "model: {dropout: 0.0, batch_norm: false}\n"
        "task: {name: multilabel, calibrate: temperature}\n"
        "trainer: {max_epochs: 8, monitor: train/loss, progress: none}\n"
        "baseline: null\n"
    )
    run = torchlab.train(tmp_path / "labels.yaml", output_dir=tmp_path, callbacks=[Overconfident()])
    record = json.loads((run.dir / "calibration.json").read_text())
    assert record["temperature"] > 2 and record["val"]["ece_after"] < record["val"]["ece_before"]
    rows = card_rows(run)
    before = rows["before (as trained)"]
    after = rows[f"after (temperature {record['temperature']:.3g})"]
    assert after == pytest.approx(
        [run.summary["test"]["test/ece"], run.summary["test"]["test/brier"]], abs=1e-4
    )
    assert after[0] < before[0]
    assert "Reliability diagram (test, 10 bins)" in (run.dir / "report.html").read_text()

    features = frame.drop(columns=["malignant", "large"]).head(10)
    from_run = torchlab.predict(run.dir, features)
    from_export = torchlab.predict(torchlab.export(run, "onnx"), features)
    columns = ["p_malignant", "p_large"]
    np.testing.assert_allclose(from_export[columns], from_run[columns], atol=1e-5)


# --- regression intervals -----------------------------------------------------------------


@pytest.fixture(scope="module")
def interval_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    overrides = {**QUICK, "trainer.max_epochs": 3, "task.intervals": {"coverage": 0.8}}
    return torchlab.train("diabetes", overrides, output_dir=tmp_path_factory.mktemp("runs"))


def test_intervals_are_fitted_reported_and_predicted(interval_run: Any) -> None:
    record = json.loads((interval_run.dir / "calibration.json").read_text())["intervals"]
    sizes = json.loads((interval_run.dir / "data.json").read_text())["sizes"]
    assert record["coverage"] == 0.8 and record["fitted_on"]["samples"] == sizes["val"]
    half = record["half_widths"]["target"]
    assert half > 0
    test = interval_run.summary["test"]
    assert 0.6 < test["test/interval_coverage"] <= 1
    assert test["test/interval_width"] == pytest.approx(2 * half)
    html = (interval_run.dir / "report.html").read_text()
    assert 'id="calibration"' in html and "test coverage" in html and "nominal coverage" in html
    assert f"{test['test/interval_coverage']:.4f}" in html

    rows = load_diabetes(as_frame=True).frame.drop(columns="target").head(5)
    frame = torchlab.predict(interval_run.dir, rows)
    assert list(frame.columns) == ["id", "prediction_target", "lower_target", "upper_target"]
    np.testing.assert_allclose(frame["upper_target"] - frame["prediction_target"], half, rtol=1e-5)
    np.testing.assert_allclose(frame["prediction_target"] - frame["lower_target"], half, rtol=1e-5)


@pytest.mark.slow
def test_intervals_come_from_export_folders_and_the_server(interval_run: Any) -> None:
    from torchlab.engine.predict import load_predictor
    from torchlab.serve import ServeSettings, create_app

    rows = load_diabetes(as_frame=True).frame.drop(columns="target").head(4)
    from_run = torchlab.predict(interval_run.dir, rows)
    folder = torchlab.export(interval_run, "onnx")
    sidecar = json.loads((folder / "export.json").read_text())
    assert sidecar["calibration"]["intervals"]["coverage"] == 0.8
    from_export = torchlab.predict(folder, rows)
    pd.testing.assert_frame_equal(from_run, from_export, atol=1e-3)

    with LiveServer(create_app(load_predictor(folder), ServeSettings())) as client:
        answer = client.post("/predict", json={"rows": rows.to_dict("records")})
        metadata = client.get("/metadata").json()
    assert answer.status_code == 200, answer.text
    first = answer.json()["predictions"][0]
    assert set(first) == {"prediction", "lower", "upper"}
    assert first["lower"]["target"] == pytest.approx(from_run["lower_target"][0], abs=1e-3)
    assert first["upper"]["target"] == pytest.approx(from_run["upper_target"][0], abs=1e-3)
    assert (
        metadata["calibration"]["intervals"]["half_widths"]
        == sidecar["calibration"]["intervals"]["half_widths"]
    )


def test_a_damaged_calibration_record_is_refused(interval_run: Any, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(interval_run.dir, tmp_path / "run"))
    damaged = {"intervals": {"half_widths": {"target": -1}}}
    (copy / "calibration.json").write_text(json.dumps(damaged))
    rows = load_diabetes(as_frame=True).frame.drop(columns="target").head(2)
    with pytest.raises(ExportError, match=r"calibration\.json' are damaged"):
        torchlab.predict(copy, rows)
    (copy / "calibration.json").write_text(json.dumps({"temperature": "hot"}))
    with pytest.raises(RunError, match=r"calibration\.json' holds no valid temperature"):
        torchlab.predict(copy, rows)


# --- forecast intervals ---------------------------------------------------------------------


def test_conformal_bands_bound_point_and_quantile_forecasts() -> None:
    from torchlab.models.calibrated import ConformalBands

    point = torch.randn(4, 3, 2)
    widths = torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    banded = ConformalBands(lambda inputs: inputs, widths)(point)  # type: ignore[arg-type]
    assert banded.shape == (4, 3, 2, 3)
    torch.testing.assert_close(banded[..., 1], point)
    torch.testing.assert_close(banded[..., 2] - banded[..., 1], widths.expand(4, 3, 2))

    # Quantile heads move out by a positive width and in by a negative one, never past the point.
    heads = torch.stack([point - 1, point, point + 1], dim=-1)
    wider = ConformalBands(lambda inputs: inputs, widths, middle=1)(heads)  # type: ignore[arg-type]
    torch.testing.assert_close(wider[..., 0], point - 1 - widths)
    narrower = ConformalBands(lambda inputs: inputs, -5 * torch.ones(3, 2), middle=1)(heads)  # type: ignore[arg-type]
    torch.testing.assert_close(narrower[..., 0], point)
    torch.testing.assert_close(narrower[..., 2], point)


def test_quantile_scores_conformalize_heads_that_cover_too_little() -> None:
    """Heads covering 50% become a band covering the nominal 90% over many repeats."""
    from torchlab.engine.calibration import forecast_scores
    from torchlab.tasks.calibration import conformal_quantiles

    generator = np.random.default_rng(0)
    shares = []
    for _ in range(200):
        noise = generator.standard_normal((300, 2, 1)) * np.array([1.0, 3.0])[None, :, None]
        heads = (
            torch.tensor([-0.674, 0.0, 0.674])[None, None, None, :]
            * torch.tensor([1.0, 3.0])[None, :, None, None]
        )
        calibration, test = torch.from_numpy(noise[:200]), torch.from_numpy(noise[200:])
        scores = forecast_scores(heads.expand(200, 2, 1, 3).double(), calibration, quantile=True)
        widths = conformal_quantiles(scores.reshape(200, -1).numpy(), 0.9).reshape(2, 1)
        lower, upper = heads[..., 0] - widths, heads[..., 2] + widths
        shares.append(((test >= lower) & (test <= upper)).double().mean().item())
    assert abs(np.mean(shares) - 0.9) < 0.03


@pytest.fixture(scope="module")
def band_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    overrides = {
        **QUICK, "trainer.max_epochs": 5, "task.loss": "mse", "task.intervals": {"coverage": 0.8}
    }  # fmt: skip
    return torchlab.train("co2", overrides, output_dir=tmp_path_factory.mktemp("runs"))


def test_forecast_intervals_come_from_a_rolling_backtest_over_validation(band_run: Any) -> None:
    record = json.loads((band_run.dir / "calibration.json").read_text())["forecast_intervals"]
    widths = np.array(record["widths"])
    # co2 validates on 48 months with a 24-month horizon: 25 origins, one per month.
    assert record["fitted_on"] == {"split": "val", "origins": 25}
    assert widths.shape == (24, 1) and (widths > 0).all()
    assert widths[-6:].mean() > widths[:6].mean()  # errors grow with the horizon
    test = band_run.summary["test"]
    assert 0 <= test["test/interval_coverage"] <= 1 and test["test/interval_width"] > 0
    html = (band_run.dir / "report.html").read_text()
    assert "Test coverage per horizon step" in html and "25 validation origins" in html

    frame = torchlab.predict(band_run, [], horizon=24)
    assert (frame["lower_co2"] < frame["forecast_co2"]).all()
    assert (frame["forecast_co2"] < frame["upper_co2"]).all()
    scale = band_run.featurizer.tails[0].scalers["target"]["scale"][0]
    np.testing.assert_allclose(
        frame["upper_co2"] - frame["forecast_co2"], widths[:, 0] * scale, rtol=1e-4
    )


@pytest.mark.slow
def test_forecast_intervals_travel_into_exports_and_the_server(band_run: Any) -> None:
    from torchlab.engine.predict import load_predictor
    from torchlab.serve import ServeSettings, create_app

    folder = torchlab.export(band_run, "onnx")  # verified against the eager model with bands
    sidecar = json.loads((folder / "export.json").read_text())
    assert sidecar["output"]["shape"] == ["batch", 24, 1, 3]
    assert sidecar["calibration"]["forecast_intervals"]["coverage"] == 0.8

    expected = torchlab.predict(band_run, [], horizon=24)
    tail = band_run.featurizer.tails[0]
    body = {
        "series": [
            {"timestamps": list(tail.index), "history": {"co2": [row[0] for row in tail.target]}}
        ]
    }
    with LiveServer(create_app(load_predictor(band_run.dir), ServeSettings())) as client:
        answer = client.post("/predict", json=body)
    assert answer.status_code == 200, answer.text
    served = answer.json()["predictions"][0]
    for kind in ("forecast", "lower", "upper"):
        np.testing.assert_allclose(served[kind]["co2"], expected[f"{kind}_co2"], rtol=1e-6)


def test_damaged_forecast_widths_are_refused(band_run: Any, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(band_run.dir, tmp_path / "run"))
    record = json.loads((copy / "calibration.json").read_text())
    record["forecast_intervals"]["widths"] = [["wide"]]
    (copy / "calibration.json").write_text(json.dumps(record))
    with pytest.raises(RunError, match=r"holds no valid forecast interval widths"):
        torchlab.predict(copy, [], horizon=3)
