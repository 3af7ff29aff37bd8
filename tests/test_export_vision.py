"""Export of torchvision segmentation heads and detectors: parity, refusals, and trained
shapes runs exported and predicting like the run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import torchlab
from torchlab import api
from torchlab.config import Component
from torchlab.data.base import DataSpec
from torchlab.errors import ExportError
from torchlab.exporters.base import exporter
from torchlab.exporters.detection import (
    DetectorOnBatch,
    SceneKind,
    check_format,
    compare_detections,
)
from torchlab.exporters.inputs import input_kind
from torchlab.exporters.verify import FLOAT, verify
from torchlab.models import build_model
from torchlab.registry import MODELS
from torchlab.testing import shapes_smoke

SEG_SPEC = DataSpec((3, 64, 64), "categorical", class_names=("bg", "a", "b"))
DET_SPEC = DataSpec((3, 64, 64), "categorical", class_names=("background", "a", "b", "c"))
SEG_HEADS = [
    n
    for n in MODELS.names()
    if MODELS.get(n).builder.__module__.endswith("vision.segmentation_heads")
]
GRAPH_FORMATS = ("torchscript", "onnx", "exported-program")
# One quick case stays in the fast suite; every other one takes over 10 s on two cores. The
# ResNet-50 heads (30-45 s per format) run in ONNX only, the format built on torch.export.
QUICK = ("deeplabv3_mobilenet_v2", "torchscript")
HEAVY = {"fcn_resnet50", "deeplabv3_resnet50"}


@pytest.mark.parametrize(
    ("name", "format"),
    [
        pytest.param(n, f, marks=() if (n, f) == QUICK else pytest.mark.slow)
        for n in SEG_HEADS
        for f in GRAPH_FORMATS
        if n not in HEAVY or f == "onnx"
    ],
)
def test_segmentation_heads_export_with_parity(name: str, format: str, tmp_path: Path) -> None:
    """Contract over the registered torchvision heads: per-pixel logits match eager."""
    torch.manual_seed(0)
    model = build_model(Component(name=name, weights_backbone="none"), SEG_SPEC, 3).eval()
    kind, chosen = input_kind("pixels"), exporter(format)
    path = tmp_path / f"model{Path(chosen.filename).suffix}"
    chosen.save(model, kind.example(SEG_SPEC.input_shape), kind, path, False)
    result = verify(model, chosen.load(path), kind, SEG_SPEC.input_shape, FLOAT)
    assert [c["shape"] for c in result["cases"]] == [[b, 3, 64, 64] for b in (1, 2, 7)]
    assert result["max_abs_error"] <= result["worst_case"]["bound"]


def tiny_detector() -> torch.nn.Module:
    torch.manual_seed(0)
    settings = {
        "weights_backbone": "none",
        "min_size": 64,
        "max_size": 64,
        "anchor_sizes": [16, 32],
        "reduce_channels": 32,
        "representation_size": 64,
        "output_stride": 16,
        "proposals": 50,
    }
    name = "fasterrcnn_mobilenet_v2"
    return build_model(Component(name=name, **settings), DET_SPEC, DET_SPEC.num_classes).eval()


@pytest.fixture(scope="module")
def scripted_detector(tmp_path_factory):  # type: ignore[no-untyped-def]
    model = DetectorOnBatch(tiny_detector()).eval()
    kind, chosen = SceneKind("pixels", {0: "batch"}), exporter("torchscript")
    path = tmp_path_factory.mktemp("det") / chosen.filename
    details = chosen.save(model, kind.example(DET_SPEC.input_shape), kind, path, False)
    return model, kind, chosen.load(path), details


@pytest.mark.slow
def test_detector_scripts_with_the_same_boxes(scripted_detector) -> None:  # type: ignore[no-untyped-def]
    model, kind, runner, details = scripted_detector
    assert details == {"method": "script"}
    result = verify(model, runner, kind, DET_SPEC.input_shape, FLOAT, compare_detections)
    assert [c["shape"][0] for c in result["cases"]] == [1, 2, 7]
    counts = [n for c in result["cases"] for n in c["boxes"]]
    assert len(counts) == 10 and min(counts) > 0  # parity on real boxes, not on none
    assert result["max_abs_error"] <= result["worst_case"]["bound"]


def test_shapes_scenes_are_deterministic_images() -> None:
    kind = SceneKind("pixels", {0: "batch"})
    first, again = kind.example((3, 48, 64), 3, seed=4), kind.example((3, 48, 64), 3, seed=4)
    assert first.shape == (3, 3, 48, 64) and torch.equal(first, again)
    assert first.min() >= 0 and first.max() <= 1 and first.std() > 0.05
    assert not torch.equal(first, kind.example((3, 48, 64), 3, seed=5))


@pytest.mark.slow
def test_different_detections_fail_verification(scripted_detector) -> None:  # type: ignore[no-untyped-def]
    model, kind, runner, _ = scripted_detector

    def drop_last_box(images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [{k: v[:-1] for k, v in found.items()} for found in runner(images)]

    def nudge_scores(images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [{**found, "scores": found["scores"] + 0.01} for found in runner(images)]

    shape = DET_SPEC.input_shape
    with pytest.raises(ExportError, match=r"finds \d+ boxes in image 0 .* eager model \d+"):
        verify(model, drop_last_box, kind, shape, FLOAT, compare_detections)
    with pytest.raises(ExportError, match=r"differs from the eager model by 0.01"):
        verify(model, nudge_scores, kind, shape, FLOAT, compare_detections)


@pytest.mark.parametrize(
    ("format", "quantize", "message"),
    [
        ("exported-program", None, "number of boxes per image depends on the data"),
        ("onnx", None, "torch.export-based ONNX exporter cannot trace"),
        ("mar", None, "answers labels of images, rows and texts, not boxes"),
        ("torchscript", "dynamic-int8", "cannot be quantised to int8 faithfully"),
    ],
)
def test_unfaithful_detector_formats_are_refused(format: str, quantize, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ExportError, match=message) as error:
        check_format(format, quantize)
    assert "--format torchscript" in str(error.value)
    check_format("torchscript", None)  # the one that holds a detector


def same_frames(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    numbers = a.select_dtypes("number").columns
    pd.testing.assert_frame_equal(a.drop(columns=numbers), b.drop(columns=numbers))
    pd.testing.assert_frame_equal(a[numbers], b[numbers], check_exact=False, atol=1e-3)


@pytest.mark.slow
def test_shapes_detection_run_exports_and_predicts_like_the_run(cli, tmp_path: Path) -> None:
    run = torchlab.train(
        "shapes-det", shapes_smoke("shapes-det", tmp_path), output_dir=tmp_path / "runs"
    )
    out = tmp_path / "ts"
    result = cli("export", str(run.dir), "--format", "torchscript", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "max abs error" in result.stdout
    sidecar = json.loads((out / "export.json").read_text())
    assert sidecar["format_details"] == {"method": "script"}
    cases = sidecar["verification"]["cases"]
    assert [c["shape"][0] for c in cases] == [1, 2, 7]
    assert sum(n for c in cases for n in c["boxes"]) > 0  # verified on boxes the run finds
    images = sorted((tmp_path / "shapes" / "images").glob("*.png"))[:3]
    result = cli("predict", str(out), *map(str, images), "-o", str(tmp_path / "from_export"))
    assert result.returncode == 0, result.stderr
    exported = pd.read_csv(tmp_path / "from_export" / "predictions.csv")
    api.predict(run.dir, images, output=tmp_path / "from_run")
    assert len(exported) > 0
    same_frames(exported, pd.read_csv(tmp_path / "from_run" / "predictions.csv"))
    assert len(list((tmp_path / "from_export").glob("*_boxes.png"))) == 3
    for format, quantize in (("onnx", None), ("mar", None), ("torchscript", "dynamic-int8")):
        with pytest.raises(ExportError, match="--format torchscript"):
            torchlab.export(run, format, quantize=quantize, output=tmp_path / "refused")
        assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_deeplab_segmentation_run_exports_and_predicts_like_the_run(tmp_path: Path) -> None:
    head = {"name": "deeplabv3_mobilenet_v2", "weights_backbone": "none", "atrous_rates": [1, 2, 3]}
    overrides = {**shapes_smoke("shapes-seg", tmp_path), "model": head, "baseline": None}
    run = torchlab.train("shapes-seg", overrides, output_dir=tmp_path / "runs")
    images = sorted((tmp_path / "shapes" / "images").glob("*.png"))[:3]
    expected = api.predict(run.dir, images)
    out = torchlab.export(run, "onnx", output=tmp_path / "onnx")  # the contract covers the rest
    same_frames(api.predict(out, images), expected)
    with pytest.raises(ExportError, match="not masks or boxes; export a segmentation model"):
        torchlab.export(run, "mar", output=tmp_path / "mar")
