"""Every registered vision classification backbone through one contract, and its weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from torchlab.config import Component
from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError
from torchlab.models.vision.backbones import ARCHITECTURES
from torchlab.models.vision.pretrained import imagenet_state_dict
from torchlab.registry import MODELS

SPEC = DataSpec((3, 32, 32), "categorical", tuple("abcde"))
HEAVY = {
    "resnet34",
    "resnet50",
    "vgg11_bn",
    "vgg16_bn",
    "convnext_tiny",
    "efficientnet_b0",
    "mobilenet_v3_large",
}


def build(name: str, spec: DataSpec = SPEC, **settings: object) -> torch.nn.Module:
    return MODELS.build(Component(name=name, **settings), "model", spec, spec.num_outputs)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ARCHITECTURES],
)
def test_backbone_contract(name: str, tmp_path: Path) -> None:
    assert name in MODELS.names()
    torch.manual_seed(0)
    model = build(name)
    x = torch.randn(2, 3, 32, 32)  # (B, C, H, W)
    model.train()
    out = model(x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)

    model.eval()
    with torch.no_grad():
        before = model(x)
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    torch.manual_seed(1)
    again = build(name)
    again.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), before)


def test_imagenet_mobilenet_v2_loads_offline_and_exposes_its_normalisation() -> None:
    model = build("mobilenet_v2", weights="imagenet")
    _, state = imagenet_state_dict("mobilenet_v2")
    assert torch.equal(model.net.features[3].conv[0][0].weight, state["features.3.conv.0.0.weight"])
    assert model.net.classifier[1].out_features == 5  # new head
    assert model.normalization == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert build("mobilenet_v2").normalization is None


def test_other_imagenet_weights_fail_offline_with_a_clear_message(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # no network, deterministically
    with pytest.raises(ConfigError, match=r"ImageNet weights for 'resnet18' .*use weights: none"):
        build("resnet18", weights="imagenet")


def test_a_trained_model_loads_without_its_pretrained_weights(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Trained weights replace the ImageNet ones, so loading a run never fetches them."""
    from torchlab.models import build_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache, as on a server
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    component = Component(name="resnet18", weights="imagenet", freeze_backbone=True)
    model = build_model(component, SPEC, SPEC.num_outputs, trained=True)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert component.params["weights"] == "imagenet"  # the run's config is left as it was


def test_one_channel_input_adapts_the_first_convolution() -> None:
    gray = DataSpec((1, 32, 32), "categorical", ("a", "b"))
    model = build("mobilenet_v2", gray, weights="imagenet")
    _, state = imagenet_state_dict("mobilenet_v2")
    first = model.net.features[0][0]
    assert first.in_channels == 1
    torch.testing.assert_close(first.weight, state["features.0.0.weight"].sum(1, keepdim=True))
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 2)


def test_weights_from_a_file_load_all_but_a_head_of_another_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build("resnet18", DataSpec((3, 32, 32), "categorical", tuple("abc")))
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    with pytest.warns(UserWarning, match="fc.bias, fc.weight left newly initialised"):
        model = build("resnet18", weights=str(tmp_path / "w.safetensors"))
    assert torch.equal(model.net.layer3[0].conv1.weight, source.net.layer3[0].conv1.weight)
    with pytest.raises(ConfigError, match="does not fit this network"):
        build("mobilenet_v2", weights=str(tmp_path / "w.safetensors"))
    with pytest.raises(ConfigError, match="does not exist"):
        build("resnet18", weights=str(tmp_path / "missing.pt"))


def test_flip_tta_averages_an_image_and_its_mirror_in_evaluation_only() -> None:
    torch.manual_seed(0)
    model = build("resnet18", tta="flip").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = (model.net(x) + model.net(x.flip(-1))) / 2
        torch.testing.assert_close(model(x), expected)
        mirrored = model(x.flip(-1))
    torch.testing.assert_close(mirrored, expected, atol=1e-5, rtol=1e-5)  # flip-invariant


def test_non_image_data_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs images shaped"):
        build("resnet18", DataSpec((10,), "categorical", ("a", "b")))


def test_a_regression_head_predicts_in_the_targets_units() -> None:
    spec = DataSpec(
        (3, 32, 32), "continuous", target_names=("age",), target_mean=(40.0,), target_std=(10.0,)
    )
    torch.manual_seed(0)
    model = build("mobilenet_v3_small", spec).eval()
    with torch.no_grad():
        out = model(torch.randn(8, 3, 32, 32))
    assert out.shape == (8, 1) and 20 < out.mean().item() < 60  # rescaled around the mean
