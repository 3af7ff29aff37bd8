"""Gradual unfreezing: open a pretrained backbone stage by stage, top first, at given epochs.

Fine-tuning every layer at once from the first step lets the large gradients of a random
head wreck the pretrained features; training the head first, then opening the layers
nearest to it, then deeper ones, keeps them (Howard & Ruder, ULMFiT,
https://arxiv.org/abs/1801.06146). Works with any model that has
``set_trainable_stages(count)`` and ``stages`` (the vision backbones).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torchlab.errors import ConfigError
from torchlab.registry import CALLBACKS
from torchlab.training.callbacks import Callback

if TYPE_CHECKING:
    from torchlab.training.loop import Trainer


@CALLBACKS.register("gradual_unfreeze")
class GradualUnfreeze(Callback):
    """Train the head alone, then open ``stages_per_step`` more stages at each listed epoch.

    Args:
        epochs: Epochs (from 0) at which the next stages open, e.g. ``[2, 4, 6]``.
        stages_per_step: Stages opened at each of those epochs; ``-1`` opens all of them.
    """

    def __init__(self, *, epochs: list[int], stages_per_step: int = 1) -> None:
        if sorted(epochs) != list(epochs) or any(e < 0 for e in epochs):
            raise ConfigError(
                f"gradual_unfreeze.epochs must be increasing epochs from 0; received {epochs}."
            )
        if stages_per_step == 0 or stages_per_step < -1:
            raise ConfigError(
                f"gradual_unfreeze.stages_per_step must be positive or -1 (all); received "
                f"{stages_per_step}."
            )
        self.epochs, self.stages_per_step = list(epochs), stages_per_step
        self.opened = 0

    def stages_at(self, epoch: int, total: int) -> int:
        """How many backbone stages train in ``epoch``: a function of the epoch alone."""
        steps = sum(epoch >= e for e in self.epochs)
        per_step = total if self.stages_per_step == -1 else self.stages_per_step
        return min(total, steps * per_step)

    def on_epoch_start(self, trainer: Trainer) -> None:
        model = trainer.model
        if not hasattr(model, "set_trainable_stages"):
            raise ConfigError(
                f"Callback gradual_unfreeze needs a model with stages (a vision backbone such "
                f"as mobilenet_v2); {type(model).__name__} has none."
            )
        count = self.stages_at(trainer.state.epoch, len(model.stages))
        if count != model.trainable_stages or self.opened == 0:
            model.set_trainable_stages(count)
            model.train(True)
            # Clipping covers the parameters that train now.
            trainer.params = [p for p in model.parameters() if p.requires_grad]
        self.opened = count

    def state_dict(self) -> dict[str, Any]:
        return {"opened": self.opened}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opened = state.get("opened", 0)
