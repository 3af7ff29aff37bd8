"""Recipes, YAML files, ``extends:``, dotted overrides and the errors a user reads."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml

from torchlab.config import RunConfig, load_config, parse_override, recipe_names, validate
from torchlab.errors import ConfigError, RegistryError

TINY = {
    "data": {"source": "iris", "batch_size": 16},
    "model": {"name": "mlp", "hidden": [8]},
    "task": "classification",
}


def write_yaml(path: Path, content: object) -> Path:
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def config_error(recipe: str | Path, *overrides: str) -> ConfigError:
    """The ConfigError that loading ``recipe`` with ``overrides`` raises."""
    with pytest.raises(ConfigError) as info:
        load_config(recipe, list(overrides))
    assert info.value.exit_code == 2
    return info.value


# --- loading ------------------------------------------------------------------------------


def test_builtin_recipe_loads_typed_and_frozen() -> None:
    assert "digits" in recipe_names()
    config = load_config("digits")
    assert isinstance(config, RunConfig)
    assert config.name == "digits"
    assert config.data.source.name == "digits"
    assert config.data.batch_size == 32
    assert (config.model.name, config.model.params["channels"]) == ("cnn", [32, 64])
    assert config.task.name == "classification"  # `task: classification` shorthand
    assert config.schedule.name == "onecycle"
    assert config.baseline is not None and config.baseline.params == {"gamma": 0.001}
    with pytest.raises(pydantic.ValidationError):
        config.seed = 1  # type: ignore[misc]


def test_yaml_path_loads_with_defaults_and_name_from_file(tmp_path: Path) -> None:
    config = load_config(write_yaml(tmp_path / "tiny-iris.yaml", TINY))
    assert config.name == "tiny-iris"
    assert config.data.source.name == "iris"
    assert config.model.params == {"hidden": [8]}
    assert config.optim.name == "adamw"  # section defaults fill what the file leaves out
    assert config.trainer.max_epochs == 10


def test_extends_builtin_merges_deeply(tmp_path: Path) -> None:
    child = {"extends": "digits", "model": {"dropout": 0.5}, "trainer": {"max_epochs": 2}}
    config = load_config(write_yaml(tmp_path / "child.yaml", child))
    assert config.name == "child"  # the child's name, not the parent's
    assert config.model.params == {"channels": [32, 64], "dropout": 0.5}  # siblings kept
    assert config.trainer.max_epochs == 2
    assert config.trainer.monitor == "val/accuracy"  # from the parent
    assert config.optim.lr == 0.003


def test_extends_chain_of_files(tmp_path: Path) -> None:
    base = write_yaml(tmp_path / "base.yaml", {**TINY, "optim": {"name": "sgd", "lr": 0.1}})
    middle = write_yaml(tmp_path / "middle.yaml", {"extends": str(base), "optim": {"lr": 0.2}})
    top = write_yaml(tmp_path / "top.yaml", {"extends": str(middle), "seed": 7})
    config = load_config(top)
    assert (config.name, config.seed) == ("top", 7)
    assert (config.optim.name, config.optim.lr) == ("sgd", 0.2)
    assert config.model.params == {"hidden": [8]}


def test_extends_cycle_is_an_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    write_yaml(a, {**TINY, "extends": str(b)})
    write_yaml(b, {"extends": str(a)})
    assert "leads back to it; break the cycle" in str(config_error(a))


# --- overrides ----------------------------------------------------------------------------


def test_overrides_are_read_as_yaml_and_coerced() -> None:
    config = load_config(
        "digits", ["optim.lr=1e-3", "model.channels=[16,32]", "trainer.precision=bf16", "seed=3"]
    )
    assert isinstance(config.optim.lr, float) and config.optim.lr == 1e-3
    assert config.model.params["channels"] == [16, 32]
    assert config.trainer.precision == "bf16"
    assert config.seed == 3


def test_precision_given_as_number_becomes_text() -> None:
    assert load_config("digits", ["trainer.precision=32"]).trainer.precision == "32"


def test_overrides_as_mapping() -> None:
    config = load_config("digits", {"optim.lr": 0.5, "trainer.max_epochs": 4})
    assert (config.optim.lr, config.trainer.max_epochs) == (0.5, 4)


def test_source_shorthand_refined_by_dotted_key() -> None:
    config = load_config("digits", ["data.source=digits", "data.source.size=16"])
    assert config.data.source.name == "digits"
    assert config.data.source.params == {"size": 16}
    # refining the recipe's own `source: digits` shorthand works the same way
    assert load_config("digits", ["data.source.size=16"]).data.source.params == {"size": 16}


def test_replacing_the_source_keeps_the_rest_of_the_section() -> None:
    config = load_config("digits", ["data.source=iris"])
    assert (config.data.source.name, config.data.source.params) == ("iris", {})
    assert config.data.batch_size == 32


@pytest.mark.parametrize("text", ["optim.lr", "=3", "optim.lr 0.1"])
def test_override_without_equals_is_an_error(text: str) -> None:
    error = config_error("digits", text)
    assert f"Override '{text}'" in str(error)
    assert "key.path=value" in str(error)


def test_override_value_that_is_not_yaml_stays_text() -> None:
    assert parse_override("trainer.device=[cpu") == ("trainer.device", "[cpu")
    assert parse_override(" optim.lr = 0.5") == ("optim.lr", 0.5)


def test_override_through_a_scalar_is_an_error() -> None:
    message = str(config_error("digits", "seed.value=1"))
    assert "seed.value" in message and "'seed' holds 0" in message


# --- errors -------------------------------------------------------------------------------


def test_unknown_key_names_path_allowed_keys_and_closest_match() -> None:
    message = str(config_error("digits", "optim.lrr=0.1"))
    assert "Unknown config key 'optim.lrr'" in message
    assert "Did you mean 'optim.lr'?" in message
    allowed = message.split("Allowed keys here: ")[1].rstrip(".").split(", ")
    assert {"lr", "weight_decay", "betas", "eps"} <= set(allowed)


@pytest.mark.parametrize(
    ("override", "path", "suggestion", "listed"),
    [
        (
            "trainer.max_epoch=3",
            "trainer.max_epoch",
            "trainer.max_epochs",
            "accumulate_grad_batches",
        ),
        ("sed=1", "sed", "seed", "output_dir"),
        ("data.split.vall=0.1", "data.split.vall", "data.split.val", "stratify"),
        (
            "trainer.early_stopping.patince=3",
            "trainer.early_stopping.patince",
            "trainer.early_stopping.patience",
            "min_delta",
        ),
        ("task.metrcs=[accuracy]", "task.metrcs", "task.metrics", "loss"),
        ("schedule.nam=cosine", "schedule.nam", "schedule.name", "pct_start"),
        ("data.source.sise=16", "data.source.sise", "data.source.size", "size"),
        ("baseline.gama=0.1", "baseline.gama", "baseline.gamma", "kernel"),
    ],
)
def test_unknown_key_anywhere(override: str, path: str, suggestion: str, listed: str) -> None:
    message = str(config_error("digits", override))
    assert f"Unknown config key '{path}'. Did you mean '{suggestion}'?" in message
    assert listed in message.split("Allowed keys here: ")[1]


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    message = str(config_error("digits", "trainer.zzzz=1"))
    assert "Did you mean" not in message
    assert "Allowed keys here: accumulate_grad_batches, callbacks," in message


def test_unknown_key_inside_a_component_is_checked_against_its_builder() -> None:
    message = str(config_error("digits", "model.chanels=[8]"))
    assert "Unknown config key 'model.chanels'" in message
    assert "Did you mean 'model.channels'?" in message
    assert "kernel_size" in message


def test_unknown_key_inside_a_nested_component() -> None:
    message = str(config_error("digits", "task.loss=focal", "task.loss.gama=1"))
    assert "'task.loss.gama'" in message and "Did you mean 'task.loss.gamma'?" in message


def test_wrong_type_names_the_path_and_the_value() -> None:
    message = str(config_error("digits", "trainer.max_epochs=many"))
    assert "'trainer.max_epochs'" in message
    assert "received 'many'" in message
    message = str(config_error("digits", "model.dropout=lots"))
    assert "'model.dropout'" in message and "received 'lots'" in message


def test_out_of_range_value_is_an_error() -> None:
    message = str(config_error("digits", "optim.lr=-1"))
    assert "'optim.lr'" in message and "received -1" in message


def test_missing_required_key(tmp_path: Path) -> None:
    recipe = {key: value for key, value in TINY.items() if key != "model"}
    message = str(config_error(write_yaml(tmp_path / "nomodel.yaml", recipe)))
    assert "Config key 'model' is required" in message


def test_unknown_component_name_suggests_the_closest() -> None:
    with pytest.raises(RegistryError) as info:
        load_config("digits", ["model.name=cnnn"])
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "Unknown model 'cnnn' (at 'model.name')" in message and "Did you mean 'cnn'?" in message


def test_unknown_recipe_suggests_the_closest_recipe() -> None:
    message = str(config_error("digts"))
    assert "'digts' is neither a built-in recipe nor a YAML file" in message
    assert "Did you mean 'digits'?" in message


def test_missing_yaml_file(tmp_path: Path) -> None:
    message = str(config_error(tmp_path / "nope.yaml"))
    assert "nope.yaml' does not exist" in message


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("data: [1,\nmodel: cnn\n")
    message = str(config_error(path))
    assert "broken.yaml' is not valid YAML (line 3, column 1: " in message
    assert "\n" not in message  # one line, as every error


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    assert "must hold a mapping" in str(config_error(path))


# --- serialisation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [[], ["model.channels=[16,32]", "task.loss=focal", "trainer.callbacks=[early_stopping]"]],
)
def test_to_yaml_round_trip(overrides: list[str]) -> None:
    config = load_config("digits", overrides)
    again = validate(yaml.safe_load(config.to_yaml()))
    assert again == config
    assert again.to_yaml() == config.to_yaml()
