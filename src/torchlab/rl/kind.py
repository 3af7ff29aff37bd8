"""The ``rl`` run kind: an agent that learns from a gymnasium environment (a config with an
``agent:`` section)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from torchlab.kinds import TrainRequest
from torchlab.registry import RUN_KINDS
from torchlab.rl.config import RLConfig, is_rl, validate_rl


@RUN_KINDS.register("rl")
class ReinforcementLearning:
    """Train, evaluate, export and report RL runs (see :mod:`torchlab.kinds`)."""

    name: ClassVar[str] = "rl"
    schema = RLConfig

    @staticmethod
    def claims(raw: dict[str, Any]) -> bool:
        return is_rl(raw)

    def validate(self, raw: dict[str, Any]) -> RLConfig:
        return validate_rl(raw)

    def train(self, request: TrainRequest) -> Any:
        from torchlab.rl.api import train

        return train(request)

    def evaluate(self, run: Any, split: str, episodes: int | None) -> dict[str, Any]:
        """Mean and std of return over ``episodes`` deterministic episodes (``split`` is
        not used: an environment has none)."""
        from torchlab.rl.api import evaluate

        return evaluate(run, episodes)

    def load_model(self, run: Any) -> Any:
        from torchlab.rl.api import load_policy

        return load_policy(run).module

    def exportable(self, run: Any) -> Any:
        from torchlab.rl.export import policy_exportable

        return policy_exportable(run)

    def write_report(self, run: Any) -> Path:
        """Rebuild the report from the run directory's files (nothing is re-run)."""
        from torchlab.rl.report import write_rl_reports

        return write_rl_reports(run.dir)[0]
