"""Contract tests over every registered model, plus the custom layers they share."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from torchlab.config import Component
from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError
from torchlab.models import build_model
from torchlab.models.layers import Rescale, Swish
from torchlab.registry import MODELS

BATCH = 4
# The natural input of each built-in model; a new model is tried on these in order.
NATURAL = {"mlp": (8,), "cnn": (1, 8, 8)}
CANDIDATES = [(8,), (1, 8, 8), (3, 16, 16)]
SMALL = {"mlp": {"hidden": [16, 16]}, "cnn": {"channels": [4, 8]}}


def classification_spec(shape: tuple[int, ...], classes: int = 3) -> DataSpec:
    return DataSpec(shape, "categorical", class_names=tuple(f"c{i}" for i in range(classes)))


def build(name: str, spec: DataSpec, seed: int = 0, **settings: object) -> nn.Module:
    """Build ``name`` through the registry with small settings, seeded."""
    torch.manual_seed(seed)
    params = {**SMALL.get(name, {}), **settings}
    return build_model(Component(name=name, **params), spec, spec.num_outputs)


def natural_shape(name: str) -> tuple[int, ...]:
    if name in NATURAL:
        return NATURAL[name]
    for shape in CANDIDATES:
        try:
            build(name, classification_spec(shape))
        except ConfigError:
            continue
        return shape
    raise AssertionError(f"model {name!r} builds on none of {CANDIDATES}; add it to NATURAL")


def inputs(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.randn(BATCH, *shape, generator=torch.Generator().manual_seed(seed))


# Model families whose inputs are not one tensor (token-id batches, ...) run the same
# contract in their own test module (tests/test_text_models.py, ...).
OWN_CONTRACT = ("torchlab.models.text.", "torchlab.models.forecasting.")
# Per-pixel logits and detectors: tests/test_segmentation.py, tests/test_detection.py.
OWN_CONTRACT += tuple(
    f"torchlab.models.vision.{m}" for m in ("unet", "segmentation_heads", "detection")
)
# torchvision classification backbones (some of 100M+ parameters): tests/test_vision_models.py.
OWN_CONTRACT += ("torchlab.models.vision.backbones",)
TENSOR_MODELS = [
    n for n in MODELS.names() if not MODELS.get(n).builder.__module__.startswith(OWN_CONTRACT)
]


@pytest.fixture(params=TENSOR_MODELS)
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_forward_shape_and_finite(name: str) -> None:
    shape = natural_shape(name)
    spec = classification_spec(shape, classes=5)
    model = build(name, spec)
    out = model(inputs(shape))  # (B, num_outputs)
    assert out.shape == (BATCH, 5)
    assert torch.isfinite(out).all()


def test_backward_gives_finite_gradients_everywhere(name: str) -> None:
    shape = natural_shape(name)
    model = build(name, classification_spec(shape))
    target = torch.tensor([0, 1, 2, 1])
    F.cross_entropy(model(inputs(shape)), target).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{param_name} received no gradient"
        assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_safetensors_round_trip_gives_identical_outputs(name: str, tmp_path: Path) -> None:
    shape = natural_shape(name)
    spec = classification_spec(shape)
    model = build(name, spec, seed=0)
    # move BatchNorm running statistics away from their initial values
    model.train()
    model(inputs(shape, seed=2) * 3 + 1)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))

    other = build(name, spec, seed=1)
    model.eval()
    other.eval()
    x = inputs(shape, seed=3)
    assert not torch.equal(model(x), other(x))  # differently initialised before loading
    other.load_state_dict(load_file(str(path)))
    with torch.no_grad():
        assert torch.equal(model(x), other(x))


def test_regression_head_predicts_in_target_units(name: str) -> None:
    shape = natural_shape(name)
    spec = DataSpec(
        shape, "continuous", target_names=("price",), target_mean=(100.0,), target_std=(10.0,)
    )
    model = build(name, spec).eval()
    head = model[-1]
    assert isinstance(head, nn.Sequential) and isinstance(head[-1], Rescale)
    x = inputs(shape)
    with torch.no_grad():
        out = model(x)
        standardised = head[0](model[:-1](x))  # the linear layer's output, before Rescale
    assert out.shape == (BATCH, 1)
    torch.testing.assert_close(out, standardised * 10.0 + 100.0)
    assert (out - 100.0).abs().max() < 50  # a fresh model starts near the target mean


def test_regression_without_statistics_has_a_plain_head(name: str) -> None:
    shape = natural_shape(name)
    model = build(name, DataSpec(shape, "continuous", target_names=("a", "b")))
    assert not any(isinstance(m, Rescale) for m in model.modules())
    assert model(inputs(shape)).shape == (BATCH, 2)


def test_swish_has_a_learnable_parameter_that_gets_a_gradient(name: str) -> None:
    shape = natural_shape(name)
    model = build(name, classification_spec(shape), activation="swish")
    swishes = [m for m in model.modules() if isinstance(m, Swish)]
    assert swishes
    params = dict(model.named_parameters())
    assert any(p is swishes[0].beta for p in params.values())  # trained with the rest
    F.cross_entropy(model(inputs(shape)), torch.tensor([0, 1, 2, 0])).backward()
    for swish in swishes:
        assert swish.beta.grad is not None and swish.beta.grad.abs() > 0


def test_swish_with_beta_one_is_silu() -> None:
    x = torch.linspace(-5, 5, 21)
    torch.testing.assert_close(Swish(1.0)(x), F.silu(x))
    assert not torch.allclose(Swish(2.0)(x), F.silu(x))


def test_rescale_is_a_buffer_not_a_parameter() -> None:
    layer = Rescale([1.0, 2.0], [3.0, 4.0])
    assert list(layer.parameters()) == []
    assert set(layer.state_dict()) == {"mean", "std"}
    torch.testing.assert_close(layer(torch.ones(2, 2)), torch.tensor([[4.0, 6.0], [4.0, 6.0]]))


def test_cnn_on_too_small_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        build("cnn", classification_spec((1, 4, 4)), channels=[4, 8, 16])
    message = str(info.value)
    assert "model.channels has 3 blocks" in message and "4x4" in message
    assert "at most 2 blocks" in message
    build("cnn", classification_spec((1, 4, 4)), channels=[4, 8])  # 4 -> 2 -> 1 fits


def test_cnn_on_tabular_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("model.name=mlp")):
        build("cnn", classification_spec((8,)))


def test_unknown_activation_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'relu'"):
        build("mlp", classification_spec((8,)), activation="rellu")
