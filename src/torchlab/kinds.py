"""Run kinds: supervised training and reinforcement learning, each owning its whole path.

A kind says which raw configs are its own, validates them with its schema, and trains,
evaluates, exports and reports its runs. Everything above asks the kind of a config or run
(:func:`kind_of`) instead of looking for a kind's sections itself. The kinds are registered
in :data:`torchlab.registry.RUN_KINDS`: ``supervised`` (:mod:`torchlab.engine.supervised`)
and ``rl`` (:mod:`torchlab.rl.kind`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

# The kind of every config that no other kind claims.
DEFAULT_KIND = "supervised"


@dataclass(frozen=True)
class TrainRequest:
    """What ``torchlab train`` is asked (see :func:`torchlab.train`): a recipe with its
    overrides, or a run to resume; where new runs go; extra callbacks; whether the resumed
    run may import code it did not record; and ``run_dir``, a new run's own folder in place
    of ``<output_dir>/<name>/<timestamp>`` (a cross-validation fold's)."""

    recipe: str | Path | None = None
    overrides: list[str] | dict[str, Any] = ()
    resume: str | Path | None = None
    output_dir: str | Path | None = None
    callbacks: Sequence[Any] = ()
    trust_code: bool = False
    run_dir: str | Path | None = None


class KindConfig(Protocol):
    """What every kind's validated config has (``RunConfig``, ``RLConfig``)."""

    KIND: ClassVar[str]  # its kind's name in RUN_KINDS
    name: str
    seed: int
    output_dir: str

    def to_yaml(self) -> str: ...

    def components(self) -> list[tuple[Any, Any, str, set[str]]]:
        """``(registry, component, where, declared keys)`` of each registered part it names."""
        ...

    def model_dump(self, **kwargs: Any) -> dict[str, Any]: ...


class RunKind(Protocol):
    """What a kind of run provides; its config schema is ``schema``."""

    name: ClassVar[str]

    @staticmethod
    def claims(raw: dict[str, Any]) -> bool:
        """Whether a raw config mapping is of this kind (the default kind claims the rest)."""
        ...

    @property
    def schema(self) -> Any:
        """The pydantic model of this kind's configs (``RunConfig``, ``RLConfig``)."""
        ...

    def validate(self, raw: dict[str, Any]) -> KindConfig:
        """The typed config of a raw mapping of this kind, its components checked too."""
        ...

    def train(self, request: TrainRequest) -> Any:
        """Train a new run, or resume ``request.resume``; return the completed run."""
        ...

    def evaluate(self, run: Any, split: str, episodes: int | None) -> dict[str, Any]: ...

    def load_model(self, run: Any) -> Any:
        """The run's trained module, best weights, eval mode, CPU (``Run.load_model``)."""
        ...

    def exportable(self, run: Any) -> Any:
        """What ``torchlab export`` writes for a run (a :class:`~torchlab.exporters.sources.Exportable`)."""
        ...

    def write_report(self, run: Any) -> Path:
        """Write a completed run's ``report.html`` and ``MODEL_CARD.md`` anew."""
        ...


def kind_of(raw: Any) -> RunKind:
    """The kind of a raw config mapping: the first other kind that claims it, else the default."""
    from torchlab.registry import RUN_KINDS

    names = sorted(RUN_KINDS.names(), key=lambda name: name == DEFAULT_KIND)
    for name in names:
        kind = RUN_KINDS.get(name).builder()
        if name == DEFAULT_KIND or (isinstance(raw, dict) and kind.claims(raw)):
            return kind
    raise AssertionError(f"no run kind '{DEFAULT_KIND}' is registered")


def kind_of_config(config: Any) -> RunKind:
    """The kind a validated config belongs to."""
    from torchlab.registry import RUN_KINDS

    return RUN_KINDS.get(config.KIND).builder()
