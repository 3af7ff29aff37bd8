"""The CLI end to end: every recipe trains a few steps, and bad input gets one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits, load_iris

from torchlab.cli import main
from torchlab.config import read_recipe, recipe_names

# Recipes too large to train whole in the suite: the test file named beside each smoke-trains
# it on small settings.
OWN_SMOKE_TEST = {
    "digits-transfer": "test_transfer.py",
    "digits-scratch": "test_transfer.py",
    "shapes-seg": "test_segmentation.py",
    "shapes-det": "test_detection.py",
    "bbc-lstm": "test_text_recipes.py",
    "bbc-transformer": "test_text_recipes.py",
    "bbc-minilm": "test_text_recipes.py",
    "dates": "test_seq2seq.py",
    "dates-transformer": "test_seq2seq.py",
    "bbc-gpt": "test_language_model.py",
    "word2vec-bbc": "test_word2vec.py",
    "co2": "test_forecasting.py",
    "sunspots": "test_forecasting.py",
    "demand": "test_forecasting.py",
    "stock": "test_forecasting.py",
}
# Supervised recipes trained whole for two epochs here; RL recipes (an `agent:` section) have
# their own smoke test, test_rl_recipes.py.
SUPERVISED = [
    name
    for name in recipe_names()
    if "agent" not in read_recipe(name) and name not in OWN_SMOKE_TEST
]

SMOKE = ["trainer.max_epochs=2", "trainer.progress=plain", "--output-dir", "runs"]


def the_run(root: Path, name: str) -> Path:
    (run,) = list((root / "runs" / name).iterdir())
    return run


@pytest.mark.slow  # make test trains through the CLI in test_newcomer.py and test_user_model.py
@pytest.mark.parametrize("recipe", SUPERVISED)
def test_every_recipe_trains_through_the_cli(recipe: str, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("train", recipe, *SMOKE)
    assert result.returncode == 0, result.stderr
    run = the_run(tmp_path, recipe)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2
    assert 1 <= summary["best_epoch"] <= 2  # counted from 1, as the console counts
    assert f"best epoch {summary['best_epoch']} of 2" in result.stdout
    assert summary["baseline"] is not None and summary["baseline"]["name"]
    assert set(summary["test"]) >= {"test/loss"}
    for name in (
        "config.yaml",
        "environment.json",
        "metrics.jsonl",
        "model.safetensors",
        "learning_curves.png",
        "featurizer.json",
        "spec.json",
    ):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert f"Run directory: runs/{recipe}/" in result.stdout


def test_recipes_lists_every_recipe(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("recipes")
    assert result.returncode == 0
    for name in recipe_names():
        assert name in result.stdout


def test_help_and_recipes_do_not_import_torch() -> None:
    code = (
        "import sys; from torchlab.cli import main\n"
        "try: main(['recipes'])\nexcept SystemExit: pass\n"
        "print('torch' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"


def run_main(*args: str) -> int:
    """The CLI's entry point in this process (fast: no interpreter start-up per case)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return int(exit_info.value.code or 0)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "digits", "optim.lrr=0.1"], "Did you mean 'optim.lr'?"),
        (["train", "digits", "model.chanels=[8]"], "model.chanels"),
        (["train", "digits", "optim.lr=fast"], "optim.lr"),
        (["train", "digitz"], "Did you mean 'digits'?"),
        (["train", "missing.yaml"], "missing.yaml"),
        (["train", "digits", "trainer.device=cuda:0"], "trainer.device"),
        (["train", "digits", "model.name=resnet9000"], "Unknown model 'resnet9000'"),
        (["train", "digits", "trainer.precision=16-mixed", "trainer.device=cpu"], "bf16"),
        (["train", "digits", "optim.lr"], "key.path=value"),
        (["evaluate", "nowhere"], "nowhere"),
        (["predict", "nowhere", "x.csv"], "nowhere"),
    ],
)
def test_bad_input_is_one_clear_line(
    args: list[str], needle: str, tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert run_main(*args) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()  # nothing half-written left behind


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["train", "digits", "--bogus"], "No such option: --bogus"), (["trian"], "No such command")],
)
def test_a_usage_error_is_shown_without_a_traceback(args: list[str], needle: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_main(*args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and "--help'." in err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_debug_shows_the_traceback(cli) -> None:  # type: ignore[no-untyped-def]
    for args in (["--debug", "train", "digits"], ["train", "digits", "--debug"]):
        result = cli(*args, "optim.lrr=0.1")
        assert result.returncode != 0 and "Traceback" in result.stderr


def test_a_config_error_leaves_no_run_behind(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert run_main("train", "digits", "model.channels=[8,8,8,8,8]", "--output-dir", "runs") == 2
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # the newcomer suite takes a user's table and photos the same way
def test_predict_and_evaluate_tabular(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("train", "iris", "trainer.max_epochs=30", *SMOKE[1:]).returncode == 0
    run = the_run(tmp_path, "iris")
    iris = load_iris(as_frame=True)
    iris.frame.drop(columns="target").head(20).to_csv(tmp_path / "flowers.csv", index=False)

    result = cli("predict", str(run), "flowers.csv", "-o", "out.csv")
    assert result.returncode == 0, result.stderr
    predictions = pd.read_csv(tmp_path / "out.csv")
    assert len(predictions) == 20
    assert set(predictions["label"]) <= set(iris.target_names)
    probs = predictions[[f"p_{c}" for c in iris.target_names]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (predictions["label"] == np.asarray(iris.target_names)[iris.target[:20]]).mean() > 0.8

    again = cli("predict", str(run), "flowers.csv", "-o", "out.csv")
    assert again.returncode == 2 and "already exists" in again.stderr

    evaluated = cli("evaluate", str(run), "--split", "test")
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert f"{summary['test']['test/accuracy']:.4f}" in evaluated.stdout
    assert f"test metrics of {run}\n" in evaluated.stdout  # the path is never wrapped


@pytest.mark.slow  # the newcomer suite takes a user's table and photos the same way
def test_predict_images_with_digits(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("train", "digits", "trainer.max_epochs=3", *SMOKE[1:]).returncode == 0
    run = the_run(tmp_path, "digits")
    digits = load_digits()
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(30):
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(
            folder / f"{i:02d}-{digits.target[i]}.png"
        )
    (folder / "broken.png").write_bytes(b"not an image")

    broken = cli("predict", str(run), str(folder / "broken.png"))
    assert broken.returncode == 2 and "broken.png" in broken.stderr

    (folder / "broken.png").unlink()
    result = cli("predict", str(run), str(folder))
    assert result.returncode == 0, result.stderr
    rows = pd.read_csv(pd.io.common.StringIO(result.stdout))
    truth = [Path(p).stem.split("-")[1] for p in rows["id"]]
    assert (rows["label"].astype(str) == truth).mean() >= 0.9


def test_tensorboard_reads_the_event_files(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import torchlab

    run = torchlab.train(
        "digits",
        {"trainer.max_epochs": 2, "trainer.log_every_n_steps": 5, "trainer.progress": "none"},
        output_dir=tmp_path,
    )
    events = EventAccumulator(str(run.dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_step", "val/loss", "val/accuracy", "lr", "grad_norm"} <= tags
    assert len(events.Scalars("val/accuracy")) == 2
    assert events.Scalars("val/accuracy")[-1].value == pytest.approx(
        run.history[-1]["val/accuracy"]
    )
