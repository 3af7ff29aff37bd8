"""How a child config (``extends:``) and overrides are laid over a recipe, and ``torchlab
show``, which prints the result with every default."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from torchlab.config import load_config, recipe_names, recipe_summary, show, with_defaults
from torchlab.errors import ConfigError


def write_yaml(path: Path, content: object) -> Path:
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def monthly_csv(path: Path, months: int = 120) -> Path:
    """A monthly series as a user would export it: a date and a value column."""
    import pandas as pd

    dates = pd.date_range("2010-01-01", periods=months, freq="MS")
    values = [100 + 0.5 * i + (i % 12) for i in range(months)]
    pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "sales": values}).to_csv(path, index=False)
    return path


# --- settings tied to the data ------------------------------------------------------------


def test_own_series_over_co2_drops_co2s_date_bounds_and_season(tmp_path: Path) -> None:
    csv = monthly_csv(tmp_path / "sales.csv")
    source = {"name": "series", "path": str(csv), "time_column": "date", "targets": ["sales"]}
    child = write_yaml(tmp_path / "sales.yaml", {"extends": "co2", "data": {"source": source}})
    config = load_config(child)
    assert "split" not in config.data.source.params  # not co2's 2000-2001 test years
    assert config.baseline is not None and "season" not in config.baseline.params
    assert config.baseline.params["methods"][0] == "naive"  # the rest of the baseline stays
    assert config.model.name == "mlp-forecaster"


def test_same_source_on_another_file_drops_only_the_date_bounds(tmp_path: Path) -> None:
    window = {"lookback": 12, "horizon": 6, "stride": 1}
    split = {"val_size": 12, "test_start": "2015-01-01", "test_end": "2016-12-01"}
    first = monthly_csv(tmp_path / "first.csv")
    source = {"name": "series", "path": str(first), "window": window, "split": split}
    parent = write_yaml(tmp_path / "parent.yaml", {"extends": "co2", "data": {"source": source}})
    second = monthly_csv(tmp_path / "second.csv", months=60)
    child = {"extends": "parent.yaml", "data": {"source": {"path": str(second)}}}
    params = load_config(write_yaml(tmp_path / "child.yaml", child)).data.source.params
    assert params["path"] == str(second)
    assert params["split"] == {"val_size": 12}
    assert params["window"]["lookback"] == 12  # not tied to the file: kept

    overridden = load_config(parent, [f"data.source.path={second}"]).data.source.params
    assert "test_start" not in overridden["split"]
    kept = load_config(
        parent, ["data.source.split.test_start=2013-01-01", f"data.source.path={second}"]
    ).data.source.params
    assert (
        str(kept["split"]["test_start"]) == "2013-01-01"
    )  # the override's own bound, in any order


# --- settings tied to the environment -----------------------------------------------------


def test_another_environment_drops_the_target_return(tmp_path: Path) -> None:
    child = write_yaml(
        tmp_path / "acro.yaml", {"extends": "cartpole-ppo", "env": {"id": "Acrobot-v1"}}
    )
    config = load_config(child)
    assert (config.env.id, config.trainer.target_return) == ("Acrobot-v1", None)
    assert config.agent.params["n_steps"] == 32  # the agent's settings stay
    assert load_config("cartpole-ppo", ["env.id=Acrobot-v1"]).trainer.target_return is None
    same = write_yaml(tmp_path / "more.yaml", {"extends": "cartpole-ppo", "env": {"num_envs": 2}})
    assert load_config(same).trainer.target_return == 475


def test_empty_mapping_clears_inherited_env_kwargs(tmp_path: Path) -> None:
    assert load_config("frozenlake-q").env.kwargs == {"is_slippery": True}
    child = write_yaml(tmp_path / "still.yaml", {"extends": "frozenlake-q", "env": {"kwargs": {}}})
    assert load_config(child).env.kwargs == {}
    assert load_config("frozenlake-q", ["env.kwargs={}"]).env.kwargs == {}


# --- null, cycles and names ---------------------------------------------------------------


def test_null_in_a_child_removes_the_inherited_key(tmp_path: Path) -> None:
    child = {
        "extends": "iris",
        "optim": {"weight_decay": None},
        "trainer": {"early_stopping": None},
        "model": {"dropout": None},
    }
    config = load_config(write_yaml(tmp_path / "plain.yaml", child))
    assert config.optim.weight_decay == 0.0  # the default, not the recipe's 0.0001
    assert config.trainer.early_stopping is None
    assert config.model.params == {"hidden": [32, 32]}  # the builder's default dropout applies


def test_extends_cycle_through_parent_folder_is_one_error(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    write_yaml(folder / "loop.yaml", {"extends": "../configs/loop.yaml"})
    with pytest.raises(ConfigError, match="leads back to it; break the cycle"):
        load_config(folder / "loop.yaml")


@pytest.mark.parametrize("recipe", ["iris", "cartpole-dqn"])
def test_config_without_name_is_named_after_its_file(tmp_path: Path, recipe: str) -> None:
    child = write_yaml(tmp_path / "my-run.yaml", {"extends": recipe, "seed": 3})
    assert load_config(child).name == "my-run"
    grandchild = write_yaml(tmp_path / "again.yaml", {"extends": "my-run.yaml"})
    assert load_config(grandchild).name == "again"


# --- torchlab show ------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", recipe_names())
def test_shown_config_is_the_same_config(tmp_path: Path, recipe: str) -> None:
    shown = tmp_path / "copy.yaml"
    shown.write_text(show(recipe))
    assert with_defaults(load_config(shown)) == with_defaults(load_config(recipe))


def test_show_prints_every_default_and_the_effect_of_a_child(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_yaml(tmp_path / "acro.yaml", {"extends": "cartpole-ppo", "env": {"id": "Acrobot-v1"}})
    result = cli("show", "acro.yaml", "trainer.total_steps=64")
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["name"] == "acro"
    assert shown["env"] == {
        "id": "Acrobot-v1", "num_envs": 1, "normalize_obs": False, "normalize_reward": False,
        "kwargs": {}, "max_episode_steps": None,
    }  # fmt: skip
    assert shown["trainer"]["target_return"] is None
    assert shown["trainer"]["total_steps"] == 64
    assert shown["agent"]["vf_coef"] == 0.5  # the agent's own default, not in the recipe


def test_show_writes_builder_defaults_and_errors_like_load_config() -> None:
    digits = yaml.safe_load(show("digits"))
    assert digits["optim"]["betas"] == [0.9, 0.999]  # the optimizer builder's default
    assert digits["model"]["channels"] == [32, 64]
    assert "betas: [0.9, 0.999]" in show("digits")  # lists of plain values on one line
    with pytest.raises(ConfigError, match=r"Unknown config key 'optim\.lrr'"):
        show("digits", ["optim.lrr=1"])


@pytest.mark.parametrize("recipe", recipe_names())
def test_recipe_summary_is_a_whole_sentence(recipe: str) -> None:
    summary = recipe_summary(recipe)
    assert summary[0].isupper() and summary.endswith("."), summary
