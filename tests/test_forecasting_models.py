"""Contract tests over every forecaster: shapes, finiteness, gradients, save/load, causality."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from torchlab.config import Component
from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError
from torchlab.models import build_model
from torchlab.registry import MODELS

B, L, FP, H, FF, T = 3, 12, 4, 5, 2, 2
SMALL = {
    "mlp-forecaster": {"hidden": [16]},
    "lstm-forecaster": {"hidden": 8},
    "gru-forecaster": {"hidden": 8},
    "tcn": {"channels": [8, 8]},
    "transformer-forecaster": {"d_model": 8, "heads": 2, "layers": 1},
}
VARIANTS = [
    (name, settings)
    for name in MODELS.names()
    if MODELS.get(name).builder.__module__.startswith("torchlab.models.forecasting")
    for settings in (
        [{}, {"decoder": "autoregressive"}]
        if name in ("lstm-forecaster", "gru-forecaster")
        else [{}]
    )
]
SPEC = DataSpec((L, FP), "continuous", target_names=("a", "b"), horizon=H, future_width=FF)


def test_every_forecaster_is_covered() -> None:
    assert {name for name, _ in VARIANTS} == set(SMALL)


def build(name: str, settings: dict, quantiles: int = 1, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    component = Component(name=name, **SMALL[name], **settings)
    return build_model(component, SPEC, T * quantiles)


def inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "past": torch.randn(B, L, FP, generator=generator),
        "future": torch.randn(B, H, FF, generator=generator),
    }


@pytest.fixture(params=VARIANTS, ids=lambda v: f"{v[0]}{'-' + v[1]['decoder'] if v[1] else ''}")
def variant(request: pytest.FixtureRequest) -> tuple[str, dict]:
    return request.param


@pytest.mark.parametrize("normalize", ["none", "last", "mean", "trend"])
def test_point_and_quantile_outputs_have_the_forecast_shape(variant, normalize) -> None:  # type: ignore[no-untyped-def]
    name, settings = variant
    point = build(name, {**settings, "normalize": normalize})(inputs())
    assert point.shape == (B, H, T) and torch.isfinite(point).all()
    quantiles = build(name, {**settings, "normalize": normalize}, quantiles=3)(inputs())
    assert quantiles.shape == (B, H, T, 3) and torch.isfinite(quantiles).all()


def test_backward_reaches_every_parameter(variant) -> None:  # type: ignore[no-untyped-def]
    name, settings = variant
    model = build(name, settings, quantiles=3)
    model(inputs()).square().mean().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), param_name


def test_safetensors_round_trip_gives_identical_outputs(variant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, settings = variant
    model = build(name, settings).eval()
    save_file(model.state_dict(), tmp_path / "m.safetensors")
    other = build(name, settings, seed=123).eval()
    other.load_state_dict(load_file(tmp_path / "m.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(model(inputs()), other(inputs()), rtol=0, atol=0)


def test_normalization_makes_forecasts_follow_a_shifted_level(variant) -> None:  # type: ignore[no-untyped-def]
    """With ``normalize: last`` a window moved up by c gets a forecast moved up by c."""
    name, settings = variant
    model = build(name, {**settings, "normalize": "last"}).eval()
    x = inputs()
    moved = {**x, "past": torch.cat([x["past"][..., :T] + 5.0, x["past"][..., T:]], dim=-1)}
    with torch.no_grad():
        torch.testing.assert_close(model(moved), model(x) + 5.0, rtol=1e-5, atol=1e-4)


def test_tcn_is_causal() -> None:
    model = build("tcn", {"normalize": "none"}).eval()
    x = torch.randn(B, FP, L)
    changed = x.clone()
    changed[..., -1] += 10.0  # only the last step changes
    with torch.no_grad():
        a, b = model.blocks(x), model.blocks(changed)
    torch.testing.assert_close(a[..., :-1], b[..., :-1])  # earlier steps do not see it


def test_a_forecaster_on_non_series_data_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="forecasts windows of a series source"):
        build_model(Component(name="tcn"), DataSpec((8,), "continuous", target_names=("y",)), 1)
