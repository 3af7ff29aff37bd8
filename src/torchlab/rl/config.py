"""Typed, frozen configuration of a reinforcement-learning run.

An RL config has the sections ``env`` (a gymnasium id and its wrappers), ``agent`` (a
registered agent: ``name`` plus its hyper-parameters, checked against the builder's
keyword-only arguments) and ``trainer`` (step budget, evaluation and checkpoints).
:func:`torchlab.config.validate` hands a raw config here when it has an ``agent:`` section.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field, field_validator

from torchlab.config import (
    Component,
    Layering,
    RunName,
    Section,
    Seed,
    TrackingConfig,
    _component,
    check_components,
    validated,
)
from torchlab.trust import CODE_NAME, import_module


class EnvConfig(Section):
    """Which environment, how many copies, and which wrappers.

    Attributes:
        id: Any gymnasium id (``CartPole-v1``, ``torchlab/Identity-v0``, ...).
        num_envs: Copies stepped together in a synchronous vector env.
        normalize_obs: Standardise observations with running statistics.
        normalize_reward: Scale rewards by the running std of the discounted return.
        kwargs: Keyword arguments for ``gymnasium.make`` (``is_slippery: true``, ...).
        max_episode_steps: Cut episodes after this many steps. None: the environment's own
            limit, or 1,000 steps for one that sets none (a user's ``gym.Env`` class), so a
            policy that never finishes an episode cannot hang training or evaluation.
    """

    id: str
    num_envs: int = Field(1, gt=0)
    normalize_obs: bool = False
    normalize_reward: bool = False
    kwargs: dict[str, Any] = Field(default_factory=dict)
    max_episode_steps: int | None = Field(None, gt=0)


class RLTrainerConfig(Section):
    """The budget in environment steps, evaluation, logging and checkpoints.

    ``threads`` sets torch's CPU threads (None: torch's default). RL networks are tiny and
    called once per environment step, so one thread is fastest: on a busy 2-core machine
    two threads made each small forward pass about 15x slower.
    """

    total_steps: int = Field(10_000, gt=0)
    eval_every: int = Field(5_000, gt=0)
    eval_episodes: int = Field(10, gt=0)
    target_return: float | None = None
    checkpoint_every: int = Field(10_000, gt=0)
    keep_checkpoints: int = Field(2, gt=0)
    log_every: int = Field(1_000, gt=0)
    device: str = "cpu"
    threads: int | None = Field(1, gt=0)
    record_gif: bool = True
    progress: Literal["auto", "plain", "none"] = "auto"
    tracking: TrackingConfig = TrackingConfig()


class RLConfig(Section):
    """Everything that defines an RL run. Saved as ``config.yaml`` in its run directory."""

    KIND: ClassVar[str] = "rl"  # its entry in torchlab.registry.RUN_KINDS
    LAYERING: ClassVar[Layering] = Layering(
        components={"agent": "name", "env": "id"},
        identity={"env": ("id",)},
        # Keyword arguments, an episode limit and a target return are one environment's.
        tied={"env": ("env.kwargs", "env.max_episode_steps", "trainer.target_return")},
    )

    name: RunName
    seed: Seed = 0
    output_dir: str = "runs"
    env: EnvConfig
    agent: Component
    trainer: RLTrainerConfig = RLTrainerConfig()

    _agent = field_validator("agent", mode="before")(_component)

    @field_validator("env", mode="before")
    @classmethod
    def _env_id(cls, value: Any) -> Any:
        return {"id": value} if isinstance(value, str) else value

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def components(self) -> list[tuple[Any, Component, str, set[str]]]:
        from torchlab.registry import AGENTS

        return [(AGENTS, self.agent, "agent", set())]


def validate_rl(raw: dict[str, Any]) -> RLConfig:
    """Validate a raw mapping as an :class:`RLConfig` and the agent's own keys."""
    config = validated(RLConfig, raw)
    check_components(config)
    if code := CODE_NAME.match(config.env.id):  # the user's own environment: import it now
        import_module(code[1], "env.id")
    return config


def is_rl(raw: dict[str, Any]) -> bool:
    """An RL config is recognised by its ``agent:`` section."""
    return "agent" in raw
