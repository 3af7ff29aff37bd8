"""A user's own folder of photos, with the bad files real folders hold: trained, reported and
predicted through the command line, and its classical baseline."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import torchlab
from conftest import run_cli
from torchlab.baselines import run_baseline
from torchlab.config import Component, load_config
from torchlab.data.base import SourceContext
from torchlab.models import input_needs
from torchlab.registry import DATASETS

BAD = ("truncated.jpg", "notes.png", "empty.jpg")


def photo_folder(root: Path, per_class: int = 10) -> Path:
    """``root/<china|flower>/NNN.jpg``: 48x48 crops of scikit-learn's two sample photos, plus a
    JPEG cut off mid-download, a text file named .png and an empty .jpg."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    for name, photo in zip(("china", "flower"), load_sample_images().images, strict=True):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            y, x = rng.integers(0, photo.shape[0] - 48), rng.integers(0, photo.shape[1] - 48)
            Image.fromarray(photo[y : y + 48, x : x + 48]).save(root / name / f"{i:03d}.jpg")
    whole = (root / "china" / "000.jpg").read_bytes()
    (root / "china" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "flower" / "notes.png").write_text("shopping list: film, batteries\n")
    (root / "flower" / "empty.jpg").write_bytes(b"")
    return root


def tiny_config(root: Path, **model: object) -> dict[str, object]:
    return {
        "data.source": {"name": "image-folder", "root": str(root), "size": 16},
        "data.batch_size": 8,
        "data.num_workers": 1,
        "data.split": {"val": 0.2, "test": 0.3},
        "model": model or {"name": "cnn", "channels": [4]},
        "trainer.max_epochs": 1,
        "trainer.progress": "none",
        "baseline": None,  # the image source's default
    }


@pytest.mark.e2e  # train, report and predict through the CLI
def test_a_photo_folder_with_bad_files_trains_reports_and_predicts(tmp_path: Path) -> None:
    photos = photo_folder(tmp_path / "photos")
    config = tmp_path / "photos.yaml"  # as a user writes it: no baseline named
    config.write_text(load_config("digits", tiny_config(photos)).to_yaml())

    trained = run_cli("train", str(config), "--output-dir", "runs", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "Traceback" not in trained.stderr
    assert "Skipped 3 of 23 image files" in trained.stderr
    run = next((tmp_path / "runs").glob("*/*"))
    summary = json.loads((run / "summary.json").read_text())
    assert sorted(Path(s["file"]).name for s in summary["skipped_files"]) == sorted(BAD)
    assert sum(summary["sizes"].values()) == 20  # the bad files are in no split
    assert summary["baseline"]["name"] == "image-pixels" and summary["baseline_note"] is None
    report = (run / "report.html").read_text()
    assert "Skipped files" in report and all(name in report for name in BAD)
    assert "is empty (0 bytes)" in (run / "MODEL_CARD.md").read_text()

    failed = run_cli("predict", str(run), "photos/flower", cwd=tmp_path)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    line = failed.stderr.strip().splitlines()[-1]
    assert line.startswith("error: Image 'photos/flower/empty.jpg' is empty (0 bytes)")
    assert "--on-error skip" in line

    folders = ("photos/china", "photos/flower")
    skipped = run_cli("predict", str(run), *folders, "--on-error", "skip", cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    rows = list(csv.DictReader(io.StringIO(skipped.stdout)))
    errors = {Path(r["id"]).name: r["error"] for r in rows if r["error"]}
    assert sorted(errors) == sorted(BAD) and len(rows) == 23
    assert all(r["label"] in ("china", "flower") for r in rows if not r["error"])
    assert all(name in skipped.stderr for name in BAD)  # listed on the console too

    frame = torchlab.predict(run, [photos / "flower"], on_error="skip")  # the Python API
    assert frame["error"].ne("").sum() == 2 and frame["label"].notna().sum() == 10


def image_bundle(root: Path, model: dict[str, object]):  # type: ignore[no-untyped-def]
    config = load_config("digits", tiny_config(root, **model))
    context = SourceContext(0.2, 0.3, True, 0, "categorical", input_needs(config.model))
    return DATASETS.build(config.data.source, "data.source", context)


@pytest.mark.e2e  # trains a run per model kind
@pytest.mark.filterwarnings("ignore:Skipped 3")
def test_image_runs_get_a_pixel_or_backbone_baseline_by_default(tmp_path: Path) -> None:
    photos = photo_folder(tmp_path / "photos")
    scratch = image_bundle(photos, {"name": "cnn", "channels": [4]})
    assert scratch.default_baseline == {"name": "image-pixels"}
    pixels = run_baseline(None, scratch)
    assert pixels.best["name"] == "image-pixels" and 0 <= pixels.best["test/accuracy"] <= 1
    assert pixels.best["fit_images"] + pixels.best["test_images"] == 20

    pretrained = image_bundle(photos, {"name": "mobilenet_v2", "weights": "imagenet"})
    features = run_baseline(None, pretrained)
    assert features.best["name"] == "image-features"
    # The two photos differ in colour and texture: ImageNet features tell them apart.
    assert features.best["test/accuracy"] >= 0.8

    off = run_baseline(Component(name="none"), scratch)
    assert off.best is None and "turns it off" in off.note
    arrays_only = run_baseline(Component(name="svc"), scratch)
    assert arrays_only.best is None and "set baseline: image-pixels" in arrays_only.note
