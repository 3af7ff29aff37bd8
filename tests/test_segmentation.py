"""Segmentation: the shapes generator, the mask-folder loader, models, loss, metrics, recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

import torchlab
from torchlab import api
from torchlab.config import Component
from torchlab.data.base import DataSpec, SourceContext
from torchlab.data.vision.segmentation import transforms
from torchlab.data.vision.shapes import voc_palette, write_shapes
from torchlab.errors import DataError
from torchlab.models import build_model
from torchlab.registry import DATASETS, LOSSES, MODELS
from torchlab.tasks.base import MetricContext
from torchlab.tasks.segmentation import Segmentation
from torchlab.testing import shapes_smoke

CONTEXT = SourceContext(0.25, 0.25, False, 0, "categorical")
SEG_MODELS = [
    n
    for n in MODELS.names()
    if MODELS.get(n).builder.__module__.endswith(("unet", "segmentation_heads"))
]
HEAVY = {"fcn_resnet50", "deeplabv3_resnet50"}


def write_pair(root: Path, stem: str, labels: np.ndarray, *, palette: bool = True) -> None:
    """An image whose colour encodes each pixel's class, and its mask."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    Image.fromarray(colours[labels % 4]).save(root / "images" / f"{stem}.jpg", quality=100)
    mask = Image.fromarray(labels.astype(np.uint8), "L")
    if palette:
        mask = mask.convert("P")
        mask.putpalette(voc_palette())
    mask.save(root / "masks" / f"{stem}.png")


def blocks(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    """Labels with a rectangle of class 1 and one of class 2 on background 0."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), dtype=np.uint8)
    y, x = rng.integers(0, 8, size=2)
    labels[y : y + 10, x : x + 12] = 1
    labels[14:22, 18:30] = 2
    return labels


def mask_set(root: Path, n: int = 4, classes: str = "background\nred\ngreen\n") -> Path:
    for i in range(n):
        write_pair(root, f"img{i}", blocks(seed=i))
    (root / "classes.txt").write_text(classes)
    return root


def test_write_shapes_is_deterministic_and_both_formats_agree(tmp_path: Path) -> None:
    from pycocotools import mask as mask_utils

    a = write_shapes(tmp_path / "a", 6, 48, seed=3)
    b = write_shapes(tmp_path / "b", 6, 48, seed=3)
    c = write_shapes(tmp_path / "c", 6, 48, seed=4)
    assert (a / "annotations.json").read_text() == (b / "annotations.json").read_text()
    assert (a / "annotations.json").read_text() != (c / "annotations.json").read_text()
    coco = json.loads((a / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["circle", "square", "triangle"]
    assert (a / "classes.txt").read_text().split() == ["background", "circle", "square", "triangle"]
    for image in coco["images"]:
        labels = np.asarray(Image.open(a / "masks" / image["file_name"]))
        assert Image.open(a / "masks" / image["file_name"]).mode == "P"
        anns = [x for x in coco["annotations"] if x["image_id"] == image["id"]]
        assert anns, "every image holds at least one shape"
        for ann in anns:  # the RLE mask is exactly the object's pixels in the label map
            visible = mask_utils.decode(ann["segmentation"]).astype(bool)
            assert (labels[visible] == ann["category_id"]).all()
            assert visible.sum() == ann["area"]
            ys, xs = np.nonzero(visible)
            assert ann["bbox"] == [
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            ]
        assert (labels > 0).sum() == sum(x["area"] for x in anns)


def test_write_shapes_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    with pytest.raises(DataError, match="already exists"):
        write_shapes(tmp_path / "mine", 2, 32)


def test_mask_folder_reads_palette_masks_and_class_names(tmp_path: Path) -> None:
    root = mask_set(tmp_path, n=8)
    bundle = DATASETS.build(
        Component(name="mask-folder", root=str(root), augment="none"), "data.source", CONTEXT
    )
    assert bundle.spec.class_names == ("background", "red", "green")
    assert bundle.spec.input_shape == (3, 24, 32)
    assert {k: len(getattr(bundle, k)) for k in ("train", "val", "test")} == {
        "train": 4,
        "val": 2,
        "test": 2,
    }
    image, mask = bundle.train[0]
    assert image.shape == (3, 24, 32) and mask.shape == (24, 32) and mask.dtype == torch.int64
    stem = Path(bundle.train.pairs[0][0]).stem
    torch.testing.assert_close(mask, torch.from_numpy(blocks(seed=int(stem[-1]))).long())
    counts = np.sum([bundle.summary["class_counts"][k] for k in ("train", "val", "test")], axis=0)
    assert counts.sum() == 8 * 24 * 32 and counts[2] == 8 * 8 * 12
    listed = DATASETS.build(
        Component(name="mask-folder", root=str(root), classes=["bg", "r", "g", "extra"], size=16),
        "data.source",
        CONTEXT,
    )
    assert listed.spec.class_names == ("bg", "r", "g", "extra") and listed.spec.input_shape == (
        3,
        16,
        16,
    )
    assert listed.train[0][1].shape == (16, 16)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "masks" / "img1.png").unlink(), r"img1.jpg' has no mask"),
        (
            lambda r: write_pair(r, "img2", np.full((24, 32), 5, np.uint8)),
            r"img2.png' holds class index 5",
        ),
        (
            lambda r: Image.fromarray(np.zeros((10, 10), np.uint8)).save(r / "masks" / "img0.png"),
            r"img0.png' is 10x10 but its image is 32x24",
        ),
        (
            lambda r: Image.new("RGB", (32, 24)).save(r / "masks" / "img3.png"),
            r"img3.png' is a RGB image",
        ),
        (lambda r: (r / "classes.txt").unlink(), "No class names"),
    ],
)
def test_mask_folder_errors_name_the_file(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    root = mask_set(tmp_path)
    damage(root)
    with pytest.raises(DataError, match=message):
        DATASETS.build(Component(name="mask-folder", root=str(root)), "data.source", CONTEXT)


def test_joint_augmentation_keeps_masks_on_their_pixels() -> None:
    torch.manual_seed(0)
    labels = torch.from_numpy(blocks(48, 64)).long()
    colours = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    image = colours[labels].permute(2, 0, 1)  # red where class 1, green where class 2
    from torchvision import tv_tensors

    augment = transforms("standard", (32, 32), train=True)
    for _ in range(10):
        out, mask = augment(tv_tensors.Image(image), tv_tensors.Mask(labels))
        assert mask.shape == (32, 32) and set(mask.unique().tolist()) <= {0, 1, 2}
        red = out[0] > out[1] + 0.3  # colour jitter changes shades, not which channel leads
        agree = (red == (mask == 1)).float().mean()
        assert agree > 0.95


def test_dice_ce_ignores_255_and_rewards_correct_logits() -> None:
    loss = LOSSES.build(Component(name="dice_ce"), "task.loss")
    target = torch.randint(0, 3, (2, 8, 8))
    perfect = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 20
    wrong = F.one_hot((target + 1) % 3, 3).permute(0, 3, 1, 2).float() * 20
    assert loss(perfect, target) < 0.01 < 2 < loss(wrong, target)
    ignored = target.clone()
    ignored[:, :4] = 255
    noisy = perfect.clone()
    noisy[:, :, :4] = torch.randn(2, 3, 4, 8) * 50  # garbage only where ignored
    torch.testing.assert_close(loss(noisy, ignored), loss(perfect, ignored))
    plain = LOSSES.build(Component(name="dice_ce", dice_weight=0.0), "task.loss")
    logits = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(
        plain(logits, ignored), F.cross_entropy(logits, ignored, ignore_index=255)
    )


def test_mean_iou_and_dice_match_hand_computation() -> None:
    task = Segmentation(
        DataSpec((3, 2, 4), "categorical", class_names=("a", "b")),
        torch.nn.Identity(),
        ["mean_iou", "dice"],
    )
    metrics = task.metrics()
    target = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 255]]])
    pred = torch.tensor([[[0, 1, 1, 1], [0, 0, 1, 0]]])  # last pixel ignored
    logits = F.one_hot(pred, 2).permute(0, 3, 1, 2).float()
    metrics.update(task.scores(logits), target)
    values = metrics.compute()
    # class a: tp 3, fp 0, fn 1 -> IoU 3/4; class b: tp 3, fp 1, fn 0 -> IoU 3/4
    assert values["mean_iou"].item() == pytest.approx(0.75)
    assert values["dice"].item() == pytest.approx(6 / 7)
    assert MetricContext("segmentation", 2, 2)


def small(name: str) -> dict[str, object]:
    if name == "unet":
        return {"depth": 2, "channels": 4}
    return {"weights_backbone": "none"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in SEG_MODELS]
)
def test_segmentation_model_contract(name: str, tmp_path: Path) -> None:
    spec = DataSpec((3, 32, 48), "categorical", class_names=("bg", "a", "b"))
    torch.manual_seed(0)
    model = build_model(Component(name=name, **small(name)), spec, 3)
    x = torch.rand(2, 3, 32, 48)
    out = model(x)
    assert out.shape == (2, 3, 32, 48) and torch.isfinite(out).all()
    F.cross_entropy(out, torch.randint(0, 3, (2, 32, 48))).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    torch.manual_seed(1)
    other = build_model(Component(name=name, **small(name)), spec, 3)
    model.eval()
    other.eval()
    with torch.no_grad():
        assert not torch.equal(model(x), other(x))
        other.load_state_dict(load_file(str(path)))
        assert torch.equal(model(x), other(x))


def test_unet_keeps_odd_input_sizes() -> None:
    model = build_model(
        Component(name="unet", depth=3, channels=4),
        DataSpec((3, 30, 45), "categorical", class_names=("a", "b")),
        2,
    )
    assert model(torch.rand(1, 3, 30, 45)).shape == (1, 2, 30, 45)


def test_deeplab_mobilenet_v2_loads_imagenet_backbone_offline() -> None:
    from torchlab.models.vision.pretrained import imagenet_state_dict

    spec = DataSpec((3, 32, 32), "categorical", class_names=("bg", "a"))
    model = build_model(Component(name="deeplabv3_mobilenet_v2"), spec, 2)
    state = imagenet_state_dict("mobilenet_v2")[1]
    torch.testing.assert_close(model.net.backbone[0][0].weight, state["features.0.0.weight"])
    assert model.lr_scale("net.backbone.0.0.weight") == 1.0
    scaled = build_model(Component(name="deeplabv3_mobilenet_v2", backbone_lr_scale=0.1), spec, 2)
    assert (
        scaled.lr_scale("net.backbone.0.0.weight") == 0.1
        and scaled.lr_scale("net.head.4.weight") == 1.0
    )


@pytest.mark.slow
def test_shapes_seg_recipe_trains_reports_and_predicts(tmp_path: Path) -> None:
    run = torchlab.train(
        "shapes-seg", shapes_smoke("shapes-seg", tmp_path), output_dir=tmp_path / "runs"
    )
    summary = json.loads((run.dir / "summary.json").read_text())
    assert 0 <= summary["test"]["test/mean_iou"] <= 1 and 0 <= summary["test"]["test/dice"] <= 1
    assert len(summary["test"]["test/iou_per_class"]) == 4
    assert (
        summary["baseline"]["name"] == "random_forest"
        and 0 <= summary["baseline"]["test/mean_iou"] <= 1
    )
    html = (run.dir / "report.html").read_text()
    assert "per-class IoU and Dice (test)" in html and "true and predicted masks" in html
    images = sorted((tmp_path / "shapes" / "images").glob("*.png"))[:3]
    frame = api.predict(run.dir, images, output=tmp_path / "pred")
    fractions = frame[[c for c in frame.columns if c.startswith("fraction_")]].to_numpy()
    assert fractions.shape == (3, 4) and np.allclose(fractions.sum(1), 1)
    overlays = sorted((tmp_path / "pred").glob("*_overlay.png"))
    assert [p.name for p in overlays] == [f"{p.stem}_overlay.png" for p in images]
    assert Image.open(overlays[0]).size == (32, 32)
    assert (tmp_path / "pred" / "predictions.csv").is_file()
