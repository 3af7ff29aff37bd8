"""Transfer learning: frozen backbone and BatchNorm, learning-rate scales, gradual unfreezing,
and the digits-transfer / digits-scratch recipes from training to predict and ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

import torchlab
from torchlab.config import Component, OptimConfig
from torchlab.data.base import DataSpec
from torchlab.models.vision.pretrained import imagenet_state_dict
from torchlab.registry import MODELS
from torchlab.training.checkpoint import latest_checkpoint, load_checkpoint
from torchlab.training.optim import build_optimizer

SPEC = DataSpec((3, 32, 32), "categorical", tuple("0123456789"))
TINY = {  # digits-transfer, small enough for CI
    "data.source.size": 32,
    "data.source.per_class": 3,
    "data.split": {"val": 0.05, "test": 0.05},
    "data.batch_size": 10,
    "trainer.max_epochs": 1,
    "trainer.progress": "none",
}


def mobilenet(**settings: object) -> torch.nn.Module:
    component = Component(name="mobilenet_v2", weights="imagenet", **settings)
    return MODELS.build(component, "model", SPEC, 10)


def digits_batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    raw = load_digits()
    x = torch.from_numpy(raw.images[:n] / 16.0).float().unsqueeze(1).repeat(1, 3, 4, 4)
    return x, torch.from_numpy(raw.target[:n]).long()  # (n, 3, 32, 32), (n,)


def train_steps(model: torch.nn.Module, steps: int = 3, lr: float = 0.01) -> None:
    optimizer = build_optimizer(OptimConfig(name="adamw", lr=lr), model)
    x, y = digits_batch()
    model.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def bn_stats(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k}


def test_a_frozen_backbone_trains_only_the_head_and_keeps_its_statistics() -> None:
    model = mobilenet(freeze_backbone=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"net.classifier.1.weight", "net.classifier.1.bias"}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_steps(model)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"net.classifier.1.weight", "net.classifier.1.bias"}  # BN stats too


def test_freeze_bn_keeps_running_statistics_of_a_training_backbone() -> None:
    model = mobilenet(freeze_bn=True)
    stats = bn_stats(model)
    weight = model.net.features[5].conv[0][0].weight.clone()
    train_steps(model)
    assert model.training and not model.net.features[5].conv[0][1].training
    assert all(torch.equal(v, bn_stats(model)[k]) for k, v in stats.items())
    assert not torch.equal(weight, model.net.features[5].conv[0][0].weight)  # yet it learns
    plain = mobilenet()
    train_steps(plain, steps=1)
    assert any(not torch.equal(v, bn_stats(plain)[k]) for k, v in stats.items())


def test_backbone_lr_scale_gives_the_backbone_a_lower_rate() -> None:
    model = mobilenet(backbone_lr_scale=0.1)
    optimizer = build_optimizer(OptimConfig(name="adamw", lr=0.01), model)
    head = {id(p) for p in model.net.classifier.parameters()}
    for group in optimizer.param_groups:
        is_head = {id(p) in head for p in group["params"]}
        assert len(is_head) == 1  # a group is all head or all backbone
        assert group["lr"] == pytest.approx(0.01 if is_head.pop() else 0.001)


@pytest.mark.slow
def test_gradual_unfreezing_opens_top_stages_on_schedule_and_resumes_exactly(
    tmp_path: Path,
) -> None:
    overrides = {
        **TINY,
        "schedule.name": "none",
        "trainer.callbacks": [{"name": "gradual_unfreeze", "epochs": [1], "stages_per_step": 4}],
        "trainer.max_epochs": 2,
    }
    whole = torchlab.train("digits-transfer", overrides, output_dir=tmp_path / "a")
    final = load_checkpoint(latest_checkpoint(whole.dir / "checkpoints")).weights
    _, imagenet = imagenet_state_dict("mobilenet_v2")
    changed = {int(k.split(".")[1]) for k, v in imagenet.items() if k.startswith("features.")
               and not torch.equal(final[f"net.{k}"], v)}  # fmt: skip
    assert changed == {15, 16, 17, 18}  # the four top stages of 19, opened at epoch 1

    first = torchlab.train(
        "digits-transfer", {**overrides, "trainer.max_epochs": 1}, output_dir=tmp_path / "b"
    )
    resumed = torchlab.train(resume=first.dir, overrides={"trainer.max_epochs": 2})
    again = load_checkpoint(latest_checkpoint(resumed.dir / "checkpoints")).weights
    assert all(torch.equal(again[k], v) for k, v in final.items())


def write_digit_pngs(folder: Path, count: int = 6) -> list[int]:
    """The first test-free digits as 8-bit gray PNG files, as a user would have them."""
    raw = load_digits()
    folder.mkdir()
    for i in range(count):
        pixels = (raw.images[-1 - i] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels, "L").resize((32, 32)).save(folder / f"d{i}.png")
    return [int(raw.target[-1 - i]) for i in range(count)]


@pytest.mark.slow
def test_digits_transfer_recipe_trains_predicts_and_exports(tmp_path: Path) -> None:
    run = torchlab.train("digits-transfer", TINY, output_dir=tmp_path)
    summary = run.summary
    assert run.status == "completed" and summary["baseline"]["name"] == "svc"
    assert 0.0 <= summary["test"]["test/accuracy"] <= 1.0
    assert run.featurizer.mean == [0.485, 0.456, 0.406]  # ImageNet statistics for ImageNet weights

    write_digit_pngs(tmp_path / "images")
    frame = torchlab.predict(run, [tmp_path / "images"])
    assert len(frame) == 6 and set(frame["label"]) <= set(SPEC.class_names)
    inputs, _ = run.featurizer.load_inputs([tmp_path / "images"])
    assert inputs.shape == (6, 3, 32, 32)  # gray files read as RGB for the RGB backbone
    model = run.load_model().eval()
    with torch.no_grad():
        direct = model(inputs).argmax(-1).tolist()
    assert frame["label"].tolist() == [str(i) for i in direct]

    export_dir = torchlab.export(run, "onnx")
    assert (export_dir / "export.json").is_file()
    exported = torchlab.predict(export_dir, [tmp_path / "images"])
    assert exported["label"].tolist() == frame["label"].tolist()


@pytest.mark.slow
def test_digits_scratch_recipe_trains_the_same_network_from_random_weights(
    tmp_path: Path,
) -> None:
    run = torchlab.train("digits-scratch", TINY, output_dir=tmp_path)
    assert run.config.model.params["weights"] == "none"
    assert run.config.trainer.callbacks == []
    assert run.featurizer.mean != [0.485, 0.456, 0.406]  # the training split's own statistics
    assert 0.0 <= run.summary["test"]["test/accuracy"] <= 1.0
