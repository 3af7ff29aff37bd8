"""Detection: COCO and VOC loaders (good and bad files), box-aware augmentation, detector
contract, the task's evaluation step and the shapes-det recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import torchlab
from torchlab import api
from torchlab.config import Component
from torchlab.data.base import Batch, DataSpec, SourceContext
from torchlab.data.vision.detection import DetectionDataset, Record, transforms
from torchlab.errors import DataError
from torchlab.models import build_model
from torchlab.registry import DATASETS, LOSSES, MODELS
from torchlab.tasks.detection import Detection
from torchlab.testing import shapes_smoke

CONTEXT = SourceContext(0.0, 0.0, False, 0, "categorical")
DET_MODELS = [
    n for n in MODELS.names() if MODELS.get(n).builder.__module__.endswith("vision.detection")
]
SPEC = DataSpec((3, 64, 64), "categorical", class_names=("background", "a", "b"))


def white_box_image(
    path: Path, box: tuple[int, int, int, int], size: tuple[int, int] = (40, 30)
) -> None:
    """A black image with a white rectangle covering ``box`` (x0, y0, x1, y1), ends exclusive."""
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = 255
    Image.fromarray(pixels).save(path)


def coco_set(root: Path) -> dict:
    (root / "images").mkdir(parents=True)
    white_box_image(root / "images" / "a.png", (5, 6, 15, 20))
    white_box_image(root / "images" / "b.png", (20, 2, 38, 12))
    data = {
        "images": [
            {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 11, "file_name": "b.png", "width": 40, "height": 30},
        ],
        "categories": [{"id": 9, "name": "dog"}, {"id": 5, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 9, "bbox": [5, 6, 10, 14], "iscrowd": 0},
            {"id": 2, "image_id": 11, "category_id": 5, "bbox": [20, 2, 18, 10], "iscrowd": 0},
            {"id": 3, "image_id": 11, "category_id": 9, "bbox": [0, 0, 40, 30], "iscrowd": 1},
        ],
    }
    (root / "annotations.json").write_text(json.dumps(data))
    return data


def voc_xml(filename: str, objects: list[tuple[str, tuple[int, ...], int]]) -> str:
    body = "".join(
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b, difficult in objects
    )
    return (
        f"<annotation><filename>{filename}</filename><size><width>40</width><height>30</height>"
        f"<depth>3</depth></size>{body}</annotation>"
    )


def voc_set(root: Path) -> None:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    white_box_image(root / "JPEGImages" / "x.png", (5, 6, 15, 20))
    (root / "Annotations" / "x.xml").write_text(
        voc_xml("x.png", [("person", (6, 7, 15, 20), 0), ("car", (1, 1, 5, 5), 1)])
    )
    white_box_image(root / "JPEGImages" / "y.png", (0, 0, 4, 4))
    (root / "Annotations" / "y.xml").write_text(voc_xml("y.png", [("car", (1, 1, 4, 4), 0)]))


def coco_bundle(root: Path, **settings: object):  # type: ignore[no-untyped-def]
    return DATASETS.build(
        Component(name="coco", root=str(root), **settings), "data.source", CONTEXT
    )


def test_coco_loader_gives_xyxy_boxes_and_labels_from_one(tmp_path: Path) -> None:
    coco_set(tmp_path)
    bundle = coco_bundle(tmp_path, augment="none")
    assert bundle.spec.class_names == ("background", "cat", "dog")  # ascending category id
    image, target = bundle.train[0]
    assert image.shape == (3, 30, 40) and image.min() >= 0 and image.max() <= 1
    torch.testing.assert_close(target["boxes"], torch.tensor([[5.0, 6.0, 15.0, 20.0]]))
    assert target["labels"].tolist() == [2] and target["labels"].dtype == torch.int64
    _, second = bundle.train[1]
    assert second["labels"].tolist() == [1]  # the crowd region is left out
    batch = bundle.collate([bundle.train[0], bundle.train[1]])
    assert isinstance(batch, Batch) and isinstance(batch.inputs, list) and len(batch) == 2
    assert bundle.summary["class_counts"]["train"] == [0, 1, 1]


def test_voc_loader_skips_difficult_and_shifts_one_based_pixels(tmp_path: Path) -> None:
    voc_set(tmp_path)
    bundle = DATASETS.build(
        Component(name="voc", root=str(tmp_path), classes=["person", "car"], augment="none"),
        "data.source",
        CONTEXT,
    )
    assert bundle.spec.class_names == ("background", "person", "car")
    _, target = bundle.train[0]
    torch.testing.assert_close(target["boxes"], torch.tensor([[5.0, 6.0, 15.0, 20.0]]))
    assert target["labels"].tolist() == [1]
    found = DATASETS.build(Component(name="voc", root=str(tmp_path)), "data.source", CONTEXT)
    assert found.spec.class_names == ("background", "car", "person")  # sorted names found


def edit_coco(root: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = json.loads((root / "annotations.json").read_text())
    change(data)
    (root / "annotations.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["annotations"][0].update(category_id=7),
            r"Annotation 1 of 'a.png'.*category_id 7",
        ),
        (
            lambda d: d["annotations"][1].update(bbox=[20, 2, 0, 10]),
            r"Annotation 2 of 'b.png'.*no area",
        ),
        (
            lambda d: d["annotations"][0].update(bbox=[50, 40, 5, 5]),
            r"Annotation 1 of 'a.png'.*outside its 40x30",
        ),
        (
            lambda d: d["images"][1].update(file_name="gone.png"),
            r"gone.png' listed in .* does not exist",
        ),
        (lambda d: d["annotations"][0].update(image_id=99), r"Annotation 1 .* image_id 99"),
        (lambda d: d.pop("categories"), r"is not a COCO annotation file"),
    ],
)
def test_bad_coco_files_are_named(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    coco_set(tmp_path)
    edit_coco(tmp_path, change)
    with pytest.raises(DataError, match=message):
        coco_bundle(tmp_path)


def test_bad_voc_files_are_named(tmp_path: Path) -> None:
    voc_set(tmp_path)
    with pytest.raises(DataError, match=r"x.xml' has an object of class 'person'"):
        DATASETS.build(
            Component(name="voc", root=str(tmp_path), classes=["car"]), "data.source", CONTEXT
        )
    (tmp_path / "Annotations" / "y.xml").write_text("<annotation><filename>y.png")
    with pytest.raises(DataError, match=r"y.xml' is not a valid Pascal VOC annotation"):
        DATASETS.build(Component(name="voc", root=str(tmp_path)), "data.source", CONTEXT)


def test_box_aware_augmentation_moves_boxes_with_the_pixels(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    white_box_image(path, (5, 6, 15, 20), size=(40, 30))
    record = Record(path, 40, 30, ((5.0, 6.0, 15.0, 20.0),), (1,))
    dataset = DetectionDataset([record], transforms("standard", (32, 48), train=True))
    torch.manual_seed(0)
    flipped = 0
    for _ in range(12):
        image, target = dataset[0]
        assert image.shape == (3, 32, 48)
        x0, y0, x1, y1 = target["boxes"][0].tolist()
        bright = image.mean(0) > 0.5 * image.mean(0).max()  # photometric changes keep it brightest
        ys, xs = torch.nonzero(bright, as_tuple=True)
        assert abs(xs.min() - x0) <= 1.5 and abs(xs.max() + 1 - x1) <= 1.5
        assert abs(ys.min() - y0) <= 1.5 and abs(ys.max() + 1 - y1) <= 1.5
        flipped += x0 > 24
    assert 0 < flipped < 12  # the flip happened in some draws, not all


def train_batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 64)]
    targets = [
        {"boxes": torch.tensor([[4.0, 4.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
        {
            "boxes": torch.tensor([[10.0, 5.0, 50.0, 30.0], [0.0, 0.0, 9.0, 9.0]]),
            "labels": torch.tensor([2, 1]),
        },
    ]
    return images, targets


def detector(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    settings = {
        "weights_backbone": "none",
        "min_size": 64,
        "max_size": 64,
        "anchor_sizes": [16, 32],
    }
    if name == "fasterrcnn_mobilenet_v2":  # narrow heads keep the test fast
        settings.update(reduce_channels=32, representation_size=64, output_stride=16, proposals=50)
    return build_model(Component(name=name, **settings), SPEC, SPEC.num_classes)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if "fpn" in n else n for n in DET_MODELS]
)
def test_detector_contract(name: str, tmp_path: Path) -> None:
    model = detector(name).train()
    images, targets = train_batch()
    losses = model(images, targets)
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(losses)
    total = LOSSES.build(Component(name="detector"), "task.loss")(losses)
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        found = model(images)
    assert len(found) == 2 and found[0]["boxes"].shape[1:] == (4,)
    assert ((found[0]["labels"] >= 1) & (found[0]["labels"] < 3)).all()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    other = detector(name, seed=1).eval()
    other.load_state_dict(load_file(str(path)))
    probe = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(5))]
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(probe[0][None]), other.backbone(probe[0][None]))
        assert all(
            torch.equal(a, b)
            for a, b in zip(model(probe)[0].values(), other(probe)[0].values(), strict=True)
        )


def test_mobilenet_v2_detector_loads_imagenet_features_and_freezes_early_blocks() -> None:
    from torchvision.ops.misc import FrozenBatchNorm2d

    from torchlab.models.vision.pretrained import imagenet_state_dict

    model = build_model(Component(name="fasterrcnn_mobilenet_v2", trainable_blocks=5), SPEC, 3)
    state = imagenet_state_dict("mobilenet_v2")[1]
    torch.testing.assert_close(model.backbone[18][0].weight, state["features.18.0.weight"])
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.backbone.modules())
    assert not any(p.requires_grad for p in model.backbone[:14].parameters())
    assert all(p.requires_grad for p in model.backbone[14:].parameters())


def test_evaluation_step_reports_a_loss_without_changing_model_or_random_stream() -> None:
    task = Detection(SPEC, LOSSES.build(Component(name="detector"), "task.loss"), ["map"])
    model = detector("fasterrcnn_mobilenet_v2").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, targets = train_batch()
    rng = torch.get_rng_state()
    with torch.inference_mode():
        out = task.evaluation_step(model, Batch(images, targets))
    assert torch.equal(rng, torch.get_rng_state()) and not model.training
    assert torch.isfinite(out.loss) and out.loss > 0 and len(out.outputs) == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    metrics = task.metrics()
    task.update_metrics(
        metrics,
        [
            {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
            for t in targets
        ],
        Batch(images, targets),
    )
    assert metrics.compute()["map_50"].item() == pytest.approx(1.0)  # perfect boxes


@pytest.mark.slow
def test_shapes_det_recipe_trains_reports_and_predicts(tmp_path: Path) -> None:
    run = torchlab.train(
        "shapes-det", shapes_smoke("shapes-det", tmp_path), output_dir=tmp_path / "runs"
    )
    summary = json.loads((run.dir / "summary.json").read_text())
    assert {"test/map", "test/map_50", "test/map_75", "test/loss"} <= set(summary["test"])
    assert 0 <= summary["test"]["test/map_50"] <= 1 and summary["baseline"] is None
    html = (run.dir / "report.html").read_text()
    assert "average precision per class (test)" in html and "true boxes in green" in html
    images = sorted((tmp_path / "shapes" / "images").glob("*.png"))[:2]
    frame = api.predict(run.dir, images, output=tmp_path / "pred")
    assert list(frame.columns) == ["id", "label", "score", "x0", "y0", "x1", "y1"]
    assert set(frame["label"]) <= {"circle", "square", "triangle"}
    drawn = sorted((tmp_path / "pred").glob("*_boxes.png"))
    assert [p.name for p in drawn] == [f"{p.stem}_boxes.png" for p in images]
    assert (tmp_path / "pred" / "predictions.csv").is_file()
