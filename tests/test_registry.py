"""The registry idiom: register, look up, import by path, and a builder's signature as schema."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest
import torch
import yaml

from torchlab import registry as r
from torchlab import registry_index, trust
from torchlab.config import load_config
from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError, RegistryError, TrustError
from torchlab.registry import Registry, schema_of

PLUGIN = '''
from __future__ import annotations

from torch import nn


def tiny(spec, num_outputs, /, *, width: int = 4, scale: float = 1.0) -> nn.Module:
    """A user's model, named in a config as ``torchlab_test_plugin:tiny``."""
    return nn.Sequential(nn.Flatten(), nn.Linear(spec.input_shape[0], width),
                         nn.Linear(width, num_outputs))


NOT_CALLABLE = 3
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module on ``sys.path`` that registers nothing; yields its import name."""
    name = "torchlab_test_plugin"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def widget(context: str, /, *, size: int, ratio: float = 0.5, tags: tuple[str, ...] = ()) -> dict:
    return {"context": context, "size": size, "ratio": ratio, "tags": tags}


def test_fresh_registry_registers_and_builds() -> None:
    widgets = Registry("widget")
    assert widgets.register("w")(widget) is widget  # the decorator returns the builder
    assert widgets.names() == ["w"]
    assert "w" in widgets and "v" not in widgets
    entry = widgets.get("w")
    assert entry.name == "w" and entry.builder is widget
    built = entry.build({"size": "3"}, "widget", "ctx")
    assert built == {"context": "ctx", "size": 3, "ratio": 0.5, "tags": ()}


def test_registering_the_same_builder_again_is_harmless() -> None:
    widgets = Registry("widget")
    widgets.register("w")(widget)
    widgets.register("w")(widget)  # a module imported twice
    assert widgets.names() == ["w"]


def test_duplicate_name_raises() -> None:
    widgets = Registry("widget")
    widgets.register("w")(widget)
    with pytest.raises(RegistryError, match="A widget named 'w' is already registered"):
        widgets.register("w")(lambda: None)
    assert widgets.get("w").builder is widget  # the first one stays


def test_a_built_in_name_cannot_be_registered_again() -> None:
    with pytest.raises(RegistryError, match="named 'adamw' is already registered"):
        r.OPTIMIZERS.register("adamw")(widget)
    assert r.OPTIMIZERS.get("adamw").builder is not widget


def test_unknown_name_suggests_closest_and_lists_all() -> None:
    widgets = Registry("widget")
    for name in ("gizmo", "gadget"):
        widgets.register(name)(widget)
    with pytest.raises(RegistryError) as info:
        widgets.get("gizmos", where="thing.name")
    message = str(info.value)
    assert info.value.exit_code == 2
    assert "Unknown widget 'gizmos' (at 'thing.name')." in message
    assert "Did you mean 'gizmo'?" in message
    assert "Choose one of: gadget, gizmo" in message
    with pytest.raises(RegistryError) as info:
        widgets.get("zzzzzz")
    assert "Did you mean" not in str(info.value)


def test_import_path_names_a_function_in_any_module(plugin: str) -> None:
    with pytest.raises(TrustError, match="pass --trust-code"):  # not from a user's config
        r.MODELS.get("torchlab_named_by_a_run_folder:tiny", where="model.name")
    with trust.users_config():
        entry = r.MODELS.get(f"{plugin}:tiny", where="model.name")
    assert f"{plugin}:tiny" not in r.MODELS.names()  # nothing was registered
    model = entry.build({"width": 5}, "model", DataSpec((3,), "continuous"), 2)
    assert model(torch.zeros(4, 3)).shape == (4, 2)
    assert model[1].out_features == 5


def test_import_path_in_a_config_is_validated_against_its_signature(
    plugin: str, tmp_path: Path
) -> None:
    recipe = {"data": {"source": "iris"}, "model": {"name": f"{plugin}:tiny"}, "task": "regression"}
    path = tmp_path / "plugin.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert load_config(path, ["model.width=6"]).model.params == {"width": 6}
    with pytest.raises(ConfigError) as info:
        load_config(path, ["model.widht=6"])
    assert "Unknown config key 'model.widht'. Did you mean 'model.width'?" in str(info.value)
    with pytest.raises(ConfigError, match=re.escape("'model.width'")):
        load_config(path, ["model.width=wide"])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("torchlab_no_such_module:build", "Cannot import module 'torchlab_no_such_module'"),
        ("torchlab_test_plugin:missing", "has no attribute 'missing'"),
    ],
)
def test_bad_import_path_raises_config_error(plugin: str, path: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info, trust.users_config():
        r.MODELS.get(path, where="model.name")
    assert expected in str(info.value)
    assert "'model.name'" in str(info.value)
    assert info.value.exit_code == 2


def test_schema_forbids_unknown_keys_and_coerces_types() -> None:
    schema = schema_of(widget)
    assert set(schema.model_fields) == {"size", "ratio", "tags"}  # positional-only excluded
    model = schema.model_validate({"size": "7", "ratio": 1, "tags": ["a", "b"]})
    assert model.size == 7 and isinstance(model.size, int)
    assert model.ratio == 1.0 and isinstance(model.ratio, float)
    assert model.tags == ("a", "b")
    with pytest.raises(pydantic.ValidationError, match="extra"):
        schema.model_validate({"size": 1, "colour": "red"})
    with pytest.raises(pydantic.ValidationError, match="size"):
        schema.model_validate({})  # keyword-only without default is required
    with pytest.raises(pydantic.ValidationError):
        schema.model_validate({"size": "big"})


def test_schema_of_a_class_reads_its_init() -> None:
    class Thing:
        def __init__(self, *, depth: int = 2, _private: int = 0) -> None:
            self.depth = depth

    schema = schema_of(Thing)
    assert set(schema.model_fields) == {"depth"}  # underscore names are not settings
    assert schema.model_validate({"depth": "4"}).depth == 4


def test_a_variant_binds_its_data_and_keeps_the_builders_settings() -> None:
    widgets = Registry("widget")
    widgets.register("big")(r.variant(widget, "big"))
    entry = widgets.get("big")
    assert set(entry.schema.model_fields) == {"size", "ratio", "tags"}  # the bound data is none
    assert entry.schema.model_fields["ratio"].default == 0.5
    built = entry.build({"size": "3"}, "widget")
    assert built == {"context": "big", "size": 3, "ratio": 0.5, "tags": ()}
    assert entry.builder.__module__ == widget.__module__  # the index records where it lives
    with pytest.raises(ConfigError, match=re.escape("Did you mean 'part.ratio'?")):
        entry.validate({"size": 2, "ration": 1.0}, "part")


def test_validate_errors_name_the_path_and_the_value() -> None:
    widgets = Registry("widget")
    widgets.register("w")(widget)
    entry = widgets.get("w")
    assert entry.validate({"size": 2}, "part") == {"size": 2}  # only what was given
    with pytest.raises(ConfigError) as info:
        entry.validate({"size": 2, "sise": 3}, "part")
    assert "Unknown config key 'part.sise'" in str(info.value)
    assert "Allowed keys here: ratio, size, tags." in str(info.value)
    with pytest.raises(ConfigError) as info:
        entry.validate({"size": "huge"}, "part")
    assert "'part.size'" in str(info.value) and "received 'huge'" in str(info.value)


FAMILIES = [r.MODELS, r.LOSSES, r.OPTIMIZERS, r.SCHEDULERS, r.METRICS, r.TASKS, r.BASELINES]
EXPECTED = {
    "model": {"mlp", "cnn"},
    "loss": {"cross_entropy", "bce", "focal", "mse", "l1", "huber"},
    "optimizer": {"sgd", "adam", "adamw", "rmsprop"},
    "scheduler": {"none", "step", "multistep", "exponential", "cosine", "onecycle", "plateau"},
    "metric": {"accuracy", "f1", "precision", "recall", "auroc", "mae", "rmse", "r2"},
    "task": {"classification", "binary", "multilabel", "regression"},
    "baseline": {"logistic_regression", "svc", "ridge", "random_forest"},
}


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.kind)
def test_builtins_are_registered(family: Registry) -> None:
    assert EXPECTED[family.kind] <= set(family.names())


@pytest.mark.parametrize(
    ("family", "name"),
    [(family, name) for family in FAMILIES for name in family.names()],
    ids=lambda v: v if isinstance(v, str) else v.kind,
)
def test_every_registered_name_can_be_looked_up(family: Registry, name: str) -> None:
    """What each entry builds is checked by the contract over its family (tests/test_models.py,
    tests/test_*_contracts.py, ...); here, the name and its settings' schema."""
    entry = family.get(name)
    assert entry.name == name
    required = [k for k, f in entry.schema.model_fields.items() if f.is_required()]
    if not required:
        entry.validate({}, family.kind)
        return
    with pytest.raises(ConfigError, match=rf"'{family.kind}\.{required[0]}' is required"):
        entry.validate({}, family.kind)  # a setting without a default (a path) is named


def silu(x: float) -> float:
    return x / (1 + math.exp(-x))


# Each activation's definition at a few points, with torch's default settings.
ACTIVATION_VALUES = {
    "relu": lambda x: max(x, 0.0),
    "leaky_relu": lambda x: x if x > 0 else 0.01 * x,
    "elu": lambda x: x if x > 0 else math.exp(x) - 1,
    "gelu": lambda x: x * 0.5 * (1 + math.erf(x / math.sqrt(2))),
    "tanh": math.tanh,
    "silu": silu,
    "swish": silu,  # x * sigmoid(beta x) with beta starting at 1
}


def test_every_activation_computes_its_definition_in_a_fresh_module() -> None:
    assert set(r.ACTIVATIONS.describe()["names"]) == set(ACTIVATION_VALUES)
    points = [-2.0, -0.5, 0.0, 1.5]
    for name, function in ACTIVATION_VALUES.items():
        first, second = (r.ACTIVATIONS.get(name).builder() for _ in range(2))
        assert first is not second  # a learnable activation is not shared between layers
        expected = torch.tensor([function(x) for x in points])
        torch.testing.assert_close(first(torch.tensor(points)).detach(), expected, msg=name)


def test_the_registry_index_is_current() -> None:
    """The index lets a config be checked without importing the leaves; it must say what
    they register now (a new leaf, name or setting needs it rewritten)."""
    assert registry_index.dumps(r.index()) == registry_index.INDEX_FILE.read_text(), (
        f"src/torchlab/registry_index.json is stale; rewrite it: {registry_index.COMMAND}"
    )


def test_a_lookup_imports_only_the_module_that_registers_the_name() -> None:
    code = (
        "import sys; from torchlab.registry import MODELS, OPTIMIZERS\n"
        "assert 'mlp' in MODELS and 'mpl' not in MODELS and len(MODELS.names()) > 20\n"
        "assert 'torch' not in sys.modules\n"
        "OPTIMIZERS.get('adamw')\n"
        "print(sorted(m for m in sys.modules if m.startswith('torchlab.training')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['torchlab.training', 'torchlab.training.optim']"
