"""A ``tune.space`` as Optuna suggestions: dotted config keys -> sampled values."""

from __future__ import annotations

from typing import Any

from torchlab.config import ParamSpace, RunConfig, apply_overrides, validate
from torchlab.errors import ConfigError


def suggest(trial: Any, space: dict[str, ParamSpace]) -> dict[str, Any]:
    """Sample every parameter of ``space`` (and the branches its choices open) for ``trial``."""
    values: dict[str, Any] = {}
    for key, param in space.items():
        if param.type == "categorical":
            value = trial.suggest_categorical(key, param.choices)
            values[key] = value
            branch = param.when.get(str(value))
            if branch:
                values.update(suggest(trial, branch))
        elif param.type == "int":
            step = int(param.step or 1)
            values[key] = trial.suggest_int(
                key, int(param.low), int(param.high), step=step, log=param.log
            )
        else:
            values[key] = trial.suggest_float(
                key, param.low, param.high, step=param.step, log=param.log
            )
    return values


def corners(space: dict[str, ParamSpace]) -> list[dict[str, Any]]:
    """One assignment per branch of the space (low ends, every choice), to validate keys early."""
    base: dict[str, Any] = {}
    branches: list[dict[str, Any]] = []
    for key, param in space.items():
        if param.type != "categorical":
            base[key] = int(param.low) if param.type == "int" else param.low
            continue
        base[key] = param.choices[0]
        for choice in param.choices:
            for sub in corners(param.when.get(str(choice), {})) or [{}]:
                branches.append({key: choice, **sub})
    return [{**base, **branch} for branch in branches] or [base]


def check_space(raw: dict[str, Any], space: dict[str, ParamSpace]) -> None:
    """Fail before any trial when a searched key does not exist or a value cannot be set."""
    for assignment in corners(space):
        trial_raw = apply(raw, assignment)
        try:
            validate(trial_raw)
        except ConfigError as exc:
            raise ConfigError(f"tune.space sets {_shown(assignment)}, which fails: {exc}") from None


def apply(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the raw config with dotted ``values`` set (another ``model.name`` replaces
    the model's section, as on the command line)."""
    import copy

    return apply_overrides(copy.deepcopy(raw), values)


def ready_to_run(raw: dict[str, Any], values: dict[str, Any]) -> RunConfig:
    """The config a trial trains, validated, without its ``tune`` section."""
    out = apply(raw, values)
    out.pop("tune", None)
    return validate(out)


def _shown(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())
